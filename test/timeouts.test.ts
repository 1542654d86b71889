/**
 * Every network call has a deadline and a clear error, and memory stays bounded whatever the peer
 * does: a Vault and a channel server that accept connections and never answer (loopback "black
 * holes"), and a lab host whose `nix-store --import` stops reading mid-copy.
 */
import "./helpers/env";
import { describe, test, before, after } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "fs";
import * as net from "net";
import * as path from "path";
import { spawn } from "child_process";
import { Lab, LabHostInfo } from "../provider/lab/lab";
import { run, RunResult } from "../provider/util/run";
import { readVaultField } from "../provider/secrets/vault";
import { fetchPin } from "../provider/pins/pin";
import { canRunLab, ROOT, tempDir } from "./helpers/env";
import { StackRef } from "./helpers/engine";
import { writeStack, nixConfig, TestMachine } from "./helpers/stack";
import { buildSystem } from "./bench/closures";
import { endImport, stallImport } from "./helpers/stall";

const skip = canRunLab ? false : "the lab needs root on Linux";
const CLI = path.join(ROOT, "dist/test/engine/cli.js");

/** A TCP server on loopback that accepts connections and never answers. */
async function blackHole(): Promise<{ port: number; accepted: () => number; close(): Promise<void> }> {
  const sockets: net.Socket[] = [];
  const server = net.createServer((s) => { sockets.push(s); s.on("error", () => undefined); });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: (server.address() as net.AddressInfo).port,
    accepted: () => sockets.length,
    close: () => { for (const s of sockets) s.destroy(); return new Promise((r) => server.close(() => r())); },
  };
}

/** `up` through the engine harness with extra environment, bounded in time (a hang fails the test, not the suite). */
async function upWithin(s: StackRef, env: Record<string, string>, ms: number): Promise<{ r: RunResult; seconds: number }> {
  const t0 = Date.now();
  const r = await run([process.execPath, CLI, "up", "--cwd", s.cwd, "--stack", s.stack, "--state", s.state],
    { allowFailure: true, timeoutMs: ms, killGroup: true, env: { ...process.env, ...env } })
    .catch((e) => { throw new Error(`up did not end within ${ms / 1000} s (it hangs): ${e.message}`); });
  return { r: { ...r, stdout: `${r.stdout}\n${r.stderr}` }, seconds: (Date.now() - t0) / 1000 };
}

/** p, or a rejection naming the hang when it has not settled within ms. */
function within<T>(ms: number, p: Promise<T>): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<never>((_, reject) => { t = setTimeout(() => reject(new Error(`still waiting after ${ms / 1000} s (no deadline)`)), ms); })])
    .finally(() => clearTimeout(t));
}

/** Processes whose command line mentions `needle` (e.g. a black hole's port). */
function processesMentioning(needle: string): string[] {
  const found: string[] = [];
  for (const pid of fs.readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
    try {
      const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").replace(/\0/g, " ");
      if (cmd.includes(needle) && Number(pid) !== process.pid) found.push(`${pid}: ${cmd}`);
    } catch { /* gone */ }
  }
  return found;
}

describe("deadlines and bounded resources", { skip }, () => {
  let tmp = "";
  let lab: Lab;
  let hosts: LabHostInfo[] = [];
  let n = 0;
  const onHost = async (host: string, cmd: string) => (await lab.exec(host, ["sh", "-c", cmd], { allowFailure: true })).stdout.trim();
  const hostState = (host: string) => onHost(host, "readlink /run/current-system; ls -A /run/keys; nix-channel --list; cat /run/pulumi-nixos/lock 2>/dev/null; true");
  const stack = (machines: Record<string, TestMachine & Record<string, unknown>>, extra: Record<string, unknown> = {}) =>
    writeStack(path.join(tmp, `p${++n}`), "t", machines, { "pulumi-nixos:sshPrivateKeyFile": lab.privateKeyPath, ...extra });

  before(async () => {
    tmp = tempDir("timeouts");
    lab = await Lab.up({ dir: path.join(tmp, "lab"), hosts: 2 });
    hosts = await lab.status();
  });
  after(async () => {
    await lab?.down();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  test("Vault black hole: each read fails within its deadline with a clear error; nothing changes on the host", async (t) => {
    const hole = await blackHole();
    const saved = { t: process.env.PULUMI_NIXOS_VAULT_TIMEOUT, tok: process.env.VAULT_TOKEN };
    try {
      process.env.PULUMI_NIXOS_VAULT_TIMEOUT = "1.5";
      const t0 = Date.now();
      await assert.rejects(within(20_000, readVaultField({ path: "app", field: "token" }, { addr: `http://127.0.0.1:${hole.port}`, token: "s.x" })),
        new RegExp(`^Error: Vault at http://127\\.0\\.0\\.1:${hole.port} did not answer within 1\\.5 s \\(PULUMI_NIXOS_VAULT_TIMEOUT\\) \\(reading secret/data/app\\)$`));
      const took = (Date.now() - t0) / 1000;
      assert.ok(took >= 1.4 && took < 4, `failed after ${took} s`);
      assert.ok(hole.accepted() >= 1, "the request reached the black hole");
      // Through a whole program: a machine with a key from that Vault.
      const before = await hostState("host1");
      process.env.VAULT_TOKEN = "s.x";
      const s = stack({ vm: { targetHost: hosts[0].address, config: nixConfig("vm"), keys: { k: { vault: { path: "app", field: "token" } } } } },
        { "pulumi-nixos:vaultAddr": `http://127.0.0.1:${hole.port}` });
      // (The run's total time is the engine harness's: it takes ~100 s to end a failed program.)
      const { r, seconds } = await upWithin(s, { PULUMI_NIXOS_VAULT_TIMEOUT: "2" }, 300_000);
      assert.notEqual(r.code, 0, r.stdout);
      assert.match(r.stdout, new RegExp(`Vault at http://127\\.0\\.0\\.1:${hole.port} did not answer within 2 s \\(PULUMI_NIXOS_VAULT_TIMEOUT\\)`));
      t.diagnostic(`up failed after ${seconds} s`);
      assert.equal(await hostState("host1"), before, "nothing changed on the host");
    } finally {
      for (const [k, v] of [["PULUMI_NIXOS_VAULT_TIMEOUT", saved.t], ["VAULT_TOKEN", saved.tok]] as const) {
        if (v === undefined) delete process.env[k]; else process.env[k] = v;
      }
      await hole.close();
    }
  });

  test("channel black hole: the pin fetch is killed (its whole process group) at its deadline with a clear error; nothing changes on the host", async (t) => {
    const hole = await blackHole();
    const url = `http://127.0.0.1:${hole.port}/nixos`;
    const sha256 = "0".repeat(52);
    try {
      process.env.PULUMI_NIXOS_FETCH_TIMEOUT = "2";
      const t0 = Date.now();
      await assert.rejects(within(20_000, fetchPin("Machine x: pin", { url, sha256 })),
        new RegExp(`^Error: Machine x: pin: cannot fetch ${url.replace(/\./g, "\\.")}/nixexprs\\.tar\\.xz: no complete answer within 2 s \\(PULUMI_NIXOS_FETCH_TIMEOUT\\)$`));
      const took = (Date.now() - t0) / 1000;
      assert.ok(took >= 1.9 && took < 5, `failed after ${took} s`);
      assert.ok(hole.accepted() >= 1, "nix-prefetch-url reached the black hole");
      await new Promise((r) => setTimeout(r, 200));
      assert.deepEqual(processesMentioning(`127.0.0.1:${hole.port}`), [], "no fetch left running");
      // Through a whole program: a pinned machine (its nixpkgs is fetched at program time).
      const before = await hostState("host1");
      const s = stack({ pinned: { targetHost: hosts[0].address, config: nixConfig("pinned"), pin: "nixos" } },
        { "pulumi-nixos:pins": { nixos: { url, sha256 } } });
      const { r, seconds } = await upWithin(s, { PULUMI_NIXOS_FETCH_TIMEOUT: "2" }, 300_000);
      assert.notEqual(r.code, 0, r.stdout);
      assert.match(r.stdout, /pin: cannot fetch http:\/\/127\.0\.0\.1:\d+\/nixos\/nixexprs\.tar\.xz: no complete answer within 2 s \(PULUMI_NIXOS_FETCH_TIMEOUT\)/);
      t.diagnostic(`up failed after ${seconds} s`);
      assert.equal(await hostState("host1"), before, "nothing changed on the host");
      assert.deepEqual(processesMentioning(`127.0.0.1:${hole.port}`), [], "no fetch left running");
    } finally {
      delete process.env.PULUMI_NIXOS_FETCH_TIMEOUT;
      await hole.close();
    }
  });

  test("a host that stops reading mid-import: memory stays bounded, then a clear stall error; nothing activated, the lock released", async () => {
    const sys = await buildSystem(tmp, "stall", { paths: 30, sizeKB: 8192, seed: "stall", random: true });
    const h = hosts[1];
    const before = await hostState("host2");
    const inputs = {
      name: "stall", connection: { host: h.address, port: h.port, user: "root" }, systemPath: sys.outPath, drvPath: sys.drvPath,
      action: "switch", buildOn: "local", substituteOnTarget: false, compress: false, connectTimeout: 15, activationTimeout: 60,
    };
    const child = run([process.execPath, path.join(ROOT, "dist/test/bench/deploy-child.js"), JSON.stringify(inputs)], {
      allowFailure: true, timeoutMs: 180_000, killGroup: true,
      env: { ...process.env, PNX_BENCH_KEY: lab.privateKeyPath, PULUMI_NIXOS_STALL_TIMEOUT: "4" },
    });
    child.catch(() => undefined);
    const pid = await stallImport(lab, "host2", 300);
    const stoppedAt = Date.now();
    try {
      const r = await child.catch((e) => { throw new Error(`the deploy did not end (it hangs on the stopped host): ${e.message}`); });
      const afterStall = (Date.now() - stoppedAt) / 1000;
      const out = JSON.parse(r.stdout.trim().split("\n").pop()!);
      assert.equal(r.code, 2, r.stdout + r.stderr);
      assert.match(out.error, /^closure import on root@10\.231\.\d+\.2:22 stalled: the host took no data for 4 s \(PULUMI_NIXOS_STALL_TIMEOUT\)/);
      assert.ok(afterStall >= 4 && afterStall < 15, `failed ${afterStall} s after the stop`);
      assert.ok(out.peakRssMB <= 150, `peak RSS ${out.peakRssMB} MB`);
    } finally {
      await endImport(lab, "host2", pid);
    }
    assert.equal(await hostState("host2"), before, "nothing activated, no key, no lock left");
  });
});

describe("logs to a stderr nobody reads", () => {
  /** A process logging 200 MB through resourceLogger; prints its stderr backlog and peak RSS. */
  function logger(stderr: "closed" | "stalled"): Promise<{ code: number | null; out: string; err: string }> {
    const script = `
      const { resourceLogger } = require(${JSON.stringify(path.join(ROOT, "dist/provider/util/log.js"))});
      const log = resourceLogger("heron"); const line = "y".repeat(1000);
      let i = 0;
      const t = setInterval(() => {
        for (let k = 0; k < 2000; k++) log(line);
        if (++i < 100) return;
        clearInterval(t);
        const hwm = /VmHWM:\\s+(\\d+)/.exec(require("fs").readFileSync("/proc/self/status", "utf8"))[1];
        require("fs").writeSync(1, JSON.stringify({ backlog: process.stderr.writableLength, peakRssMB: hwm / 1024 }) + "\\n");
        if (${stderr === "stalled"}) process.stderr.once("drain", () => setTimeout(() => process.exit(0), 100)); else process.exit(0);
      }, 2);`;
    return new Promise((resolve) => {
      const c = spawn(process.execPath, ["-e", script], { stdio: ["ignore", "pipe", "pipe"] });
      let out = "", err = "";
      c.stdout!.on("data", (d: Buffer) => {
        out += d.toString();
        if (stderr === "stalled" && out.includes("\n")) c.stderr!.on("data", (e: Buffer) => { err = (err + e.toString()).slice(-4096); }).resume(); // reads again
      });
      if (stderr === "closed") c.stderr!.destroy(); else c.stderr!.pause();
      const kill = setTimeout(() => c.kill("SIGKILL"), 60_000);
      c.on("close", (code) => { clearTimeout(kill); resolve({ code, out, err }); });
    });
  }

  test("a stalled reader: at most ~1 MiB waits, the rest is dropped and counted once it reads again", async () => {
    const r = await logger("stalled");
    assert.equal(r.code, 0, r.err);
    const o = JSON.parse(r.out);
    assert.ok(o.backlog <= (1 << 20) + 4096, `${o.backlog} bytes of log lines queued`);
    assert.match(r.err, /\(\d+ log lines dropped: stderr was not read\)/);
  });

  test("a closed stderr (the engine is gone): logging stops, the process goes on", async () => {
    const r = await logger("closed");
    assert.equal(r.code, 0, "the provider did not die of EPIPE");
    assert.ok(JSON.parse(r.out).backlog <= (1 << 20) + 4096);
  });
});
