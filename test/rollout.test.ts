/**
 * Rolling deploys (issue 35): a network's `rollout` (stack config `pulumi-nixos:rollout` with the
 * `machines` short form) deploys a canary first, then batches; a wave with more failures than
 * allowed stops the rollout and the machines after it are left exactly as they were.
 * Waves are asserted by order (the summary lines, the recorded activation times), never by durations.
 */
import "./helpers/env";
import { describe, test, before, after } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "fs";
import { spawn } from "child_process";
import * as path from "path";
import { Lab, LabHostInfo } from "../provider/lab/lab";
import { ROOT, canRunLab, tempDir } from "./helpers/env";
import { engine, expectExit, stateResources, StackRef } from "./helpers/engine";
import { writeStack, nixConfig, TestMachine } from "./helpers/stack";
import { MachineRollout, resolveCount } from "../provider/rollout/settings";
import { inWave, noteChange, wavesOf } from "../provider/rollout/coordinator";
import { descriptionProblems, rolloutProblems } from "../provider/schema";

const skip = canRunLab ? false : "the lab needs root on Linux";
const NAMES = ["m1", "m2", "m3", "m4", "m5"];

describe("rollout settings", () => {
  test("percentages of the network round up and are at least 1; counts as given; defaults", () => {
    assert.equal(resolveCount("20%", 5, 0), 1);
    assert.equal(resolveCount("30%", 5, 0), 2);
    assert.equal(resolveCount("1%", 3, 0), 1);
    assert.equal(resolveCount("100%", 7, 0), 7);
    assert.equal(resolveCount(3, 10, 0), 3);
    assert.equal(resolveCount(undefined, 10, 0), 0);
  });

  test("bad fields are named", () => {
    assert.deepEqual(rolloutProblems("network.rollout", { canary: "x", batchSize: 0, maxFailures: "150%", pauseSeconds: -1, order: { tags: "web" }, batchsize: 2 }), [
      'network.rollout.canary: a whole number >= 0 or a percentage such as "20%" (got "x")',
      'network.rollout.batchSize: a whole number >= 1 or a percentage such as "20%" (got 0)',
      'network.rollout.maxFailures: a whole number >= 0 or a percentage such as "20%" (got "150%")',
      "network.rollout.pauseSeconds: a number of seconds >= 0 (got -1)",
      'network.rollout.order.tags: a list of tags (got "web")',
      "network.rollout.batchsize: unknown field (did you mean 'batchSize'?)",
    ]);
    assert.deepEqual(descriptionProblems({ machines: { a: { targetHost: "a", configuration: "./a.nix" } }, rollout: { canary: -1 } }),
      ['network.rollout.canary: a whole number >= 0 or a percentage such as "20%" (got -1)']);
    assert.deepEqual(rolloutProblems("network.rollout", { canary: 1, batchSize: "40%", maxFailures: "10%", pauseSeconds: 0, order: { tags: ["canary"] } }), []);
  });
});

describe("a bad rollout in stack config, through the engine", () => {
  let tmp = "";
  before(() => { tmp = tempDir("rollout-bad"); });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  test("named before anything runs: the field, what it must be, what was given; no stack trace", async () => {
    const s = writeStack(path.join(tmp, "p"), "t", { a: { targetHost: "192.0.2.1", config: nixConfig("a") } }, { "pulumi-nixos:rollout": { canary: 1, batchSize: 0 } });
    const r = await engine("preview", s);
    assert.notEqual(r.code, 0);
    const out = r.stdout + r.stderr;
    assert.match(out, /invalid pulumi-nixos:rollout:\n\s+pulumi-nixos:rollout\.batchSize: a whole number >= 1 or a percentage such as "20%" \(got 0\)/);
    assert.doesNotMatch(out, /^\s+at .*\.(js|ts):\d+/m, "no stack trace");
    assert.doesNotMatch(out, /Machine a: (connecting|checking)/, "nothing ran");
  });

  test("in a description: network.rollout, named with its path", async () => {
    const dir = path.join(tmp, "d");
    const s = writeStack(dir, "t", {}, { "pulumi-nixos:network": { machines: { a: { targetHost: "192.0.2.1", configuration: "./a.nix" } }, rollout: { canary: "0%" } } });
    fs.writeFileSync(path.join(dir, "a.nix"), nixConfig("a"));
    const r = await engine("preview", s);
    assert.notEqual(r.code, 0);
    assert.match(r.stdout + r.stderr, /network\.rollout\.canary: a whole number >= 0 or a percentage such as "20%" \(got "0%"\)/);
  });
});

describe("the coordinator (in-process, no hosts)", () => {
  const settings = (network: string, members: string[], o: Partial<MachineRollout> = {}): MachineRollout =>
    ({ network, members, canary: 1, batchSize: 2, maxFailures: 0, pauseSeconds: 0, rank: 1, ...o });
  const quiet = () => undefined;

  test("waves by order.tags rank, then name: the canary first, then batches; each starts after the previous ended", async () => {
    const members = ["a", "b", "c", "d", "e"];
    const events: string[] = [];
    await Promise.all(members.map((m) => inWave(settings("u1", members, { rank: m === "e" ? 0 : 1 }), m, quiet, async () => {
      events.push(`start ${m}`);
      await new Promise((r) => setTimeout(r, 20));
      events.push(`end ${m}`);
    })));
    assert.deepEqual(wavesOf("u1").map((w) => w.machines), [["e"], ["a", "b"], ["c", "d"]]);
    const at = (e: string) => events.indexOf(e);
    assert.ok(at("end e") < at("start a") && at("end e") < at("start b"), events.join(", "));
    assert.ok(Math.max(at("end a"), at("end b")) < Math.min(at("start c"), at("start d")), events.join(", "));
  });

  test("a canary that fails stops the rollout: the others fail without running, naming the failed machine", async () => {
    const members = ["a", "b", "c"];
    const ran: string[] = [];
    const results = await Promise.allSettled(members.map((m) => inWave(settings("u2", members), m, quiet, async () => {
      ran.push(m);
      if (m === "a") throw new Error("Machine a: confirmation: health check failed: app failed: down; the host rolled back");
    })));
    assert.deepEqual(ran, ["a"]);
    assert.deepEqual(results.map((r) => r.status), ["rejected", "rejected", "rejected"]);
    for (const [i, m] of members.entries()) if (i > 0) {
      assert.equal((results[i] as PromiseRejectedResult).reason.message, `Machine ${m}: not started: the rollout stopped after wave 1: a failed its health check; ${m} was left exactly as it was`);
    }
    // A deploy arriving after the stop fails at once too.
    await assert.rejects(inWave(settings("u2", members), "c", quiet, async () => { ran.push("late"); }), /not started: the rollout stopped after wave 1/);
    assert.deepEqual(ran, ["a"]);
  });

  test("deploys that arrive one at a time (as at --parallel 1), and members that never come: every wave closes, none waits for a deploy not started", async () => {
    const members = ["a", "b", "c", "d"];
    noteChange(settings("u3", members), "d", true); // d is to change, but its Update never comes
    for (const m of ["a", "b", "c"]) await inWave(settings("u3", members), m, quiet, async () => undefined);
    assert.deepEqual(wavesOf("u3").map((w) => w.machines), [["a"], ["b"], ["c"]]);
  });

  test("unchanged members are not waited for: Diff says no change, the wave of what arrived closes at once", async () => {
    const members = ["a", "b", "c"];
    noteChange(settings("u4", members), "b", false);
    noteChange(settings("u4", members), "c", false);
    await inWave(settings("u4", members), "a", quiet, async () => undefined);
    assert.deepEqual(wavesOf("u4").map((w) => w.machines), [["a"]]);
  });
});

describe("rolling deploys in the lab: 5 hosts, canary 1, batches of 2", { skip }, () => {
  let tmp = "";
  let lab: Lab;
  let hosts: LabHostInfo[] = [];
  let s: StackRef;
  const ex = async (i: number, cmd: string) => (await lab.exec(hosts[i].name, ["sh", "-c", cmd], { allowFailure: true, timeoutMs: 60_000 })).stdout.trim();
  const onHost = async (i: number) => ({
    system: await ex(i, "readlink -f /run/current-system"),
    generation: Number((await ex(i, "readlink /nix/var/nix/profiles/system")).replace(/\D/g, "")),
  });
  /** Every machine with role `role`; `bad` machines get a health check that fails; m1 is the canary by tag. */
  const write = (role: string, bad: string[] = [], rollout: Record<string, unknown> = {}, m: Partial<TestMachine> = {}) => {
    const ms: Record<string, TestMachine & { tags?: string[] }> = {};
    NAMES.forEach((n, i) => {
      ms[n] = { targetHost: hosts[i].address, config: nixConfig(n, { role: `${role}-${n}`, paths: 2 }), connectTimeout: 5, activationTimeout: 30, confirmTimeout: 5,
        ...(bad.includes(n) ? { healthChecks: [{ name: "app", command: "echo app-down >&2; exit 1" }] } : {}), ...(n === "m1" ? { tags: ["canary"] } : {}), ...m };
    });
    s = writeStack(s.cwd, "t", ms, { "pulumi-nixos:sshPrivateKeyFile": lab.privateKeyPath,
      "pulumi-nixos:rollout": { canary: 1, batchSize: 2, order: { tags: ["canary"] }, ...rollout } });
  };
  const outputs = () => stateResources(s.state);
  /** The run's lines as they came (the closing "Diagnostics:" repeats the stack's lines). */
  const live = (out: string) => out.split("\nDiagnostics:")[0];
  /** `rollout network: wave N … started: a, b` lines, in output order. */
  const wavesStarted = (out: string) => [...live(out).matchAll(/rollout network: wave (\d+)(?: \(canary\))? started: (.*)$/gm)].map((m) => `${m[1]}: ${m[2]}`);

  before(async () => {
    tmp = tempDir("rollout");
    lab = await Lab.up({ dir: path.join(tmp, "lab"), hosts: 5 });
    hosts = await lab.status();
    s = { cwd: path.join(tmp, "prog"), stack: "t", state: path.join(tmp, "prog", "t.state.json") };
    write("v1");
    const r = await engine("up", s);
    expectExit(r, 0, "first deploy (creates, in waves)");
    assert.deepEqual(wavesStarted(r.stdout), ["1: m1", "2: m2, m3", "3: m4, m5"], "creates take turns too");
  });
  after(async () => {
    await lab?.down();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  test("a system whose health check fails on the canary: the canary rolls back, the 4 others keep their generation, up fails naming them", async () => {
    const before = await Promise.all(NAMES.map((_, i) => onHost(i)));
    const recorded = outputs();
    write("v2", ["m1"]);
    const r = await engine("up", s);
    expectExit(r, 1, "up with a bad canary");
    assert.match(r.stdout, /m1: confirmation: health check failed/);
    assert.match(r.stdout, /rollout network: the rollout stopped after wave 1: m1 failed its health check; not started: m2, m3, m4, m5/);
    for (const n of NAMES.slice(1)) {
      assert.match(r.stdout, new RegExp(`Machine ${n}: not started: the rollout stopped after wave 1: m1 failed its health check; ${n} was left exactly as it was`));
    }
    assert.deepEqual(wavesStarted(r.stdout), ["1: m1"], "no later wave started");
    for (const [i, n] of NAMES.entries()) {
      assert.deepEqual(await onHost(i), before[i], `${n} runs what it ran before (the canary rolled back)`);
      assert.equal(outputs()[n].outputs.systemPath, recorded[n].outputs.systemPath, `${n}: the state keeps the old system`);
      assert.equal(outputs()[n].outputs.generation, recorded[n].outputs.generation);
    }
  });

  test("a good system: three waves in order (canary, then 2 and 2), every machine deployed", async () => {
    write("v3");
    const r = await engine("up", s);
    expectExit(r, 0, "up with a good system");
    assert.deepEqual(wavesStarted(r.stdout), ["1: m1", "2: m2, m3", "3: m4, m5"]);
    const at = (n: string) => Date.parse(outputs()[n].outputs.activatedAt);
    // Each wave's machines were all deployed (activatedAt is recorded after confirmation) before the next wave's.
    assert.ok(at("m1") < Math.min(at("m2"), at("m3")), "the canary before wave 2");
    assert.ok(Math.max(at("m2"), at("m3")) < Math.min(at("m4"), at("m5")), "wave 2 before wave 3");
    const summary = [...live(r.stdout).matchAll(/rollout network: wave (\d+)(?: \(canary\))?: (.*?); (\S+) → (\S+); deployed$/gm)];
    assert.deepEqual(summary.map((m) => `${m[1]}: ${m[2]}`), ["1: m1", "2: m2, m3", "3: m4, m5"], "one summary line per wave, with its outcome");
    for (const [i, n] of NAMES.entries()) assert.equal((await onHost(i)).system, outputs()[n].outputs.systemPath, `${n} runs the new system`);
  });

  test("maxFailures 1 with one bad host in wave 2: wave 3 still runs; the next up resumes with what is still to change", async () => {
    const old = outputs().m2.outputs;
    write("v4", ["m2"], { maxFailures: 1 });
    const r = await engine("up", s);
    expectExit(r, 1, "up with a bad host in wave 2");
    assert.deepEqual(wavesStarted(r.stdout), ["1: m1", "2: m2, m3", "3: m4, m5"]);
    assert.match(r.stdout, /rollout network: wave 2: m2, m3; \S+ → \S+; m2 failed its health check \(1 of 2 failed, 1 allowed\)/);
    assert.doesNotMatch(r.stdout, /not started/);
    assert.equal(outputs().m2.outputs.systemPath, old.systemPath, "m2 rolled back, the state keeps its old system");
    for (const [i, n] of NAMES.entries()) if (n !== "m2") assert.equal((await onHost(i)).system, outputs()[n].outputs.systemPath, `${n} deployed`);
    // Resuming: only m2 is still to change; it goes alone (the canary of this run).
    write("v4", [], { maxFailures: 1 });
    const again = await engine("up", s);
    expectExit(again, 0, "the next up");
    assert.deepEqual(wavesStarted(again.stdout), ["1: m2"], "only what is still to change");
    assert.equal((await onHost(1)).system, outputs().m2.outputs.systemPath);
  });

  test("--parallel 1: no deadlock; waves form from the deploys that arrive, in order", async () => {
    write("v5");
    const r = await engine("up", s, ["--parallel", "1"]);
    expectExit(r, 0, "up at --parallel 1");
    const waves = wavesStarted(r.stdout);
    assert.deepEqual(waves.map((w) => w.split(": ")[1]).join(", ").split(", ").sort(), NAMES, "every machine deployed in some wave");
    assert.ok(waves.every((w) => !w.includes(",")), `one deploy at a time: ${waves.join(" | ")}`);
    for (const [i, n] of NAMES.entries()) assert.equal((await onHost(i)).system, outputs()[n].outputs.systemPath, `${n} deployed`);
  });
  test("an interrupted run (^C twice between waves): the next up resumes with the machines not deployed yet", async () => {
    const before = await Promise.all(NAMES.map((_, i) => onHost(i)));
    write("v6", [], { pauseSeconds: 120 });
    // The harness as a foreground job: ^C goes to its process group (the plugin has its own, as under the CLI).
    const child = spawn(process.execPath, [path.join(ROOT, "dist/test/engine/cli.js"), "up", "--cwd", s.cwd, "--stack", s.stack, "--state", s.state],
      { stdio: ["ignore", "pipe", "pipe"], detached: true });
    let text = "";
    child.stdout!.on("data", (d) => { text += d; });
    child.stderr!.on("data", (d) => { text += d; });
    const exit = new Promise<number>((r) => child.once("exit", (c) => r(c ?? 128)));
    for (let t0 = Date.now(); !/rollout network: wave 1 \(canary\): m1; .* deployed/.test(text);) {
      if (Date.now() - t0 > 120_000) throw new Error(`the canary wave did not end:\n${text}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    // During the pause: the canary is deployed and recorded, the others wait for their wave.
    process.kill(-child.pid!, "SIGINT");
    await new Promise((r) => setTimeout(r, 500));
    process.kill(-child.pid!, "SIGINT");
    assert.notEqual(await exit, 0, "the run was interrupted");
    assert.equal(outputs().m1.outputs.systemPath, (await onHost(0)).system, "the canary is recorded");
    assert.notEqual(outputs().m1.outputs.systemPath, before[0].system);
    for (const [i, n] of NAMES.entries()) if (i > 0) assert.deepEqual(await onHost(i), before[i], `${n} untouched`);
    write("v6");
    const r = await engine("up", s);
    expectExit(r, 0, "the next up");
    assert.deepEqual(wavesStarted(r.stdout), ["1: m2", "2: m3, m4", "3: m5"], "only what is still to change, in waves again");
    for (const [i, n] of NAMES.entries()) assert.equal((await onHost(i)).system, outputs()[n].outputs.systemPath, `${n} deployed`);
  });
  test("magicRollback off: the health checks still gate the wave; the failed canary keeps its new system, recorded as unhealthy; the rest not started", async () => {
    const before = await Promise.all(NAMES.map((_, i) => onHost(i)));
    write("v7", ["m1"], {}, { magicRollback: false });
    const r = await engine("up", s);
    expectExit(r, 1, "up with a bad canary, no magic rollback");
    assert.match(r.stdout, /Machine m1: health check failed: app failed: app-down; magicRollback is off, so m1 keeps running \/nix\/store\//);
    assert.match(r.stdout, /rollout network: the rollout stopped after wave 1: m1 failed its health check; not started: m2, m3, m4, m5/);
    const m1 = outputs().m1;
    assert.equal((await onHost(0)).system, m1.outputs.systemPath, "m1 runs the new system, and the state says so");
    assert.notEqual(m1.outputs.systemPath, before[0].system);
    assert.ok(m1.initErrors?.length, "recorded as unhealthy: the next up retries it");
    for (const [i, n] of NAMES.entries()) if (i > 0) assert.deepEqual(await onHost(i), before[i], `${n} untouched`);
    write("v7", [], {}, { magicRollback: false });
    const again = await engine("up", s);
    expectExit(again, 0, "the fixed checks");
    for (const [i, n] of NAMES.entries()) assert.equal((await onHost(i)).system, outputs()[n].outputs.systemPath, `${n} deployed`);
  });
});
