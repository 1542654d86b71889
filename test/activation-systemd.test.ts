import "./helpers/env";
import { describe, test, before, after } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "fs";
import * as path from "path";
import { Lab, LabHostInfo } from "../provider/lab/lab";
import { canRunLab, tempDir } from "./helpers/env";
import { engine, expectExit, stateResources, StackRef } from "./helpers/engine";
import { writeStack, nixConfig, slowUnit as slow } from "./helpers/stack";
import { SshSession } from "../provider/ssh/session";
import { activate } from "../provider/host/activate";
import type { Connection } from "../provider/connection";

const skip = canRunLab ? false : "the lab needs root on Linux";
const UNIT = "pulumi-nixos-switch-to-configuration.service";


describe("activation through systemd-run on systemd hosts", { skip }, () => {
  let tmp = "";
  let lab: Lab;
  let h: LabHostInfo;
  let s: StackRef;
  const ex = async (cmd: string) => (await lab.exec("host1", ["sh", "-c", cmd], { allowFailure: true, timeoutMs: 60_000 })).stdout.trim();
  const config = (role: string, extra = "") => nixConfig("sr", { role, paths: 2, activation: extra });
  const write = (role: string, extra = "") =>
    // Without magic rollback: this is about the switch outliving its session (magic-rollback.test.ts has the rest).
    writeStack(s.cwd, "t", { m: { targetHost: h.address, config: config(role, extra), connectTimeout: 5, magicRollback: false } }, { "pulumi-nixos:sshPrivateKeyFile": lab.privateKeyPath });
  async function until(what: string, cond: () => Promise<boolean>, ms = 30_000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!(await cond())) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  before(async () => {
    tmp = tempDir("sdrun");
    lab = await Lab.up({ dir: path.join(tmp, "lab"), hosts: 1 });
    [h] = await lab.status();
    s = { cwd: path.join(tmp, "prog"), stack: "t", state: path.join(tmp, "prog", "t.state.json") };
    s = write("v1");
    expectExit(await engine("up", s), 0, "first deploy");
  });
  after(async () => {
    await lab?.down();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  test("the deployer's SSH session killed mid-switch: the switch completes; a second deploy meanwhile is refused; refresh tells what runs", async () => {
    const before = stateResources(s.state).m.outputs.systemPath;
    write("v2", slow);
    const pv = await engine("preview", s);
    const next = /systemPath: "[^"]+" => "([^"]+)"/.exec(pv.stdout)?.[1];
    assert.match(next ?? "", /-nixos-system-sr-/);

    const up = engine("up", s);
    // Once the switch runs in its unit, end every SSH session on the host (as a dropped link would).
    await until("the switch unit", async () => (await ex(`systemctl is-active ${UNIT}`)) === "active");
    await ex("for p in /proc/[0-9]*; do case \"$(tr '\\0' ' ' < $p/cmdline 2>/dev/null)\" in 'sshd: '*@*) kill ${p#/proc/} ;; esac; done");
    const r = await up;
    expectExit(r, 1, "up whose session was killed");
    assert.equal(stateResources(s.state).m.outputs.systemPath, before, "the state keeps what it knew");
    assert.equal(await ex(`systemctl is-active ${UNIT}`), "active", "the switch goes on without its SSH session");

    // A second deploy while that switch runs: refused before anything is changed (by NixOS's
    // switch lock, which the running switch holds as ng's does, by the host lock the killed
    // deploy still holds, or else by the probe for the running switch unit).
    const second = await engine("up", s);
    expectExit(second, 1, "a deploy during a running switch");
    assert.match(second.stdout, /switch-to-configuration is already running on .*switch-to-configuration\.lock is held|is being deployed by|another activation is still running there/);
    // The probe itself, as any activation meets it (the lock aside): a clear error, nothing changed.
    const session = await SshSession.connect({ host: h.address, port: 22, user: "root", privateKey: fs.readFileSync(lab.privateKeyPath, "utf8") } as Connection,
      { pin: h.hostPublicKey, timeoutMs: 5000 });
    try {
      await assert.rejects(activate(session, before, "switch", { timeoutSec: 60 }),
        /another activation is still running there \(unit pulumi-nixos-switch-to-configuration\.service, started [^)]+\).*nothing was changed/);
    } finally {
      session.close();
    }
    assert.equal(await ex("readlink /nix/var/nix/profiles/system"), `system-${(h.generation ?? 0) + 2}-link`, "the profile was not touched by the refused deploys");

    // The first switch completes: the new system runs, its slow unit started.
    await ex("touch /run/slow.go");
    await until("the switch to finish", async () => (await ex(`systemctl is-active ${UNIT}`)) !== "active");
    assert.equal(await ex("readlink -f /run/current-system"), next);
    assert.equal(await ex("cat /run/slow.done; systemctl is-active slow.service"), "done\nactive");

    // The killed deploy could not release its host lock: we know it is gone, so break it.
    await ex("rm -f /run/pulumi-nixos/lock");
    // Refresh reports what the host runs; the next up has nothing to change but re-activates cleanly.
    const rf = await engine("refresh", s);
    expectExit(rf, 0, "refresh");
    assert.match(rf.stdout, /(\S+-)?m drift \[diff: .*~systemPath/);
    assert.equal(stateResources(s.state).m.outputs.systemPath, next);
    expectExit(await engine("up", s), 0, "up converges");
    assert.equal(stateResources(s.state).m.outputs.systemPath, next);
    assert.equal(await ex("systemctl is-system-running"), "running");
  });
});
