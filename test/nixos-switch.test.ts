import "./helpers/env";
import { describe, test, before, after } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "fs";
import * as path from "path";
import { Lab, LabHostInfo } from "../provider/lab/lab";
import { canRunLab, tempDir } from "./helpers/env";
import { engine, expectExit, stateResources, StackRef } from "./helpers/engine";
import { writeStack, nixConfig } from "./helpers/stack";
import { buildSystem, copyToHost, switchTo } from "./helpers/standin";
import { SshSession } from "../provider/ssh/session";
import { activate } from "../provider/host/activate";
import { rollback } from "../provider/fleet/ops";
import { run } from "../provider/util/run";
import type { Connection } from "../provider/connection";

const skip = canRunLab ? false : "the lab needs root on Linux";

/**
 * Deploys read truthfully on hosts that behave like NixOS: a transient unit's PATH is systemd's
 * own bin/ (no cat), the switch refuses a host that is not NixOS, installs the boot loader
 * before activating, and a failed switch leaves the host, its boot default and the state agreeing.
 */
describe("switch-to-configuration on NixOS-like hosts", { skip }, () => {
  let tmp = "";
  let lab: Lab;
  let h: LabHostInfo;
  let s: StackRef;
  let conn: Connection;
  const ex = async (cmd: string) => (await lab.exec("host1", ["sh", "-c", cmd], { allowFailure: true, timeoutMs: 60_000 })).stdout.trim();
  const current = () => ex("readlink -f /run/current-system");
  const generation = async () => Number((await ex("readlink /nix/var/nix/profiles/system")).replace(/\D/g, ""));
  const write = (role: string, activation = "") =>
    writeStack(s.cwd, "t", { m: { targetHost: h.address, config: nixConfig("nx", { role, paths: 2, activation }), connectTimeout: 5, magicRollback: false } },
      { "pulumi-nixos:sshPrivateKeyFile": lab.privateKeyPath });
  const recorded = () => stateResources(s.state).m.outputs;

  before(async () => {
    tmp = tempDir("nxsw");
    lab = await Lab.up({ dir: path.join(tmp, "lab"), hosts: 1 });
    [h] = await lab.status();
    conn = { host: h.address, port: 22, user: "root", privateKey: fs.readFileSync(lab.privateKeyPath, "utf8") } as Connection;
    s = { cwd: path.join(tmp, "prog"), stack: "t", state: path.join(tmp, "prog", "t.state.json") };
    s = write("v1");
    expectExit(await engine("up", s), 0, "first deploy");
  });
  after(async () => {
    await lab?.down();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  test("exit 2 under NixOS's unit PATH fails the deploy: the previous generation is re-activated, boot default and state agree; a good switch deploys", async () => {
    // The host's transient units have NixOS's PATH: the switch wrapper must not need cat & co.
    assert.equal((await lab.exec("host1", ["systemd-run", "--quiet", "--wait", "--pipe", "--collect", "/bin/sh", "-c", "command -v cat || echo none"])).stdout.trim(), "none");
    const old = recorded();
    const gen = await generation();
    assert.equal(lab.bootDefault("host1"), old.systemPath, "the deploy's boot loader step recorded it");
    // exit 2: the activation script failed after it ran (the new system is half active).
    s = write("v2", `system.activationScripts.stamp = "echo v2 >> /run/v2.activations";\n  test.activation.exitCode = 2;`);
    const r = await engine("up", s);
    expectExit(r, 1, "exit 2");
    assert.match(r.stdout, new RegExp(`switch-to-configuration switch failed with exit 2; the host rolled back to generation ${gen} and re-activated it;`));
    assert.equal(await ex("cat /run/v2.activations"), "v2", "v2 was activated before its switch failed");
    assert.equal(recorded().systemPath, old.systemPath, "the state keeps the old system");
    assert.equal(await current(), old.systemPath, "the host runs the old system again");
    assert.equal(await generation(), gen, "the profile is back at the old generation");
    assert.equal(lab.bootDefault("host1"), old.systemPath, "the boot default is the running generation again");
    assert.equal(await ex("systemctl list-units --state=failed --plain --no-legend | grep -c . || true"), "0", "no failed unit left (the switch unit's own failure included)");

    s = write("v3");
    const ok = await engine("up", s);
    expectExit(ok, 0, "a good switch");
    assert.equal(await current(), recorded().systemPath);
    assert.notEqual(recorded().systemPath, old.systemPath);
    assert.equal(recorded().generation, gen + 1);
    assert.equal(lab.bootDefault("host1"), recorded().systemPath);
    // After a reboot the host runs what the state records.
    await lab.reboot("host1");
    assert.equal(await current(), recorded().systemPath);
  });

  test("exit 4 (units failed) counts as activated: recorded with its failed units, the boot default is the new system", async () => {
    s = write("v4", `systemd.services.broken = { wantedBy = [ "multi-user.target" ]; serviceConfig = { Type = "oneshot"; RemainAfterExit = true; ExecStart = "/bin/false"; }; };`);
    const r = await engine("up", s);
    expectExit(r, 1, "exit 4");
    assert.match(r.stdout, /exited with 4 \(some units failed: broken\.service\)/);
    assert.equal(await current(), recorded().systemPath, "recorded: the host runs it");
    assert.equal(lab.bootDefault("host1"), recorded().systemPath);
    s = write("v5");
    expectExit(await engine("up", s), 0, "back to a good system");
  });

  test("a host that is not NixOS: the switch refuses before activating anything; the profile change is undone, nothing re-activated", async () => {
    const before = await current();
    const gen = await generation();
    const sys = await buildSystem(`{ networking.hostName = "nx"; environment.etc.role.text = "refused"; }`);
    await copyToHost(lab, "host1", sys);
    await ex("mv /etc/NIXOS /etc/NIXOS.off; sed -i 's/^ID=nixos$/ID=debian/' /etc/os-release");
    const ssh = await SshSession.connect(conn, { pin: h.hostPublicKey, timeoutMs: 10_000 });
    try {
      const r = await activate(ssh, sys, "switch", { timeoutSec: 60 });
      assert.equal(r.exitCode, 2, r.tail.join("\n"));
      assert.ok(r.tail.includes("This is not a NixOS installation!"), r.tail.join("\n"));
      assert.equal(r.activated, false);
      assert.equal(r.reactivated, undefined, "nothing was activated: nothing to re-activate");
      assert.equal(r.rolledBackTo, gen);
    } finally {
      ssh.close();
      await ex("mv /etc/NIXOS.off /etc/NIXOS; sed -i 's/^ID=debian$/ID=nixos/' /etc/os-release");
    }
    assert.equal(await current(), before);
    assert.equal(await generation(), gen);
    assert.equal(lab.bootDefault("host1"), before, "the boot default is the running system");
  });

  test("exit 1 after \"activating the configuration...\" (ng's internal errors) counts as activated: the previous generation is re-activated", async () => {
    const before = await current();
    const gen = await generation();
    // A toplevel whose switch fails as ng does on an internal error once it has started activating.
    const drv = `derivation { name = "nixos-system-nx-ng-internal-error"; system = builtins.currentSystem; builder = "/bin/sh"; PATH = "/usr/bin:/bin";
      args = [ "-c" "mkdir -p $out/bin && printf '#!/bin/sh\\necho activating the configuration... >&2\\necho Failed to reset failed units >&2\\nexit 1\\n' > $out/bin/switch-to-configuration && chmod +x $out/bin/switch-to-configuration" ]; }`;
    const sys = (await run(["nix-build", "--no-out-link", "-E", drv])).stdout.trim();
    await copyToHost(lab, "host1", sys);
    const ssh = await SshSession.connect(conn, { pin: h.hostPublicKey, timeoutMs: 10_000 });
    try {
      const r = await activate(ssh, sys, "switch", { timeoutSec: 60 });
      assert.equal(r.exitCode, 1, r.tail.join("\n"));
      assert.equal(r.activated, true);
      assert.deepEqual(r.reactivated, { generation: gen, system: before, rc: 0 }, "re-activated with switch");
    } finally {
      ssh.close();
    }
    assert.equal(await current(), before);
    assert.equal(await generation(), gen);
    assert.equal(lab.bootDefault("host1"), before);
  });

  test("progress on stderr; a closed stderr ends the stand-in with 101 as ng's panic; the lock gives 11", async () => {
    const cur = await current();
    // ng's eprintln! panics on a write error (SIGPIPE ignored): exit 101 at the first progress line.
    assert.equal(await ex(`${cur}/bin/switch-to-configuration test 2>&- >/dev/null; echo $?`), "101");
    const held = await ex(`flock /run/nixos/switch-to-configuration.lock ${cur}/bin/switch-to-configuration test 2>&1 >/dev/null; echo "rc=$?"`);
    assert.match(held, /Could not acquire lock\nrc=11$/);
    const r = await switchTo(lab, "host1", cur, "test");
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "");
    assert.match(r.stderr, /^activating the configuration\.\.\.$/m);
  });

  test("rollback across a switch that drops every SSH session completes on the host (the switch runs in its unit)", async () => {
    // Generation A's switch ends every SSH session (as one restarting sshd or the network would).
    const a = await buildSystem(`{ networking.hostName = "nx"; environment.etc.role.text = "A"; test.activation = { dropSsh = true; hang = 1; };
      system.activationScripts.stamp = "echo A >> /run/a.activations"; }`);
    const b = await buildSystem(`{ networking.hostName = "nx"; environment.etc.role.text = "B"; }`);
    for (const p of [a, b]) await copyToHost(lab, "host1", p);
    assert.equal((await switchTo(lab, "host1", a)).code, 0);
    const genA = await generation();
    assert.equal((await switchTo(lab, "host1", b)).code, 0);
    await ex("rm -f /run/a.activations");
    const res = await rollback({ name: "nx", urn: "urn:pulumi:t::pulumi-nixos::pulumi-nixos:index:Machine::nx", connection: conn, hostPublicKey: h.hostPublicKey, systemPath: b, tags: [] });
    assert.deepEqual(res, { generation: genA, system: a });
    assert.equal(await ex("cat /run/a.activations"), "A", "A's activation ran to its end after the session was gone");
    assert.equal(await current(), a);
    assert.equal(lab.bootDefault("host1"), a);
    // Back to what the state records.
    expectExit(await engine("up", s), 0, "converge");
  });
});
