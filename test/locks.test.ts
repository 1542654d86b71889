/**
 * The lock on the host itself (provider/host/lock.ts): two deployers in two processes never
 * change one host at once; a holder that is gone leaves an expired lock that `unlock` breaks;
 * NixOS's own switch-to-configuration lock is respected.
 */
import "./helpers/env";
import { describe, test, before, after } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "fs";
import * as path from "path";
import { spawn } from "child_process";
import { Lab, LabHostInfo } from "../provider/lab/lab";
import { run, RunResult } from "../provider/util/run";
import { canRunLab, ROOT, tempDir } from "./helpers/env";
import { engine, expectExit } from "./helpers/engine";
import { writeStack, nixConfig } from "./helpers/stack";

const skip = canRunLab ? false : "the lab needs root on Linux";
const CLI = path.join(ROOT, "dist/test/engine/cli.js");
const BIN = path.join(ROOT, "bin/pulumi-nixos.js");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("host locks", { skip }, () => {
  let tmp = "";
  let lab: Lab;
  let h: LabHostInfo;
  const onHost = async (cmd: string) => (await lab.exec("host1", ["sh", "-c", cmd], { allowFailure: true })).stdout.trim();
  const current = () => onHost("readlink /run/current-system || true");
  const lockFile = () => onHost("cat /run/pulumi-nixos/lock 2>/dev/null || true");
  const stack = (dir: string, name: string, hostName: string, activation = "") => writeStack(path.join(tmp, dir), name, {
    heron: { targetHost: h.address, config: nixConfig(hostName, { activation }) },
  }, { "pulumi-nixos:sshPrivateKeyFile": lab.privateKeyPath });
  /** Waits until a deploy is inside switch-to-configuration on the host (holding the lock). */
  async function untilActivating(ms = 120_000): Promise<void> {
    const end = Date.now() + ms;
    while (Date.now() < end) {
      if (await onHost("pgrep -f 'bin/switch-to-configuratio[n]' >/dev/null && echo yes")) return;
      await sleep(100);
    }
    throw new Error("no deploy reached the activation");
  }
  const unlock = (name: string, state: string, extra: string[] = []): Promise<RunResult> =>
    run([process.execPath, BIN, "unlock", name, "--state", state, ...extra], { allowFailure: true, timeoutMs: 60_000 });

  before(async () => {
    tmp = tempDir("locks");
    lab = await Lab.up({ dir: path.join(tmp, "lab"), hosts: 1 });
    [h] = await lab.status();
  });
  after(async () => {
    await lab?.down();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  test("two processes deploying one host: the second fails at once naming the holder; unlock refuses a live lock", async () => {
    // Stack "two" deploys first (so it has a state for `unlock`), then "one" holds the host for a while.
    const two = stack("two", "two", "heron-two");
    expectExit(await engine("up", two), 0, "first deploy of stack two");
    const one = stack("one", "one", "heron-one", "test.activation.hang = 25;");
    let firstDone = false;
    // Its lock lives 3 s: only renewals keep it (the engine takes its environment when it starts).
    process.env.PULUMI_NIXOS_LOCK_TIMEOUT = "3";
    const first = engine("up", one).finally(() => { firstDone = true; });
    delete process.env.PULUMI_NIXOS_LOCK_TIMEOUT;
    await untilActivating();
    await sleep(4_000); // past the first expiry: the holder has renewed
    const before = await current();
    // The other stack changes its machine and deploys meanwhile.
    fs.writeFileSync(path.join(two.cwd, "heron.nix"), nixConfig("heron-two-b"));
    const second = await engine("up", two);
    assert.equal(firstDone, false, "the second deployer did not wait for the first");
    expectExit(second, 1, "the second deployer");
    assert.match(second.stdout, /heron is being deployed by \S+@\S+ \(stack one, since \d\d:\d\d:\d\d, pid \d+\)/);
    assert.doesNotMatch(second.stdout + second.stderr, /@@pulumi-nixos/, "no internal protocol line reaches the operator");
    assert.equal(await current(), before, "the second deployer changed nothing");
    const holder = JSON.parse(await lockFile());
    assert.equal(holder.stack, "one");
    assert.equal(holder.machine, "heron");
    assert.equal(holder.op, "deploy");
    // A live lock is not broken by unlock.
    const u = await unlock("heron", two.state);
    assert.equal(u.code, 1, u.stdout + u.stderr);
    assert.match(u.stderr, /not broken, the lock is live .*heron is being deployed by \S+ \(stack one/);
    const r1 = await first;
    expectExit(r1, 0, "the first deployer");
    assert.match(await current(), /heron-one/);
    assert.equal(await lockFile(), "", "released at the end of the deploy");
    // Once the host is free the other stack deploys.
    expectExit(await engine("up", two), 0, "stack two after the first finished");
    assert.match(await current(), /heron-two-b/);
    assert.equal(await lockFile(), "");
  });

  test("a killed holder's lock expires, is reported, and unlock breaks it", async () => {
    const s = stack("killed", "killed", "heron-k1");
    expectExit(await engine("up", s), 0, "first deploy");
    // The same stack from another checkout: a deploy that builds on the host (~300 MB of fillers),
    // so the lock is held across its commands; its lifetime is 3 s (renewed every second).
    const b = writeStack(path.join(tmp, "killed-b"), "killed", { heron: { targetHost: h.address, buildOn: "target", config: nixConfig("heron-k2", { paths: 40, sizeKB: 8192, random: true }) } },
      { "pulumi-nixos:sshPrivateKeyFile": lab.privateKeyPath });
    const child = spawn(process.execPath, [CLI, "up", "--cwd", b.cwd, "--stack", b.stack, "--state", b.state], {
      detached: true, stdio: "ignore", env: { ...process.env, PULUMI_NIXOS_LOCK_TIMEOUT: "3" },
    });
    const exited = new Promise((r) => child.on("exit", r));
    try {
      // Killed while the host builds: that command does not end the deploy, so nothing on the
      // host releases the lock; only its expiry tells that the holder is gone.
      const end = Date.now() + 120_000;
      while (!(await onHost("pgrep -f 'nix-store --realis[e]' >/dev/null && echo yes"))) {
        if (Date.now() > end) throw new Error("the deploy never started its build on the host");
        await sleep(20);
      }
      process.kill(-child.pid!, "SIGKILL");
      await exited;
      // The killed run also left its stack lock (as the CLI's file backend does): `pulumi cancel` it.
      assert.ok(fs.existsSync(`${b.state}.lock`), "the stack lock of the killed run");
      expectExit(await run([process.execPath, CLI, "cancel", "--state", b.state], { allowFailure: true }), 0, "engine cancel");
      const held = JSON.parse(await lockFile());
      assert.equal(held.stack, "killed");
      await sleep(4_000); // past its expiry, no renewal
      fs.writeFileSync(path.join(s.cwd, "heron.nix"), nixConfig("heron-k3"));
      const r = await engine("up", s);
      expectExit(r, 1, "deploy against an expired lock");
      assert.match(r.stdout, new RegExp(`heron: the lock on \\S+ held by \\S+ \\(stack killed, since \\d\\d:\\d\\d:\\d\\d, pid ${held.pid}\\) expired at \\d\\d:\\d\\d:\\d\\d`));
      assert.match(r.stdout, /pulumi-nixos unlock heron --stack killed/);
      assert.match(await current(), /heron-k1/, "nothing changed");
      const u = await unlock("heron", s.state);
      assert.equal(u.code, 0, u.stdout + u.stderr);
      assert.match(u.stdout, /heron: lock broken \(heron: the lock on .* expired/);
      assert.equal(await lockFile(), "");
      expectExit(await engine("up", s), 0, "deploy after unlock");
      assert.match(await current(), /heron-k3/);
      assert.match((await unlock("heron", s.state)).stdout, /is not locked/);
    } finally {
      try { process.kill(-child.pid!, "SIGKILL"); } catch { /* already gone */ }
      await onHost("rm -f /run/pulumi-nixos/lock"); // whatever failed, the next test starts unlocked
    }
  });

  test("NixOS's switch-to-configuration lock held by someone: the deploy fails at once, changes nothing, and never holds it", async () => {
    const s = stack("stc", "stc", "heron-s1");
    const pid = await onHost("mkdir -p /run/nixos; sh -c 'exec 9>/run/nixos/switch-to-configuration.lock; flock 9; exec sleep 60' >/dev/null 2>&1 & echo $!");
    assert.match(pid, /^\d+$/);
    try {
      await sleep(300);
      const before = await current();
      const r = await engine("up", s);
      expectExit(r, 1, "deploy during a manual switch");
      assert.match(r.stdout, /heron: switch-to-configuration is already running on \S+ \(\/run\/nixos\/switch-to-configuration\.lock is held\); nothing was changed/);
      assert.equal(await current(), before);
      assert.equal(await lockFile(), "", "our own lock was not taken");
    } finally {
      await onHost(`kill ${pid}`);
    }
    expectExit(await engine("up", s), 0, "deploy once the switch lock is free");
    assert.match(await current(), /heron-s1/);
    assert.equal(await onHost("flock -n /run/nixos/switch-to-configuration.lock echo free"), "free", "we did not keep NixOS's lock");
  });
});
