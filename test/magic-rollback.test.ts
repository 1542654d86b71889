import "./helpers/env";
import { describe, test, before, after } from "node:test";
import * as assert from "node:assert/strict";
import { spawn } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { Lab, LabHostInfo } from "../provider/lab/lab";
import { run } from "../provider/util/run";
import { ROOT, STANDIN_NIXPKGS, canRunLab, tempDir } from "./helpers/env";
import { engine, expectExit, stateResources, StackRef } from "./helpers/engine";
import { writeStack, nixConfig, slowUnit as slow, TestMachine } from "./helpers/stack";
import { create, MachineInputs } from "../provider/handlers/machine";
import { closeAllSessions } from "../provider/ssh/pool";
import { sshStats } from "../provider/ssh/session";

const skip = canRunLab ? false : "the lab needs root on Linux";

// The lab's hosts may not change their own network (no CAP_NET_ADMIN): an activation that cuts
// the host off asks the test to pull its cable (lab.cut) and waits until that is done; the test puts
// it back once the host runs its old system again (as that system's network setup would).
const cutRoute = `system.activationScripts.zcut = "touch /run/cut-me; for i in $(seq 300); do [ -e /run/cut-done ] && break; sleep 0.1; done";`;


describe("magic rollback, recovery after a lost connection, health checks", { skip }, () => {
  let tmp = "";
  let lab: Lab;
  let hosts: LabHostInfo[] = [];
  let s: StackRef;
  const ex = async (host: string, cmd: string) => (await lab.exec(host, ["sh", "-c", cmd], { allowFailure: true, timeoutMs: 60_000 })).stdout.trim();
  const current = (host = "host1") => ex(host, "readlink -f /run/current-system");
  const generation = async (host = "host1") => Number((await ex(host, "readlink /nix/var/nix/profiles/system")).replace(/\D/g, ""));
  /** The stack's one machine `heron` on host1, with a configuration of `role` plus `extra`. */
  const write = (role: string, extra = "", m: Partial<TestMachine> = {}) => writeStack(s.cwd, "t", {
    heron: { targetHost: hosts[0].address, config: nixConfig("heron", { role, paths: 2, activation: extra }), connectTimeout: 3,
      activationTimeout: 15, confirmTimeout: 5, ...m },
  }, { "pulumi-nixos:sshPrivateKeyFile": lab.privateKeyPath });
  async function until(what: string, cond: () => Promise<boolean>, ms = 60_000): Promise<number> {
    const t0 = Date.now();
    while (!(await cond())) {
      if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    return Date.now() - t0;
  }
  const sshdAnswers = async () => (await run(["ssh", "-i", lab.privateKeyPath, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
    "-o", "ConnectTimeout=5", `root@${hosts[0].address}`, "true"], { allowFailure: true, timeoutMs: 20_000 })).code === 0;
  /** A failed up: the state and the host still have the old system, and no rollback timer is left. */
  async function assertRolledBack(r: { stdout: string }, old: { systemPath: string; generation: number }): Promise<void> {
    assert.equal(stateResources(s.state).heron.outputs.systemPath, old.systemPath, "the state keeps the old system");
    assert.equal(await current(), old.systemPath, "the host runs the old system again");
    assert.equal(await generation(), old.generation, "the profile is back at the old generation");
    assert.equal(await ex("host1", "systemctl list-units --all --plain --no-legend 'pulumi-nixos-rollback-*' | grep -c . || true"), "0", "no timer left");
    assert.match(r.stdout, new RegExp(`rolled back to generation ${old.generation} `));
  }
  const recorded = () => { const o = stateResources(s.state).heron.outputs; return { systemPath: o.systemPath as string, generation: o.generation as number }; };

  before(async () => {
    tmp = tempDir("magic");
    lab = await Lab.up({ dir: path.join(tmp, "lab"), hosts: 2 });
    hosts = await lab.status();
    s = { cwd: path.join(tmp, "prog"), stack: "t", state: path.join(tmp, "prog", "t.state.json") };
    s = write("v1");
    expectExit(await engine("up", s), 0, "first deploy");
  });
  after(async () => {
    await closeAllSessions();
    await lab?.down();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  test("a configuration that disables sshd: not confirmed, the host rolls back, the state is unchanged; the fixed configuration converges", async () => {
    const old = recorded();
    write("no-sshd", "services.openssh.enable = false;");
    const r = await engine("up", s);
    expectExit(r, 1, "up of a configuration without sshd");
    assert.match(r.stdout, /heron: confirmation: not confirmed within 5 s \(no new SSH connection: cannot connect to .*\); the host rolled back to generation \d+ /);
    await assertRolledBack(r, old);
    assert.equal(await ex("host1", "systemctl is-active sshd.service"), "active");
    assert.ok(await sshdAnswers(), "sshd answers again");
    write("v2");
    const r2 = await engine("up", s);
    expectExit(r2, 0, "up with the fixed configuration");
    assert.match(r2.stdout, /confirmed in [\d.]+ s/);
    assert.equal(await current(), recorded().systemPath);
    assert.equal(recorded().generation, old.generation + 1);
  });

  test("a configuration whose activation cuts the host off the network: the host rolls back by itself confirmTimeout after the switch", async () => {
    const old = recorded();
    // A long activationTimeout: only the backstop counts from arming; the confirmation window opens when the switch ends.
    write("cut", cutRoute, { activationTimeout: 120 });
    const t0 = Date.now();
    const up = engine("up", s);
    let cutAt = 0, backAfter = 0;
    const cable = (async () => {
      await until("the activation's cut", async () => (await ex("host1", "test -e /run/cut-me && echo y")) === "y");
      await lab.cut("host1");
      cutAt = Date.now();
      await ex("host1", "touch /run/cut-done");
      backAfter = await until("the host's own rollback", async () => (await current()) === old.systemPath, 90_000);
      await lab.restore("host1");
      await ex("host1", "rm -f /run/cut-me /run/cut-done");
    })();
    const r = await up;
    await cable;
    expectExit(r, 1, "up of a configuration that cuts the host off");
    // The host is back within seconds, so the deploy's connection may outlive the cut (its keepalive
    // gives up after 15 s): either it was lost, or its late output leads to a confirmation that finds
    // the rollback done. Both say what the host did.
    assert.match(r.stdout, /heron: (activation: the connection was lost|confirmation: not confirmed within the deadline).*the host rolled back to generation \d+ /);
    await assertRolledBack(r, old);
    assert.ok(await sshdAnswers(), "reachable again");
    console.error(`cut off mid-switch: the host ran its old system again ${(backAfter / 1000).toFixed(1)} s after the cut (confirmTimeout 5 + 5 s after the switch; backstop activationTimeout 120 + 5 from arming); up failed after ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    assert.ok(cutAt > 0 && backAfter <= 30_000, `rolled back by the confirmation window, not the 125 s backstop (${backAfter} ms after the cut)`);
  });

  test("failing health checks (a command and an HTTP GET from the host): rollback at once, their output in the error", async () => {
    const old = recorded();
    write("v3", "", {
      healthChecks: [{ command: "echo check-ok" }, { name: "app", command: "echo broken-marker >&2; exit 3" }, { http: "http://127.0.0.1:9/health", timeout: 2, retries: 1 }],
    });
    const r = await engine("up", s);
    expectExit(r, 1, "up whose health checks fail");
    assert.match(r.stdout, /heron: confirmation: health check failed: app failed: broken-marker/);
    assert.match(r.stdout, /GET http:\/\/127\.0\.0\.1:9\/health failed: .*status (000|none), expected 200/);
    assert.doesNotMatch(r.stdout, /command 'echo check-ok' failed/);
    await assertRolledBack(r, old);
    // Passing checks: confirmed.
    write("v3", "", { healthChecks: [{ command: "systemctl is-active sshd.service" }] });
    expectExit(await engine("up", s), 0, "up whose checks pass");
    assert.equal(await current(), recorded().systemPath);
  });

  test("sshd's sessions killed mid-activation: the deployer reconnects, reads the outcome, confirms; state matches the host", async () => {
    write("v4", slow);
    const up = engine("up", s);
    await until("the switch unit", async () => (await ex("host1", "systemctl is-active pulumi-nixos-switch-to-configuration.service")) === "active");
    await ex("host1", "for p in /proc/[0-9]*; do case \"$(tr '\\0' ' ' < $p/cmdline 2>/dev/null)\" in 'sshd: '*@*) kill ${p#/proc/} ;; esac; done");
    await new Promise((r) => setTimeout(r, 1500));
    await ex("host1", "touch /run/slow.go");
    const r = await up;
    expectExit(r, 0, "up whose session was killed mid-activation");
    assert.match(r.stdout, /reconnecting to read the outcome on the host/);
    assert.match(r.stdout, /reconnected: switch-to-configuration exited 0/);
    assert.equal(recorded().systemPath, await current(), "the state records what the host runs");
    assert.equal(await ex("host1", "cat /run/slow.done"), "done");
    assert.equal(await ex("host1", "test -e /run/pulumi-nixos/lock && echo held || echo free"), "free", "the lost command's host lock was released on reconnecting");
    await ex("host1", "rm -f /run/slow.go /run/slow.done");
  });

  test("switch-to-configuration failing: exit 2 rolls back at once; 100 (reboot needed) and 11 (its lock busy) are reported as such; nothing left armed", async () => {
    const old = recorded();
    const noTimer = async () => assert.equal(await ex("host1", "systemctl list-units --all --plain --no-legend 'pulumi-nixos-rollback-*' | grep -c . || true"), "0");
    // Exit 2 (the activation script failed: the new system is half active) with a rollback armed:
    // the previous generation is re-activated at once. That re-activation starts the old system's
    // slow unit again (the failed switch stopped it): let it finish at once.
    await ex("host1", "touch /run/slow.go");
    write("fails", "test.activation.exitCode = 2;");
    const r3 = await engine("up", s);
    expectExit(r3, 1, "exit 2");
    assert.match(r3.stdout, new RegExp(`Machine heron: switch-to-configuration switch failed with exit 2; the host rolled back to generation ${old.generation} and re-activated it;`));
    assert.match(r3.stdout, /heron: activation: activating the configuration\.\.\.\n[\s\S]*Failed to run activate script/, "it failed after activating");
    assert.equal(await current(), old.systemPath);
    assert.equal(lab.bootDefault("host1"), old.systemPath, "its boot loader entry was installed again: the boot default is the running generation");
    await noTimer();
    assert.equal(await generation(), old.generation);
    write("reboot", "test.activation.exitCode = 100;");
    const r = await engine("up", s);
    expectExit(r, 1, "exit 100");
    assert.match(r.stdout, /Machine heron: switch-to-configuration switch exited 100: the new system needs a reboot .*it is the boot default, reboot the host to run it/);
    assert.equal(await current(), old.systemPath);
    assert.equal(await generation(), old.generation + 1, "the new generation stays the boot default");
    assert.notEqual(lab.bootDefault("host1"), old.systemPath, "its boot loader step ran before the 100");
    await noTimer();
    write("busy", "test.activation.exitCode = 11;");
    const r2 = await engine("up", s);
    expectExit(r2, 1, "exit 11");
    assert.match(r2.stdout, /Machine heron: switch-to-configuration switch exited 11: another switch-to-configuration holds its lock .*nothing was activated/);
    assert.equal(await current(), old.systemPath);
    assert.equal(await generation(), old.generation + 1, "only this deploy's own profile change was undone");
    await noTimer();
    assert.equal(recorded().systemPath, old.systemPath, "the state keeps the old system");
    write("v5");
    expectExit(await engine("up", s), 0, "up after both");
    await ex("host1", "rm -f /run/slow.go /run/slow.done");
    assert.equal(await current(), recorded().systemPath);
  });

  test("the deployer SIGKILLed right after the switch: the host rolls back with nobody connected; a no-op redeploy arms nothing", async () => {
    const h = hosts[1];
    const key = fs.readFileSync(lab.privateKeyPath, "utf8");
    const build = async (role: string) => {
      const file = path.join(tmp, `sigkill-${role}.nix`);
      fs.writeFileSync(file, nixConfig("kite", { role, paths: 2 }));
      const drv = (await run(["nix-instantiate", `${STANDIN_NIXPKGS}/nixos`, "-A", "system", "--arg", "configuration", file])).stdout.trim();
      return { drvPath: drv, systemPath: (await run(["nix-store", "--realise", drv])).stdout.trim() };
    };
    const inputs = (sys: { drvPath: string; systemPath: string }, extra: Partial<MachineInputs> = {}): MachineInputs => ({
      name: "kite", connection: { host: h.address, port: 22, user: "root", privateKey: key } as MachineInputs["connection"], ...sys, action: "switch", buildOn: "local",
      substituteOnTarget: false, compress: false, connectTimeout: 3, activationTimeout: 10, confirmTimeout: 5, ...extra,
    });
    const a = await build("a");
    await create(inputs(a));
    const gen = Number((await ex("host2", "readlink /nix/var/nix/profiles/system")).replace(/\D/g, ""));

    // A no-op redeploy (the host runs a already): one remote command, nothing armed, no new connection.
    const before = { ...sshStats };
    await create(inputs(a));
    assert.equal(sshStats.commands - before.commands, 1, "one remote command");
    assert.equal(sshStats.connections - before.connections, 0, "no confirming connection");
    assert.equal(await ex("host2", "ls /run/pulumi-nixos | grep -c rollback || true"), "0", "nothing armed");
    await closeAllSessions();

    // A changed system, deployed by a child process with a slow health check; killed once the host runs b.
    const b = await build("b");
    const child = spawn(process.execPath, [path.join(ROOT, "dist/test/bench/deploy-child.js"),
      JSON.stringify({ ...inputs(b, { healthChecks: [{ command: "sleep 20" }], activationTimeout: 120 }), connection: { host: h.address, port: 22, user: "root" } })],
    { env: { ...process.env, PNX_BENCH_KEY: lab.privateKeyPath }, stdio: "ignore" });
    const exited = new Promise((r) => child.on("exit", r));
    try {
      await until("the switch to b", async () => (await current("host2")) === b.systemPath, 60_000);
      const switched = Date.now();
      child.kill("SIGKILL");
      await exited;
      const back = await until("the host's own rollback", async () => (await current("host2")) === a.systemPath, 60_000);
      const total = (Date.now() - switched) / 1000;
      console.error(`SIGKILL after the switch: the host ran its old system again ${total.toFixed(1)} s later (confirmTimeout 5 + 5 s after the switch; backstop 120 + 5 s from arming)`);
      assert.ok(back > 0 && total <= 5 + 5 + 15, `rolled back by the confirmation window, not the 125 s backstop (${total} s)`);
      await until("the rollback's end", async () => (await ex("host2", "systemctl list-units --all --plain --no-legend 'pulumi-nixos-rollback-*' | grep -c . || true")) === "0", 30_000);
      assert.equal(Number((await ex("host2", "readlink /nix/var/nix/profiles/system")).replace(/\D/g, "")), gen, "profile back at the old generation");
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    }
  });
});
