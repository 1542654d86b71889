/**
 * What a new user trips over (issue 19): each point asserted on what the user sees (the lines of
 * output, the exit code) and on what the hosts saw.
 */
import "./helpers/env";
import { describe, test, before, after } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "fs";
import * as path from "path";
import { Lab, LabHostInfo } from "../provider/lab/lab";
import { canRunLab, tempDir, ROOT } from "./helpers/env";
import { run } from "../provider/util/run";
import { formatTable } from "../provider/cli/table";
import { startChannelServer } from "./channels/server";
import YAML from "yaml";
import { engine, expectExit, stateResources } from "./helpers/engine";
import { nixConfig, writeStack } from "./helpers/stack";
import { linkNodeModules, writeUserConfig } from "./helpers/program-dir";

const skip = canRunLab ? false : "the lab needs root on Linux";

/** Lines of a run's output (stdout and stderr), without colour. */
const lines = (r: { stdout: string; stderr: string }) => (r.stdout + "\n" + r.stderr).replace(/\x1b\[[0-9;]*m/g, "").split("\n");

describe("issue 19: what a new user trips over", { skip }, () => {
  let tmp = "";
  let lab: Lab;
  let hosts: LabHostInfo[] = [];
  let n = 0;
  const onHost = async (name: string, cmd: string) => (await lab.exec(name, ["sh", "-c", cmd], { allowFailure: true })).stdout.trim();

  before(async () => {
    tmp = tempDir("friction");
    lab = await Lab.up({ dir: path.join(tmp, "lab"), hosts: 2 });
    hosts = await lab.status();
  });
  after(async () => {
    await lab?.down();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  /** A stack of two machines on the lab: `a` (host1) and `b` (host2, with a pre-activation key). */
  function twoMachines(aConfig: string, extra: Record<string, unknown> = {}) {
    const dir = path.join(tmp, `s${++n}`);
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, "k.txt"), "key of b\n", { mode: 0o600 });
    const s = writeStack(dir, "t", {
      a: { targetHost: hosts[0].address, config: aConfig },
      b: { targetHost: hosts[1].address, config: nixConfig("b"), keys: { k: { file: path.join(dir, "k.txt") } } } as any,
    }, { "pulumi-nixos:sshPrivateKeyFile": lab.privateKeyPath, ...extra });
    return { dir, s };
  }

  test("2: a fleet that fails to evaluate touches no host, keys included", async () => {
    // a's evaluation takes a few seconds before it fails (as a real nixpkgs evaluation does): time
    // enough for b's key to go up if keys did not wait for the fleet's evaluation.
    const slowFailure = `{ ... }: builtins.seq (builtins.foldl' (x: y: x + y) 0 (builtins.genList (i: i) 6000000)) (throw "a is broken")`;
    const { dir, s } = twoMachines(slowFailure);
    const up = await engine("up", s);
    assert.notEqual(up.code, 0, "the run fails");
    assert.equal(await onHost("host2", "cat /run/keys/k 2>/dev/null || echo missing"), "missing", "b's pre-activation key was not uploaded");
    assert.equal(await onHost("host2", "ls /run/pulumi-nixos 2>/dev/null | wc -l"), "0", "no lock was ever taken on b's host");
    assert.equal(await onHost("host1", "ls /run/pulumi-nixos 2>/dev/null | wc -l"), "0", "nor on a's");
    assert.deepEqual(Object.keys(stateResources(s.state)).filter((k) => k !== "network"), [], "nothing but the component was recorded");
    // The same stack with a's configuration fixed uploads the key: the failure above held it back.
    fs.writeFileSync(path.join(dir, "a.nix"), nixConfig("a"));
    expectExit(await engine("up", s), 0, "up after the fix");
    assert.equal(await onHost("host2", "cat /run/keys/k"), "key of b");
  });

  test("4: an evaluation error shows machine, file and Nix's message first, once, without a stack trace", async () => {
    const { dir, s } = twoMachines(`{ ... }: { networking.hostName = "a" }`);
    const r = await engine("preview", s);
    assert.equal(r.code, 1);
    const out = lines(r);
    const first = out.findIndex((l) => l.startsWith("error: "));
    assert.equal(out[first], `error: Machine a: evaluation of ${path.join(dir, "a.nix")} failed:`);
    assert.match(out[first + 1], /^error: syntax error, unexpected '}', expecting ';'/, "Nix's own message follows");
    assert.ok(out.includes("nothing was deployed: the fleet's evaluation failed (not deployed either: b)"));
    // Once as it happens, and once more in the closing "Diagnostics:", as the CLI lists lasting messages.
    const diag = out.indexOf("Diagnostics:");
    const during = diag >= 0 ? out.slice(0, diag) : out;
    assert.equal(during.filter((l) => l.includes("syntax error")).length, 1, "reported once as it happens");
    assert.ok(diag < 0 || out.slice(diag).filter((l) => l.includes("syntax error")).length === 1, "and once in Diagnostics");
    const text = out.join("\n");
    assert.doesNotMatch(text, /error serializing property/);
    assert.doesNotMatch(text, /unhandled exception/);
    assert.doesNotMatch(text, /^\s+at .*\.(ts|js):\d+/m, "no stack trace");
  });

  /** A configuration with `paths` filler derivations no store has built yet. */
  const fresh = (host: string, paths: number, extra = "") => `{ ... }: {
  networking.hostName = "${host}";
  test.closure = { paths = ${paths}; sizeKB = 1; seed = "${host}-${process.pid}-${Date.now()}"; };
  ${extra}
}
`;

  test("4: nix build chatter is one progress line per machine; the full log on failure or with PULUMI_NIXOS_VERBOSE=1", async () => {
    const dir = path.join(tmp, `s${++n}`);
    const s = writeStack(dir, "t", { a: { targetHost: hosts[0].address, config: fresh("a", 30) } }, { "pulumi-nixos:sshPrivateKeyFile": lab.privateKeyPath });
    const up = await engine("up", s);
    expectExit(up, 0, "up");
    const out = lines(up);
    assert.deepEqual(out.filter((l) => /^(?:network-)?a: building '/.test(l)), [], "no line per derivation");
    const start = out.filter((l) => /^(?:network-)?a: building \d+ derivations … /.test(l));
    assert.ok(start.length >= 1 && start.length <= 3, `one progress line (a few on a slow build): ${start.join(" | ")}`);
    const [, total] = /^(?:network-)?a: building (\d+) derivations … 0\/(\d+)$/.exec(start[0]) ?? [];
    assert.ok(Number(total) >= 31, `the 30 fillers and the system: ${start[0]}`);
    assert.equal(out.filter((l) => new RegExp(`^(?:network-)?a: built ${total} derivations \\(${total}/${total}\\) in [0-9.]+ s$`).test(l)).length, 1, out.join("\n"));

    // PULUMI_NIXOS_VERBOSE=1: Nix's lines as they come.
    fs.writeFileSync(path.join(dir, "a.nix"), fresh("a", 5));
    const verbose = lines(await engine("up", s, [], { ...process.env, PULUMI_NIXOS_VERBOSE: "1" }));
    assert.ok(verbose.filter((l) => /^(?:network-)?a: building '\/nix\/store\/[^']+\.drv'/.test(l)).length >= 6, verbose.join("\n"));
    assert.ok(verbose.some((l) => /^(?:network-)?a: these \d+ derivations will be built:$/.test(l)));

    // A failing build: the whole log, with the builder's own output.
    fs.writeFileSync(path.join(dir, "a.nix"), fresh("a", 3, `environment.systemPackages = [ (derivation { name = "broken"; system = builtins.currentSystem; builder = "/bin/sh"; args = [ "-c" "echo builder-says-no >&2; exit 1" ]; }) ];`));
    const failed = await engine("up", s);
    assert.notEqual(failed.code, 0);
    const fout = lines(failed);
    assert.ok(fout.some((l) => /^(?:network-)?a: build log \(\d+\/\d+ derivations started\):$/.test(l)), fout.join("\n"));
    assert.ok(fout.some((l) => /^(?:network-)?a:   builder-says-no$/.test(l)), `the builder's output, in the log:\n${fout.join("\n")}`);
    assert.ok(fout.some((l) => /^(?:network-)?a:   building '\/nix\/store\/[^']+-broken\.drv'/.test(l)));
  });

  test("4: a host key that does not match the pinned hostPublicKey says so, with both fingerprints", async () => {
    const fp = async (key: string) => {
      const f = path.join(tmp, `key${++n}.pub`);
      fs.writeFileSync(f, key + "\n");
      return (await run(["ssh-keygen", "-lf", f])).stdout.split(" ")[1];
    };
    const dir = path.join(tmp, `s${++n}`);
    const s = writeStack(dir, "t", { a: { targetHost: hosts[0].address, config: nixConfig("pinned"), hostPublicKey: hosts[1].hostPublicKey } }, { "pulumi-nixos:sshPrivateKeyFile": lab.privateKeyPath });
    const r = await engine("up", s);
    assert.equal(r.code, 1);
    const line = lines(r).find((l) => l.includes("host key of"))!;
    assert.ok(line.includes(`host key of root@${hosts[0].address}:22 does not match the pinned connection.hostPublicKey: ` +
      `expected ${await fp(hosts[1].hostPublicKey)} (ssh-ed25519), host presented ${await fp(hosts[0].hostPublicKey)} (ssh-ed25519).`), line);
    assert.doesNotMatch(line, /changed/);
  });

  test("4: a failed delete prints no stack trace; counts say 1 path, not 1 paths", async () => {
    const dir = path.join(tmp, `s${++n}`);
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, "k.txt"), "k\n");
    const spec = (version: string) => ({ b: { targetHost: hosts[1].address, config: nixConfig("b", { activation: `system.nixos.version = "${version}";` }), keys: { k: { file: path.join(dir, "k.txt") } } } as any });
    const s = writeStack(dir, "t", spec("24.05.one"), { "pulumi-nixos:sshPrivateKeyFile": lab.privateKeyPath });
    expectExit(await engine("up", s), 0, "up");
    writeStack(dir, "t", spec("24.05.two"), { "pulumi-nixos:sshPrivateKeyFile": lab.privateKeyPath });
    const again = lines(await engine("up", s));
    assert.ok(again.some((l) => /^(?:network-)?b: copying 1 path, /.test(l)), again.join("\n"));
    assert.ok(again.some((l) => /^(?:network-)?b: copied 1 path, /.test(l)));
    assert.ok(!again.some((l) => /\b1 paths\b/.test(l)));

    await lab.cut("host2");
    try {
      const d = await engine("destroy", s);
      assert.equal(d.code, 1);
      const out = lines(d);
      assert.ok(out.some((l) => /^error: network-b-k \(urn:[^)]+\): deleting failed: cannot connect to root@/.test(l)), out.join("\n"));
      assert.ok(out.some((l) => l.endsWith(": nothing was removed; the resource stays in the state and the next destroy or up tries again")), out.join("\n"));
      assert.ok(!out.some((l) => /^\s+at .*(\.ts|\.js):\d+/.test(l)), `no stack trace:\n${out.join("\n")}`);
    } finally {
      await lab.restore("host2");
    }
    expectExit(await engine("destroy", s), 0, "destroy once the host is back");
  });

  test("4: one table style: boxed on a terminal, plain aligned columns when piped (lab status, info)", async () => {
    const r = await run([process.execPath, path.join(ROOT, "bin/pulumi-nixos.js"), "lab", "status", "--dir", path.join(tmp, "lab")]);
    const out = r.stdout.trimEnd().split("\n");
    assert.match(out[0], /^Name +Address +Port +State +Init +Generation +Current system$/);
    assert.match(out[1], new RegExp(`^host1 +${hosts[0].address.replace(/\./g, "\\.")} +22 +up +systemd +\\d+ +/nix/store/`));
    assert.ok(!/[|│┌]/.test(r.stdout), "no box or pipe characters when piped");
    const tty = formatTable(["Name", "Host"], [["heron", "10.0.0.1"]], true).replace(/\x1b\[[0-9;]*m/g, "");
    assert.match(tty, /^┌─+┬─+┐\n│ Name +│ Host +│\n├/);
    assert.equal(formatTable(["Name", "Host"], [["heron", "10.0.0.1"], ["a", "b"]], false), "Name   Host\nheron  10.0.0.1\na      b");
  });

  test("3: pin add/update edit the form the stack uses (network, networkFile, short form); the stack then evaluates", async () => {
    const ch = await startChannelServer(path.join(tmp, "channels"), "127.0.0.1", ["24.05.1", "24.11.2"]);
    try {
      const pinCli = (dir: string, ...args: string[]) => run([process.execPath, path.join(ROOT, "bin/pulumi-nixos.js"), "pin", ...args, "--stack", "t", "--cwd", dir]);
      const project = (dir: string, stackYaml: Record<string, unknown>) => {
        fs.mkdirSync(dir, { recursive: true });
        fs.writeFileSync(path.join(dir, "Pulumi.yaml"), `name: pulumi-nixos\nruntime:\n  name: nodejs\n  options:\n    typescript: true\nmain: ${path.join(ROOT, "stacks", "index.ts")}\n`);
        fs.writeFileSync(path.join(dir, "a.nix"), nixConfig("a"));
        fs.writeFileSync(path.join(dir, "Pulumi.t.yaml"), YAML.stringify({ config: { "pulumi-nixos:sshPrivateKeyFile": lab.privateKeyPath, ...stackYaml } }));
        return { cwd: dir, stack: "t", state: path.join(dir, "t.state.json") };
      };
      const machine = { targetHost: hosts[0].address, configuration: "./a.nix", pin: "nixos" };
      const v1 = ch.channels["24.05.1"], v2 = ch.channels["24.11.2"];
      const stackDoc = (dir: string) => YAML.parse(fs.readFileSync(path.join(dir, "Pulumi.t.yaml"), "utf8")).config;

      // pulumi-nixos:network
      const net = project(path.join(tmp, "pin-network"), { "pulumi-nixos:network": { machines: { a: machine } } });
      const add = await pinCli(net.cwd, "add", "nixos", v1.url);
      assert.equal(add.stdout.trim(), `pin nixos: ${v1.url} sha256 ${v1.sha256} → pulumi-nixos:network.pins in Pulumi.t.yaml`);
      assert.deepEqual(stackDoc(net.cwd)["pulumi-nixos:network"].pins, { nixos: { url: v1.url, sha256: v1.sha256 } });
      assert.equal(stackDoc(net.cwd)["pulumi-nixos:pins"], undefined);
      const pv = await engine("preview", net);
      expectExit(pv, 0, "preview of the network stack after pin add");
      assert.doesNotMatch(pv.stdout, /unknown pin/);
      const upd = await pinCli(net.cwd, "update", "nixos", "--url", v2.url);
      assert.equal(upd.stdout.trim(), `pin nixos: ${v2.url} sha256 ${v1.sha256} → ${v2.sha256}`);
      assert.deepEqual(stackDoc(net.cwd)["pulumi-nixos:network"].pins.nixos, { url: v2.url, sha256: v2.sha256 });

      // pulumi-nixos:networkFile (relative to the project root)
      const nfDir = path.join(tmp, "pin-file");
      fs.mkdirSync(path.join(nfDir, "net"), { recursive: true });
      fs.writeFileSync(path.join(nfDir, "net", "network.yaml"), "# the network\n" + YAML.stringify({ machines: { a: { ...machine, configuration: "../a.nix" } } }));
      const nf = project(nfDir, { "pulumi-nixos:networkFile": "net/network.yaml" });
      const addF = await pinCli(nf.cwd, "add", "nixos", v1.url);
      assert.match(addF.stdout, / → pins in .*net\/network\.yaml$/m);
      const netYaml = fs.readFileSync(path.join(nfDir, "net", "network.yaml"), "utf8");
      assert.ok(netYaml.startsWith("# the network\n"), "comments kept");
      assert.deepEqual(YAML.parse(netYaml).pins, { nixos: { url: v1.url, sha256: v1.sha256 } });
      assert.equal(stackDoc(nf.cwd)["pulumi-nixos:pins"], undefined);
      expectExit(await engine("preview", nf), 0, "preview of the networkFile stack after pin add");

      // the short form: pulumi-nixos:machines + pulumi-nixos:pins
      const short = project(path.join(tmp, "pin-short"), { "pulumi-nixos:machines": { a: machine } });
      const addS = await pinCli(short.cwd, "add", "nixos", v1.url);
      assert.equal(addS.stdout.trim(), `pin nixos: ${v1.url} sha256 ${v1.sha256} → pulumi-nixos:pins in Pulumi.t.yaml`);
      assert.deepEqual(stackDoc(short.cwd)["pulumi-nixos:pins"], { nixos: { url: v1.url, sha256: v1.sha256 } });
      expectExit(await engine("preview", short), 0, "preview of the short-form stack after pin add");
    } finally {
      await ch.close();
    }
  });

  test("6: CLI: no-match says what was asked for; every fleet command's --help has an example; exit 0 ok, 1 host failed, 2 usage", async () => {
    const cli = (...args: string[]) => run([process.execPath, path.join(ROOT, "bin/pulumi-nixos.js"), ...args], { allowFailure: true, timeoutMs: 120_000 });
    const dir = path.join(tmp, `s${++n}`);
    const s = writeStack(dir, "t", { a: { targetHost: hosts[0].address, config: nixConfig("a"), tags: ["web"] } as any }, { "pulumi-nixos:sshPrivateKeyFile": lab.privateKeyPath });
    expectExit(await engine("up", s), 0, "up");

    let r = await cli("info", "--state", s.state, "--tag", "db");
    assert.equal(r.code, 2);
    assert.equal(r.stderr.trim(), "pulumi-nixos: no machine matches --tag db (machines: a [web])");
    r = await cli("check", "--state", s.state, "--include", "a", "--exclude", "a");
    assert.equal(r.code, 2);
    assert.equal(r.stderr.trim(), "pulumi-nixos: no machine matches --include a --exclude a (machines: a [web])");
    r = await cli("targets", "--stack", "t", "--cwd", dir, "--tag", "db");
    assert.equal(r.code, 2);
    assert.equal(r.stderr.trim(), "pulumi-nixos: no machine matches --tag db (machines: a [web])");
    r = await cli("info", "--state", s.state, "--include", "zz");
    assert.equal(r.code, 2);
    assert.match(r.stderr, /no machine named zz in the stack \(machines: a\)/);
    r = await cli("info", "--state", s.state, "--bogus");
    assert.equal(r.code, 2, "commander's usage errors too");
    assert.match(r.stderr, /unknown option '--bogus'/);
    assert.equal((await cli("info", "--state", s.state)).code, 0);
    await lab.cut("host1");
    try {
      r = await cli("info", "--state", s.state);
      assert.equal(r.code, 1, "a host failed");
    } finally {
      await lab.restore("host1");
    }

    for (const cmd of ["info", "check", "list-generations", "diff", "dry-activate", "rollback", "reboot", "send-keys", "ssh", "targets", "unlock", "pin add", "pin update"]) {
      const h = await cli(...cmd.split(" "), "--help");
      assert.equal(h.code, 0, cmd);
      assert.match(h.stdout, new RegExp(`\\nExamples:\\n  \\$ .*pulumi-nixos ${cmd} `), `${cmd} --help has an example`);
      assert.match(h.stdout, /Exit codes: 0 ok, 1 some host failed, 2 usage error\./, cmd);
    }
  });

  test("5: npm run example leaves no temp dir; no stray stacks; lab up --stack-file writes the lab stack for the lab it made", async () => {
    // The example (flake: its own 2-host lab) with TMPDIR pointed at an empty directory.
    const tmpdir = path.join(tmp, "tmpdir");
    fs.mkdirSync(tmpdir);
    const ex = await run([process.execPath, path.join(ROOT, "dist/test/examples/run.js"), "flake"], { allowFailure: true, timeoutMs: 600_000, env: { ...process.env, TMPDIR: tmpdir } });
    assert.equal(ex.code, 0, ex.stdout + ex.stderr);
    assert.deepEqual(fs.readdirSync(tmpdir), [], "no pnx-example-* (program, sealed state, lab) left behind");

    const tracked = (await run(["git", "-C", ROOT, "ls-files", "stacks"])).stdout.trim().split("\n").sort();
    assert.deepEqual(tracked, ["stacks/Pulumi.lab.yaml", "stacks/index.ts"], "the lab stack and the program only");

    // A checkout-like project whose stacks/Pulumi.lab.yaml is the repo's; a lab of 2 hosts on another dir.
    const proj = path.join(tmp, "proj");
    fs.mkdirSync(path.join(proj, "stacks"), { recursive: true });
    fs.copyFileSync(path.join(ROOT, "Pulumi.yaml"), path.join(proj, "Pulumi.yaml"));
    for (const p of ["package.json", "dist", "provider", "node_modules", "test"]) fs.symlinkSync(path.join(ROOT, p), path.join(proj, p));
    fs.symlinkSync(path.join(ROOT, "stacks/index.ts"), path.join(proj, "stacks/index.ts"));
    const stackFile = path.join(proj, "stacks/Pulumi.lab.yaml");
    fs.copyFileSync(path.join(ROOT, "stacks/Pulumi.lab.yaml"), stackFile);
    const labDir = path.join(tmp, "lab-for-stack");
    const up = await run([process.execPath, path.join(ROOT, "bin/pulumi-nixos.js"), "lab", "up", "--hosts", "2", "--dir", labDir, "--stack-file", stackFile], { allowFailure: true, timeoutMs: 300_000 });
    try {
      assert.equal(up.code, 0, up.stderr);
      assert.match(up.stdout, new RegExp(`^stack file: ${stackFile.replace(/[.]/g, "\\.")} \\(machines host1, host2\\)$`, "m"));
      const other = await Lab.open(labDir).status();
      const text = fs.readFileSync(stackFile, "utf8");
      assert.match(text, /^# The lab stack:/, "comments kept");
      const cfg = YAML.parse(text).config;
      assert.equal(cfg["pulumi-nixos:sshPrivateKeyFile"], path.join(labDir, "id_ed25519"));
      assert.deepEqual(Object.keys(cfg["pulumi-nixos:network"].machines), ["host1", "host2"]);
      for (const h of other) {
        const m = cfg["pulumi-nixos:network"].machines[h.name];
        assert.equal(m.targetHost, h.address);
        assert.equal(m.hostPublicKey, h.hostPublicKey);
        assert.equal(m.configuration, `test/fixtures/lab-network/${h.name}.nix`, "kept, from the project root");
      }
      const st = { cwd: proj, stack: "lab", state: path.join(tmp, "proj-lab.state.json") };
      const pv = await engine("preview", st);
      expectExit(pv, 0, "preview of the written lab stack");
      assert.match(pv.stdout, / \+ +pulumi-nodejs:dynamic\/nixos:Machine lab-host2 create/);
      expectExit(await engine("up", st), 0, "up of the written lab stack");
    } finally {
      await run([process.execPath, path.join(ROOT, "bin/pulumi-nixos.js"), "lab", "down", "--dir", labDir], { allowFailure: true });
    }
  });

  test("1: wrong types are refused before anything runs, in the description and in every resource's args, naming the field", async () => {
    // The description: the two cases and their neighbours, through the stack program.
    const dir = path.join(tmp, `s${++n}`);
    const s = writeStack(dir, "t", {}, {
      "pulumi-nixos:machines": undefined,
      "pulumi-nixos:network": {
        enableRollback: "no",
        machines: {
          a: { targetHost: hosts[0].address, configuration: "./a.nix", compress: "maybe", targetPort: "22", activationTimeout: -5, tagz: ["web"],
            keys: { k: { file: "/etc/hostname", permissions: "rw-", uploadAt: "later" } } },
        },
      },
      "pulumi-nixos:sshPrivateKeyFile": lab.privateKeyPath,
    });
    fs.writeFileSync(path.join(dir, "a.nix"), nixConfig("a"));
    const r = await engine("up", s);
    assert.equal(r.code, 1);
    const out = lines(r);
    const at = out.indexOf("error: invalid network description:");
    assert.ok(at >= 0, out.join("\n"));
    const block: string[] = [];
    for (let i = at + 1; out[i]?.startsWith("  "); i++) block.push(out[i].trim());
    assert.deepEqual(block.sort(), [
      'network.enableRollback: true or false (got "no")',
      'network.machines.a.activationTimeout: a number of seconds (> 0) (got -5)',
      'network.machines.a.compress: true, false or "auto" (got "maybe")',
      'network.machines.a.keys.k.permissions: 3-4 octal digits, e.g. "0600" (got "rw-")',
      'network.machines.a.keys.k.uploadAt: one of "pre-activation", "post-activation" (got "later")',
      "network.machines.a.tagz: unknown field (did you mean 'tags'?)",
      'network.machines.a.targetPort: a port number (1-65535) (got "22")',
    ].sort());
    assert.doesNotMatch(r.stdout, /^\s+at .*\.(ts|js):\d+/m, "no stack trace");
    assert.deepEqual(Object.keys(stateResources(s.state)).filter((k) => k !== "network"), [], "nothing but the component registered");
    assert.equal(await onHost("host1", "ls /run/pulumi-nixos 2>/dev/null | wc -l"), "0", "no host touched");

    // Resource args in a TypeScript program, values from stack config (as a program passes them).
    const prog = path.join(tmp, `prog${++n}`);
    fs.mkdirSync(prog, { recursive: true });
    fs.writeFileSync(path.join(prog, "Pulumi.yaml"), "name: args\nruntime:\n  name: nodejs\n  options:\n    typescript: true\nmain: index.ts\n");
    fs.writeFileSync(path.join(prog, "index.ts"), `import * as pulumi from "@pulumi/pulumi";
import { ChannelPin, DeploymentKey, Machine } from "pulumi-nixos";
const c = new pulumi.Config();
const kind = c.require("kind");
const args = c.requireObject<any>("args");
if (kind === "Machine") new Machine("box", args);
if (kind === "DeploymentKey") new DeploymentKey("token", args);
if (kind === "ChannelPin") new ChannelPin("box/channel", args);
`);
    linkNodeModules(prog, ROOT);
    const conn = { host: hosts[0].address, privateKey: "not used" };
    const cases: [string, unknown, string[]][] = [
      ["Machine", { connection: { ...conn, port: "22" }, configuration: "./box.nix", compress: "maybe", enableRollback: "no", tags: ["web", 3], buildOn: "remote" }, [
        'connection.port: a port number (1-65535) (got "22")', 'tags.1: a string (got 3)', 'enableRollback: true or false (got "no")',
        'buildOn: one of "local", "target" (got "remote")', 'compress: true, false or "auto" (got "maybe")']],
      ["DeploymentKey", { connection: { ...conn, hostPublicKey: "nope", proxy: { host: "bastion", prot: 22 } }, text: 42, permissions: ["0600"] }, [
        "connection.hostPublicKey: a public key as 'ssh-ed25519 AAAA…' (got \"nope\")", "connection.proxy.prot: unknown field (did you mean 'port'?)",
        "text: a string (got 42)", 'permissions: a mode as a string of 3-4 octal digits, e.g. "0600" (got ["0600"])']],
      ["ChannelPin", { connection: conn, url: "http://x/nixexprs.tar.xz", channel: 7 }, ["sha256: required (the sha256 of the unpacked tree)", "channel: a channel name (got 7)"]],
    ];
    for (const [kind, args, want] of cases) {
      const name = { Machine: "box", DeploymentKey: "token", ChannelPin: "box/channel" }[kind];
      writeUserConfig(prog, "args", "t", { kind, args });
      const pr = await engine("preview", { cwd: prog, stack: "t", state: path.join(prog, "state.json") });
      assert.equal(pr.code, 1, kind);
      const o = lines(pr);
      const i = o.indexOf(`error: invalid arguments of ${kind} ${name}:`);
      assert.ok(i >= 0, o.join("\n"));
      assert.deepEqual(o.slice(i + 1, i + 1 + want.length).map((l) => l.trim()).sort(), [...want].sort(), kind);
      assert.doesNotMatch(pr.stdout, /^\s+at .*\.(ts|js):\d+/m, "no stack trace");
      assert.doesNotMatch(pr.stdout, / \+ +pulumi-nodejs:dynamic/, "nothing registered");
    }
  });
});
