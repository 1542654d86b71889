/**
 * What the real CLI shows: a resource's progress reaches the engine's Log under the resource's URN
 * (provider/util/engine-log.ts, the hidden `__urn` input), so `pulumi up` shows it under each
 * resource; without an engine (or a URN) it stays on stderr. And ^C as the CLI takes it: the
 * plugin runs in its own process group, so a first ^C at the terminal lets a running copy finish
 * and be recorded, and a second one ends the plugin's group; the next `up` converges.
 */
import "./helpers/env";
import { describe, test, before, after } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "fs";
import * as net from "net";
import * as path from "path";
import { spawn, ChildProcess } from "child_process";
import { Lab, LabHostInfo } from "../provider/lab/lab";
import { run } from "../provider/util/run";
import { canRunLab, ROOT, tempDir } from "./helpers/env";
import { engine, expectExit, stateResources, StackRef } from "./helpers/engine";
import { writeStack, nixConfig } from "./helpers/stack";
import { endImport, resumeImport, stallImport } from "./helpers/stall";
import { MonitorServer } from "./engine/monitor";
import { pluginEngineAddress } from "../provider/util/engine-log";

const CLI = path.join(ROOT, "dist/test/engine/cli.js");
const BIN = path.join(ROOT, "bin/pulumi-nixos.js");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Call { severity: number; message: string; urn: string; ephemeral: boolean }
const readCalls = (file: string): Call[] => fs.existsSync(file) ? fs.readFileSync(file, "utf8").trim().split("\n").filter(Boolean).map((l) => JSON.parse(l)) : [];

describe("resourceLogger inside the dynamic-provider plugin", () => {
  /**
   * Runs `script` as the plugin would be run (`node …/cmd/dynamic-provider/index.js <engine>`), with
   * resourceLogger at hand; resolves with its stderr once it exits.
   */
  async function asPlugin(engineAddress: string, script: string): Promise<{ code: number | null; stderr: string }> {
    const dir = tempDir("engine-log");
    const file = path.join(dir, "cmd", "dynamic-provider", "index.js");
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, `const { resourceLogger, flushLog } = require(${JSON.stringify(path.join(ROOT, "dist/provider/util/log.js"))});\n${script}\n`);
    try {
      return await new Promise((resolve) => {
        const child = spawn(process.execPath, [file, engineAddress], { stdio: ["ignore", "ignore", "pipe"] });
        let stderr = "";
        child.stderr.on("data", (d) => { stderr += d; });
        child.once("exit", (code) => resolve({ code, stderr }));
      });
    } finally { fs.rmSync(dir, { recursive: true, force: true }); }
  }

  const URN = "urn:pulumi:dev::proj::pulumi-nixos:index:Network$pulumi-nodejs:dynamic:Resource::heron";

  test("the engine address is the plugin's last argument, and only inside the plugin", () => {
    assert.equal(pluginEngineAddress(["node", "/x/node_modules/@pulumi/pulumi/cmd/dynamic-provider/index.js", "127.0.0.1:4242"]), "127.0.0.1:4242");
    assert.equal(pluginEngineAddress(["node", "/x/cmd/dynamic-provider", "--logtostderr", "-v=9", "--tracing", "t:1", "[::1]:7"]), "[::1]:7");
    assert.equal(pluginEngineAddress(["node", "/x/bin/pulumi-nixos.js", "ssh", "heron.local:22"]), undefined, "not the plugin");
    assert.equal(pluginEngineAddress(["node", "/x/cmd/dynamic-provider/index.js"]), undefined, "no address");
  });

  test("with an engine: Engine.Log calls under the URN, in order, progress ephemeral, warnings lasting; nothing on stderr", async () => {
    const calls: Call[] = [];
    const server = await MonitorServer.start({
      log: (severity, message, urn, ephemeral) => { calls.push({ severity, message, urn, ephemeral }); },
      registerResource: () => Promise.reject(new Error("unused")),
      registerResourceOutputs: () => Promise.resolve(),
      waitForShutdown: () => Promise.resolve(),
    });
    try {
      const r = await asPlugin(server.address, `
        const log = resourceLogger("heron", ${JSON.stringify(URN)});
        for (let i = 0; i < 50; i++) log("copying " + i);
        log("two\\nlines");
        log.warn("careful");
        resourceLogger("nourn")("no urn, so stderr");
        flushLog().then(() => process.exit(0));`);
      assert.equal(r.code, 0);
      assert.equal(r.stderr, "nourn: no urn, so stderr\n", "only the URN-less line on stderr");
      const progress = calls.filter((c) => c.message.startsWith("copying"));
      assert.deepEqual(progress.map((c) => c.message), Array.from({ length: 50 }, (_, i) => `copying ${i}`), "all, in order");
      assert.ok(calls.every((c) => c.urn === URN), "every call carries the URN");
      assert.ok(progress.every((c) => c.severity === 1 && c.ephemeral), "progress: info, ephemeral (the resource's status)");
      assert.deepEqual(calls.slice(50).map((c) => [c.message, c.severity, c.ephemeral]), [["two", 1, true], ["lines", 1, true], ["careful", 2, false]]);
    } finally { server.stop(); }
  });

  test("no engine at the address: the lines fall back to stderr at once, the process is not held up", async () => {
    const r = await asPlugin("127.0.0.1:1", `
      const log = resourceLogger("heron", ${JSON.stringify(URN)});
      log("first"); log("second"); log.warn("third");
      flushLog().then(() => process.exit(0));`);
    assert.equal(r.code, 0);
    assert.equal(r.stderr, "heron: first\nheron: second\nwarning: heron: third\n");
  });

  test("an engine that accepts and never answers: each call's deadline sends the lines to stderr; nothing waits for ever", async () => {
    const sockets: net.Socket[] = [];
    const hole = net.createServer((c) => { sockets.push(c); c.on("error", () => undefined); });
    await new Promise<void>((r) => hole.listen(0, "127.0.0.1", r));
    try {
      const r = await asPlugin(`127.0.0.1:${(hole.address() as net.AddressInfo).port}`, `
        const log = resourceLogger("heron", ${JSON.stringify(URN)});
        log("first"); log("second");
        flushLog().then(() => process.exit(0));`);
      assert.equal(r.code, 0);
      assert.equal(r.stderr, "heron: first\nheron: second\n");
      assert.ok(sockets.length >= 1, "it did try the engine");
    } finally {
      for (const c of sockets) c.destroy();
      await new Promise((r) => hole.close(r));
    }
  });
});

describe("the harness as the CLI: progress under each resource, ^C", { skip: canRunLab ? false : "the lab needs root on Linux" }, () => {
  let tmp = "";
  let lab: Lab;
  let hosts: LabHostInfo[] = [];
  let s: StackRef;
  let gen = 0;
  const onHost = async (host: string, cmd: string) => (await lab.exec(host, ["sh", "-c", cmd], { allowFailure: true })).stdout.trim();
  /** The stack with both machines; host1's closure changes with every call (incompressible, 48 MiB: a copy that takes a moment). */
  const writeBoth = () => {
    gen++;
    s = writeStack(path.join(tmp, "p"), "t", {
      heron: { targetHost: hosts[0].address, config: nixConfig(`heron-g${gen}`, { paths: 12, sizeKB: 4096, random: true }) },
      tiger: { targetHost: hosts[1].address, config: nixConfig("tiger") },
    }, { "pulumi-nixos:sshPrivateKeyFile": lab.privateKeyPath });
  };
  /** `up` through the harness in its own process group, as a shell runs a foreground job. */
  function spawnUp(logFile: string): { child: ChildProcess; exit: Promise<number>; output: () => string } {
    const child = spawn(process.execPath, [CLI, "up", "--cwd", s.cwd, "--stack", s.stack, "--state", s.state, "--engine-log", logFile], {
      stdio: ["ignore", "pipe", "pipe"], detached: true, env: { ...process.env, PULUMI_NIXOS_STALL_TIMEOUT: "300" },
    });
    let text = "";
    child.stdout!.on("data", (d) => { text += d; });
    child.stderr!.on("data", (d) => { text += d; });
    const exit = new Promise<number>((r) => child.once("exit", (c, sig) => r(c ?? (sig ? 128 : 0))));
    return { child, exit, output: () => text };
  }
  /** ^C at the terminal: SIGINT to the whole foreground process group. */
  const ctrlC = (child: ChildProcess) => process.kill(-child.pid!, "SIGINT");
  const descendants = (pid: number): number[] => {
    const out: number[] = [];
    for (const d of fs.readdirSync("/proc").filter((x) => /^\d+$/.test(x))) {
      try {
        const ppid = Number(fs.readFileSync(`/proc/${d}/stat`, "utf8").replace(/^.*\) /, "").split(" ")[1]);
        if (ppid === pid) out.push(Number(d), ...descendants(Number(d)));
      } catch { /* gone */ }
    }
    return out;
  };
  const alive = (pid: number) => { try { process.kill(pid, 0); return !fs.readFileSync(`/proc/${pid}/stat`, "utf8").includes(") Z "); } catch { return false; } };

  before(async () => {
    tmp = tempDir("engine-log-lab");
    lab = await Lab.up({ dir: path.join(tmp, "lab"), hosts: 2 });
    hosts = await lab.status();
  });
  after(async () => {
    await lab?.down();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  test("a deploy shows each host's progress under its resource: Engine.Log calls with the machine's URN", async () => {
    writeBoth();
    const logFile = path.join(tmp, "log1.jsonl");
    const up = await engine("up", s, ["--engine-log", logFile]);
    expectExit(up, 0, "up");
    const st = stateResources(s.state);
    const calls = readCalls(logFile);
    for (const name of ["heron", "tiger"]) {
      const urn = st[name].urn;
      assert.match(urn, /^urn:pulumi:t::pulumi-nixos::pulumi-nixos:index:Network\$pulumi-nodejs:dynamic\/nixos:Machine::/, "a child of the Network");
      const mine = calls.filter((c) => c.urn === urn);
      assert.ok(mine.some((c) => /^connecting to root@/.test(c.message)), `${name}: connecting`);
      assert.ok(mine.some((c) => /^copying \d+ paths/.test(c.message)), `${name}: copying`);
      assert.ok(mine.some((c) => new RegExp(`^switch done: generation ${st[name].outputs.generation}, /nix/store/`).test(c.message)), `${name}: switch done`);
      assert.ok(mine.every((c) => c.severity === 1 && c.ephemeral), `${name}: progress is the resource's status (info, ephemeral)`);
      // Rendered under the resource, as before.
      // (the display names the resource as its URN does: the Network's child network-<machine>)
      assert.match(up.stdout, new RegExp(`^(\\S+-)?${name}: switch done: generation`, "m"));
      // Not on the plugin's stderr (the CLI would list it among the stack's diagnostics).
      assert.doesNotMatch(up.stdout.split("\nDiagnostics:\n")[1] ?? "", new RegExp(`${name}: (connecting|copying|switch done)`), "progress is ephemeral: not among the closing diagnostics");
    }
    const machineUrns = new Set(["heron", "tiger"].map((n) => st[n].urn));
    const stray = calls.filter((c) => c.urn && !machineUrns.has(c.urn) && !c.urn.includes("pulumi:pulumi:Stack"));
    assert.deepEqual(stray, [], "every call names a resource of the stack");
  });

  test("a first ^C during a copy lets it finish and be recorded; the run ends 'update canceled'", async () => {
    const before = stateResources(s.state).heron.outputs.systemPath;
    writeBoth();
    const logFile = path.join(tmp, "log2.jsonl");
    const up = spawnUp(logFile);
    const pid = await stallImport(lab, "host1", 0);
    const kids = descendants(up.child.pid!);
    ctrlC(up.child);
    await sleep(2000);
    assert.match(up.output(), /\^C received; cancelling\. If you would like to terminate immediately, press \^C again\./);
    assert.ok(kids.length > 0 && kids.every(alive), "the plugin (its own process group) did not get the ^C");
    await resumeImport(lab, "host1", pid);
    const code = await up.exit;
    const out = up.output();
    assert.notEqual(code, 0, out);
    assert.match(out, /error: up canceled/);
    assert.doesNotMatch(out, /Connection dropped/);
    const heron = stateResources(s.state).heron;
    assert.notEqual(heron.outputs.systemPath, before, out);
    assert.equal(await onHost("host1", "readlink /run/current-system"), heron.outputs.systemPath, "recorded what the host runs");
    assert.ok(readCalls(logFile).some((c) => c.urn === heron.urn && /^switch done/.test(c.message)), "the copy went on to the switch");
  });

  test("a second ^C ends the plugin's process group at once; the next up converges", async () => {
    const before = stateResources(s.state).heron.outputs.systemPath;
    writeBoth();
    const up = spawnUp(path.join(tmp, "log3.jsonl"));
    const pid = await stallImport(lab, "host1", 0);
    const kids = descendants(up.child.pid!);
    try {
      ctrlC(up.child);
      await sleep(1000);
      ctrlC(up.child);
      const t0 = Date.now();
      const code = await up.exit;
      assert.ok(Date.now() - t0 < 15_000, "terminated promptly");
      assert.equal(code, 255, up.output());
      assert.match(up.output(), /\^C received; terminating/);
      await sleep(500);
      assert.deepEqual(kids.filter(alive), [], "no process of the run outlives it");
    } finally {
      await endImport(lab, "host1", pid);
    }
    assert.equal(stateResources(s.state).heron.outputs.systemPath, before, "nothing recorded for the interrupted copy");
    // The dead run's host lock: `unlock --force` as its message says, then `up` converges.
    const un = await run([process.execPath, BIN, "unlock", "heron", "--state", s.state, "--force"], { allowFailure: true, timeoutMs: 60_000 });
    const again = await engine("up", s);
    expectExit(again, 0, `next up (after unlock: ${un.stdout}${un.stderr})`);
    const heron = stateResources(s.state).heron;
    assert.notEqual(heron.outputs.systemPath, before);
    assert.equal(await onHost("host1", "readlink /run/current-system"), heron.outputs.systemPath);
    const noop = await engine("up", s);
    expectExit(noop, 0, "no-op");
    assert.match(noop.stdout, /\d+ unchanged/);
    assert.doesNotMatch(noop.stdout, /[~+] \d+ (updated|created)/);
  });
});
