import "./helpers/env";
import { describe, test, before, after } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "fs";
import * as path from "path";
import { Lab, LabHostInfo } from "../provider/lab/lab";
import { run } from "../provider/util/run";
import { canRunLab, tempDir, ROOT } from "./helpers/env";
import { engine, expectExit, stateResources } from "./helpers/engine";
import { writeStack, nixConfig, TestMachine } from "./helpers/stack";

const skip = canRunLab ? false : "the lab needs root on Linux";

describe("machines: faults and bad input", { skip }, () => {
  let tmp = "";
  let lab: Lab;
  let hosts: LabHostInfo[] = [];
  let n = 0;
  const stack = (machines: Record<string, TestMachine>, extra: Record<string, unknown> = {}) =>
    writeStack(path.join(tmp, `p${++n}`), "t", machines, { "pulumi-nixos:sshPrivateKeyFile": lab.privateKeyPath, ...extra });
  const current = async (name: string) => (await lab.exec(name, ["sh", "-c", "readlink /run/current-system || true"])).stdout.trim();
  const generation = async (name: string) => (await lab.exec(name, ["sh", "-c", "readlink /nix/var/nix/profiles/system || true"])).stdout.trim();

  before(async () => {
    tmp = tempDir("faults");
    lab = await Lab.up({ dir: path.join(tmp, "lab"), hosts: 3 });
    hosts = await lab.status();
  });
  after(async () => {
    await lab?.down();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  test("unreachable host: clear error after connectTimeout, the other machines still deploy", async () => {
    const s = stack({
      a: { targetHost: hosts[0].address, config: nixConfig("a"), connectTimeout: 3 },
      b: { targetHost: hosts[1].address, config: nixConfig("b"), connectTimeout: 3 },
    });
    await lab.cut("host1");
    try {
      const r = await engine("up", s);
      expectExit(r, 1, "up with a cut host");
      assert.match(r.stdout, /error: (\S+-)?a .*cannot connect to root@10\.231\.\d+\.2:22: no answer within 3 s \(connectTimeout\)/);
      const st = stateResources(s.state);
      assert.equal(st.a, undefined, "the unreachable machine is not in state");
      // After the generation the lab seeded (systemd hosts boot generation 1).
      assert.equal(st.b.outputs.generation, (hosts[1].generation ?? 0) + 1, "the reachable machine deployed");
      // Refresh of a machine whose host is unreachable is an error, never "resource gone".
      await lab.restore("host1");
      await lab.cut("host2");
      const rf = await engine("refresh", s);
      expectExit(rf, 1, "refresh with a cut host");
      assert.match(rf.stdout, /error: (\S+-)?b .*refreshing failed: cannot connect/);
      assert.ok(stateResources(s.state).b, "still in state");
    } finally {
      await lab.restore("host1");
      await lab.restore("host2");
    }
  });

  test("wrong SSH key: authentication error, nothing deployed", async () => {
    const other = path.join(tmp, "other_key");
    await run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", other]);
    const s = stack({ a: { targetHost: hosts[0].address, config: nixConfig("wrongkey") } }, { "pulumi-nixos:sshPrivateKeyFile": other });
    const before = await current("host1");
    const r = await engine("up", s);
    expectExit(r, 1, "up with a wrong key");
    assert.match(r.stdout, /authentication failed \(no key or password offered was accepted for this user\); tried connection\.privateKey/);
    assert.equal(await current("host1"), before);
  });

  test("host key mismatch: refused, with how to accept a new key", async () => {
    const s = stack({ a: { targetHost: hosts[0].address, config: nixConfig("pinned"), hostPublicKey: hosts[1].hostPublicKey } });
    const before = await current("host1");
    const r = await engine("up", s);
    expectExit(r, 1, "up with a wrong pin");
    assert.match(r.stdout, /host key of root@10\.231\.\d+\.2:22 does not match the pinned connection\.hostPublicKey: expected SHA256:\S+ \(ssh-ed25519\), host presented SHA256:\S+ \(ssh-ed25519\)\. Refusing/);
    assert.match(r.stdout, /fix connection\.hostPublicKey if the pin is wrong/);
    assert.equal(await current("host1"), before);
    // A recorded key (no pin in the program) is enforced too: the host is "reinstalled" with a new key.
    const s2 = stack({ a: { targetHost: hosts[2].address, config: nixConfig("tofu") } });
    expectExit(await engine("up", s2), 0, "first contact");
    await lab.exec("host3", ["sh", "-c", "rm -f /etc/ssh/ssh_host_ed25519_key* && ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key"]);
    await lab.reboot("host3");
    writeStack(s2.cwd, "t", { a: { targetHost: hosts[2].address, config: nixConfig("tofu", { role: "changed" }) } }, { "pulumi-nixos:sshPrivateKeyFile": lab.privateKeyPath });
    const r2 = await engine("up", s2);
    expectExit(r2, 1, "up after the host key changed");
    assert.match(r2.stdout, /host key of root@.* changed since first contact: expected SHA256:\S+ \(ssh-ed25519\), host presented SHA256:/);
    assert.match(r2.stdout, /set connection\.hostPublicKey to the new key/);
    hosts = await lab.status();
  });

  test("missing configuration file and Nix evaluation errors: clear, named, nothing deployed", async () => {
    const s = stack({ a: { targetHost: hosts[0].address, configuration: "./nope.nix" } });
    const r = await engine("preview", s);
    expectExit(r, 1, "missing file");
    assert.match(r.stdout, /Machine a: configuration file .*nope\.nix does not exist/);
    const s2 = stack({
      good: { targetHost: hosts[0].address, config: nixConfig("good") },
      bad: { targetHost: hosts[1].address, config: `{ ... }: { networking.hostName = undefinedThing; }` },
    });
    const before = await current("host1");
    const r2 = await engine("up", s2);
    expectExit(r2, 1, "evaluation error");
    assert.match(r2.stdout, /Machine bad: evaluation of .*bad\.nix failed:\n?[\s\S]*undefined variable 'undefinedThing'/);
    assert.doesNotMatch(r2.stdout, /Machine good: evaluation/, "the error names only the broken machine");
    assert.match(r2.stdout, /nothing was deployed: the fleet.s evaluation failed \(not deployed either: good\)/);
    assert.equal(await current("host1"), before, "nothing deployed when the program has an evaluation error");
  });

  test("activation exit 1 keeps the old system; exit 4 records the new one and the next up retries", async () => {
    const s = stack({ a: { targetHost: hosts[0].address, config: nixConfig("act") } });
    expectExit(await engine("up", s), 0, "first deploy");
    const good = stateResources(s.state).a.outputs;
    const gen = await generation("host1");

    writeStack(s.cwd, "t", { a: { targetHost: hosts[0].address, config: nixConfig("act", { role: "broken", activation: "test.activation.exitCode = 1;" }) } }, { "pulumi-nixos:sshPrivateKeyFile": lab.privateKeyPath });
    const r1 = await engine("up", s);
    expectExit(r1, 1, "exit 1");
    assert.match(r1.stdout, /switch-to-configuration switch failed with exit 1; the system profile was set back to generation \d+; the host keeps running/);
    assert.equal(stateResources(s.state).a.outputs.systemPath, good.systemPath, "state keeps the old system");
    assert.equal(await current("host1"), good.systemPath);
    assert.equal(await generation("host1"), gen, "profile rolled back");

    writeStack(s.cwd, "t", { a: { targetHost: hosts[0].address, config: nixConfig("act", { role: "units", activation: `test.activation.exitCode = 4; test.activation.failedUnits = [ "nginx.service" ];` }) } }, { "pulumi-nixos:sshPrivateKeyFile": lab.privateKeyPath });
    const r4 = await engine("up", s);
    expectExit(r4, 1, "exit 4");
    assert.match(r4.stdout, /exited with 4 \(some units failed: nginx\.service\)/);
    const st4 = stateResources(s.state).a;
    assert.notEqual(st4.outputs.systemPath, good.systemPath, "the new system is recorded");
    assert.equal(await current("host1"), st4.outputs.systemPath);
    assert.deepEqual(st4.outputs.failedUnits, ["nginx.service"]);
    assert.ok(st4.initErrors?.length, "recorded as a partial failure");
    // The next up retries the activation (and fails the same way: the units still fail).
    const again = await engine("preview", s);
    assert.match(again.stdout, /~ 1 to update/);
    const r4b = await engine("up", s);
    expectExit(r4b, 1, "retry of exit 4");
    assert.match(r4b.stdout, /host1|a: activating|activating/);
  });

  test("activation that hangs is stopped at activationTimeout", async () => {
    const s = stack({ a: { targetHost: hosts[1].address, config: nixConfig("hang", { activation: "test.activation.hang = 60;" }), activationTimeout: 2 } });
    const t0 = Date.now();
    const r = await engine("up", s);
    expectExit(r, 1, "hang");
    assert.match(r.stdout, /timed out after 2 s \(activationTimeout\)/);
    assert.ok(Date.now() - t0 < 50_000, "did not wait for the hang");
  });

  test("connection cut mid-copy: error; after restore the next up copies only what is missing", async () => {
    const s = stack({ a: { targetHost: hosts[2].address, config: nixConfig("bigcopy", { paths: 120, sizeKB: 1024, random: true }), connectTimeout: 5 } });
    const up = engine("up", s);
    // Wait until some paths have arrived, then pull the cable.
    const deadline = Date.now() + 120_000;
    for (;;) {
      const count = Number((await lab.exec("host3", ["sh", "-c", "ls /nix/store | grep -c filler-bigcopy || true"])).stdout.trim());
      if (count >= 10) break;
      if (Date.now() > deadline) throw new Error("copy never started");
      await new Promise((r) => setTimeout(r, 100));
    }
    await lab.cut("host3");
    const r = await up;
    await lab.restore("host3");
    expectExit(r, 1, "cut mid-copy");
    assert.match(r.stdout, /error: (\S+-)?a .*(connection to root@.* lost|timed out|Keepalive|ECONNRESET|closed)/i);
    assert.equal(stateResources(s.state).a, undefined);
    let r2 = await engine("up", s);
    if (r2.code !== 0 && /pid \d+ no longer runs on this machine/.test(r2.stdout)) {
      // The cut deploy's lock (kept: the host may still have run its import) has not expired yet:
      // what the message tells the operator to do, once nothing runs for it on the host.
      assert.match(r2.stdout, /the lock expires at \d\d:\d\d:\d\d \(\d+ s; .*then run again; or, once you know nothing runs there for it, `pulumi-nixos unlock a --stack t --force`/);
      // Its first advice: wait for the expiry it names, then run again (`unlock` needs the
      // machine in the state, and this first deploy recorded nothing).
      const secs = Number(/the lock expires at \d\d:\d\d:\d\d \((\d+) s;/.exec(r2.stdout)?.[1] ?? 60);
      await new Promise((res) => setTimeout(res, (secs + 2) * 1000));
      r2 = await engine("up", s);
    }
    expectExit(r2, 0, "up after restore");
    const m = stateResources(s.state).a.outputs;
    assert.ok(m.bytesCopied < m.closureSize.bytes * 0.95, `second up copied only the rest (${m.bytesCopied} of ${m.closureSize.bytes})`);
    assert.equal(await current("host3"), m.systemPath);
  });

  test("non-root deployer with sudo; two machines on one host are refused", async () => {
    const s = stack({
      d1: { targetHost: hosts[1].address, targetUser: "deployer", config: nixConfig("viasudo") },
    });
    const r = await engine("up", s);
    expectExit(r, 0, "deploy as deployer");
    const m = stateResources(s.state).d1.outputs;
    assert.equal(m.connection.user, "deployer");
    assert.equal(await current("host2"), m.systemPath);
    // Without passwordless sudo: a clear error.
    await lab.exec("host2", ["rm", "/etc/sudoers.d/deployer"]);
    writeStack(s.cwd, "t", { d1: { targetHost: hosts[1].address, targetUser: "deployer", config: nixConfig("viasudo", { role: "again" }) } }, { "pulumi-nixos:sshPrivateKeyFile": lab.privateKeyPath });
    const r2 = await engine("up", s);
    expectExit(r2, 1, "sudo with password");
    assert.match(r2.stdout, /sudo asks for a password; non-root deploys need passwordless sudo \((sudo: )?NOPASSWD(, doas: nopass)?\) for deployer/);
    await lab.exec("host2", ["sh", "-c", "echo 'deployer ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/deployer"]);

    const two = stack({
      x: { targetHost: hosts[0].address, config: nixConfig("x") },
      y: { targetHost: hosts[0].address, config: nixConfig("y") },
    });
    // Two machines on one host would overwrite each other: refused before anything runs (#32).
    const before = await current("host1");
    const r3 = await engine("up", two);
    expectExit(r3, 1, "two machines, one host");
    assert.match(r3.stdout, /Machine (\S+-)?y: reaches the same host as Machine (\S+-)?x \(10\.231\.\d+\.2:22\)/);
    assert.deepEqual(Object.keys(stateResources(two.state)).filter((k) => k === "x" || k === "y"), [], "neither is recorded");
    assert.equal(await current("host1"), before, "the host is untouched");
  });
});
