/**
 * Pulumi values in NixOS configurations (issue 33), on lab hosts through the engine harness and
 * the test program test/programs/special-args: b's configuration takes a's systemPath and a
 * DeploymentKey's path as module arguments and /etc holds them; a change of a redeploys a and b
 * (its argument changed), not c; a preview before a exists plans b "known after"; a nested
 * secret and a reserved name are refused before any host is touched; waitForSsh deploys a host
 * whose sshd starts only after the deploy began.
 */
import "./helpers/env";
import { describe, test, before, after } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "fs";
import * as path from "path";
import YAML from "yaml";
import { Lab, LabHostInfo } from "../provider/lab/lab";
import { canRunLab, tempDir, ROOT, STANDIN_NIXPKGS } from "./helpers/env";
import { engine, expectExit, stateResources, StackRef } from "./helpers/engine";
import { writeStack } from "./helpers/stack";
import { evaluateSystem } from "../provider/nix/evaluate";
import { run } from "../provider/util/run";
import { spawnSync } from "child_process";

const skip = canRunLab ? false : "the lab needs root on Linux";
const PROGRAM = path.join(ROOT, "test/programs/special-args/index.ts");

/** A configuration body: hostName, /etc/role, a small closure, and `etc` lines from module arguments. */
function config(host: string, opts: { args?: string[]; etc?: Record<string, string>; role?: string } = {}): string {
  const head = opts.args?.length ? `{ ${opts.args.join(", ")}, ... }:` : "{ ... }:";
  const etc = Object.entries(opts.etc ?? {}).map(([f, v]) => `  environment.etc."${f}".text = ${v};`).join("\n");
  return `${head} {
  networking.hostName = "${host}";
  environment.etc."role".text = "${opts.role ?? host}\\n";
  test.closure = { paths = 2; sizeKB = 1; seed = "${host}"; random = false; };
${etc}
}
`;
}

/** Builds an evaluated system and reads one of its /etc files. */
async function builtEtc(drvPath: string, file: string): Promise<string> {
  const out = (await run(["nix-store", "--realise", drvPath], { timeoutMs: 300_000 })).stdout.trim().split("\n").pop()!;
  return fs.readFileSync(path.join(out, "etc", file), "utf8");
}

describe("specialArgs reach flakes (extendModules) and NixOps networks (beside set-args)", () => {
  let tmp = "";
  before(() => { tmp = tempDir("special-args-eval"); });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));
  const module = (host: string) => `{ greeting, ... }: { networking.hostName = "${host}"; environment.etc.greeting.text = greeting; test.closure = { paths = 1; sizeKB = 1; seed = "${host}"; random = false; }; }`;

  test("a flake's system built with lib.nixosSystem-style eval-config gets them through extendModules", async () => {
    // A flake of its own (outside git: path:), with the stand-in nixpkgs inside its tree.
    const dir = path.join(tmp, "flake");
    fs.mkdirSync(dir);
    fs.cpSync(STANDIN_NIXPKGS, path.join(dir, "nixpkgs"), { recursive: true });
    fs.writeFileSync(path.join(dir, "m.nix"), module("fm"));
    fs.writeFileSync(path.join(dir, "flake.nix"), `{ outputs = { self }: { nixosConfigurations.fm = import ./nixpkgs/nixos/lib/eval-config.nix { system = "x86_64-linux"; modules = [ ./m.nix ]; }; }; }`);
    const e = await evaluateSystem("fm", { flake: `${dir}#fm`, specialArgs: { greeting: "hello flake" } });
    assert.equal(await builtEtc(e.drvPath, "greeting"), "hello flake");
    const other = await evaluateSystem("fm", { flake: `${dir}#fm`, specialArgs: { greeting: "another" } });
    assert.notEqual(other.outPath, e.outPath, "another value, another system");
  });

  test("a NixOps network's machine gets them beside the network's arguments", async () => {
    const f = path.join(tmp, "network.nix");
    fs.writeFileSync(f, `{ flavour ? "plain" }: { network.description = "t"; nm = { greeting, ... }: { deployment.targetHost = "10.0.0.1"; environment.etc.flavour.text = flavour; environment.etc.greeting.text = greeting; test.closure = { paths = 1; sizeKB = 1; seed = "nm"; random = false; }; }; }`);
    const e = await evaluateSystem("nm", { nixops: { files: [f], args: { flavour: "salty" }, machine: "nm" }, nixPath: [`nixpkgs=${STANDIN_NIXPKGS}`], specialArgs: { greeting: "hello network" } });
    assert.equal(await builtEtc(e.drvPath, "greeting"), "hello network");
    assert.equal(await builtEtc(e.drvPath, "flavour"), "salty");
  });

  test("a configuration without specialArgs evaluates exactly as before (<nixpkgs/nixos>)", async () => {
    const f = path.join(tmp, "plain.nix");
    fs.writeFileSync(f, `{ ... }: { networking.hostName = "pm"; test.closure = { paths = 1; sizeKB = 1; seed = "pm"; random = false; }; }`);
    const e = await evaluateSystem("pm", { configuration: f, nixPath: [`nixpkgs=${STANDIN_NIXPKGS}`], specialArgs: {} });
    const direct = (await run(["nix-instantiate", "--eval", "-I", `nixpkgs=${STANDIN_NIXPKGS}`, "-E", `(import <nixpkgs/nixos> { configuration = ${f}; }).system.outPath`], { env: { ...process.env, NIX_PATH: "" }, timeoutMs: 120_000 })).stdout.trim();
    assert.equal(JSON.stringify(e.outPath), direct);
  });
});

describe("specialArgs: Pulumi values as module arguments; waitForSsh", { skip }, () => {
  let tmp = "";
  let lab: Lab;
  let hosts: Record<string, LabHostInfo> = {};
  const profile = async (n: string) => (await lab.exec(n, ["readlink", "/nix/var/nix/profiles/system"])).stdout.trim();
  const etc = async (n: string, f: string) => (await lab.exec(n, ["cat", `/etc/${f}`], { allowFailure: true })).stdout;

  before(async () => {
    tmp = tempDir("special-args");
    lab = await Lab.up({ dir: path.join(tmp, "lab"), names: ["sa", "sb", "sc", "sd"] });
    hosts = Object.fromEntries((await lab.status()).map((h) => [h.name, h]));
  });
  after(async () => {
    await lab?.down();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  /** A stack of the test program in `dir`: configs written beside it, `extra` program config. */
  const stack = (name: string, configs: Record<string, string>, extra: Record<string, unknown> = {}): StackRef => {
    const dir = path.join(tmp, name);
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, "Pulumi.yaml"), `name: special-args-test\nruntime:\n  name: nodejs\n  options:\n    typescript: true\nmain: ${PROGRAM}\n`);
    const files: Record<string, string> = {};
    for (const [m, body] of Object.entries(configs)) fs.writeFileSync(files[m] = path.join(dir, `${m}.nix`), body);
    const cfg = {
      "special-args-test:hosts": Object.fromEntries(Object.keys(configs).map((m) => [m, hosts[m].address])),
      "special-args-test:configs": files, "special-args-test:nixpkgs": STANDIN_NIXPKGS, "special-args-test:privateKeyFile": lab.privateKeyPath,
      ...Object.fromEntries(Object.entries(extra).map(([k, v]) => [`special-args-test:${k}`, v])),
    };
    fs.writeFileSync(path.join(dir, "Pulumi.t.yaml"), YAML.stringify({ config: cfg }));
    return { cwd: dir, stack: "t", state: path.join(dir, "t.state.json") };
  };
  const machinesIn = (s: StackRef) => Object.values(fs.existsSync(s.state) ? stateResources(s.state) : {}).filter((r) => /Machine|DeploymentKey/.test(r.type));

  test("b's configuration takes a's systemPath and a key's path; a change of a redeploys a and b, not c", async () => {
    const b = config("sb", { args: ["aSystem", "dbPasswordFile"], etc: { "a-system": "aSystem", "db-password-file": "dbPasswordFile" } });
    const c = config("sc", { args: ["greeting"], etc: { greeting: "greeting" } });
    const extra = { wires: { sb: { aSystem: "sa.systemPath" } }, key: "sb", plain: { sc: { greeting: "hello from the program" } } };
    const s = stack("wired", { sa: config("sa"), sb: b, sc: c }, extra);
    const up = await engine("up", s);
    expectExit(up, 0, "up");
    let st = stateResources(s.state);
    assert.equal(await etc("sb", "a-system"), st.sa.outputs.systemPath, "b's /etc holds a's systemPath");
    assert.equal(await etc("sb", "db-password-file"), st["key-sb"].outputs.path, "and the key's path");
    assert.equal(await etc("sb", "db-password-file"), "/run/keys/db-password");
    assert.equal(await etc("sc", "greeting"), "hello from the program");
    assert.equal((await lab.exec("sb", ["readlink", "/run/current-system"])).stdout.trim(), st.sb.outputs.systemPath);
    assert.deepEqual(st.sb.inputs.specialArgs, { aSystem: st.sa.outputs.systemPath, dbPasswordFile: "/run/keys/db-password" }, "the arguments are recorded (in clear: never secrets)");
    const before = { sa: st.sa.outputs, sb: st.sb.outputs, sc: st.sc.outputs };

    // a's configuration changes: a and b (whose argument is a's systemPath) are redeployed, c is not.
    fs.writeFileSync(path.join(s.cwd, "sa.nix"), config("sa", { role: "sa-changed" }));
    const up2 = await engine("up", s);
    expectExit(up2, 0, "up after a's change");
    st = stateResources(s.state);
    assert.notEqual(st.sa.outputs.systemPath, before.sa.systemPath);
    assert.equal(st.sa.outputs.generation, before.sa.generation + 1, "a redeployed");
    assert.equal(st.sb.outputs.generation, before.sb.generation + 1, "b redeployed: its argument changed");
    assert.equal(await etc("sb", "a-system"), st.sa.outputs.systemPath, "b's /etc holds a's new systemPath");
    assert.equal(st.sc.outputs.generation, before.sc.generation, "c not redeployed");
    assert.equal(st.sc.outputs.systemPath, before.sc.systemPath);
    assert.equal(await profile("sc"), `system-${before.sc.generation}-link`);

    // Nothing changed: nothing redeployed.
    const up3 = await engine("up", s);
    expectExit(up3, 0, "no-op up");
    const st3 = stateResources(s.state);
    for (const m of ["sa", "sb", "sc"]) assert.equal(st3[m].outputs.generation, st[m].outputs.generation, `${m}: unchanged`);
    expectExit(await engine("destroy", s), 0, "destroy");
  });

  test("a preview before a exists plans b as known after its argument is known", async () => {
    const b = config("sb", { args: ["aHostKey"], etc: { "a-host-key": "aHostKey" } });
    const s = stack("preview", { sa: config("sa"), sb: b }, { wires: { sb: { aHostKey: "sa.hostPublicKey" } } });
    const pv = await engine("preview", s);
    expectExit(pv, 0, "preview");
    const out = pv.stdout + pv.stderr;
    assert.match(out, /closure: known after specialArgs\.aHostKey is known/);
    assert.match(out, /\+ {1,2}pulumi-nodejs:dynamic\/nixos:Machine sb/);
    assert.equal(machinesIn(s).length, 0, "a preview creates nothing");
    // Once a exists the value is known and exact: b's /etc holds a's host key.
    expectExit(await engine("up", s), 0, "up");
    const st = stateResources(s.state);
    assert.equal(await etc("sb", "a-host-key"), st.sa.outputs.hostPublicKey);
    assert.match(st.sa.outputs.hostPublicKey, /^ssh-ed25519 /);
    expectExit(await engine("destroy", s), 0, "destroy");
  });

  test("a nested secret argument is refused before any host is touched", async () => {
    const before = { sa: await profile("sa"), sb: await profile("sb") };
    const b = config("sb", { args: ["db"], etc: { "db-host": "db.host" } });
    const s = stack("secret", { sa: config("sa", { role: "sa-secret" }), sb: b }, { secretArg: { sb: "db" } });
    const up = await engine("up", s);
    assert.notEqual(up.code, 0, "refused");
    const out = up.stdout + up.stderr;
    assert.match(out, /Machine sb: specialArgs\.db\.password: is a secret/);
    assert.match(out, /DeploymentKey/);
    assert.doesNotMatch(out, /hunter2/, "the secret is never printed");
    assert.doesNotMatch(out, /^\s+at .*\.(js|ts):\d+/m, "no stack trace");
    assert.equal(machinesIn(s).length, 0, "no resource was created");
    assert.deepEqual({ sa: await profile("sa"), sb: await profile("sb") }, before, "no host was touched");
  });

  test("a name that shadows a module argument of NixOS is refused", async () => {
    const s = stack("shadow", { sa: config("sa", { role: "sa-shadow" }) }, { plain: { sa: { pkgs: "mine", fine: 1 } } });
    const before = await profile("sa");
    const up = await engine("up", s);
    assert.notEqual(up.code, 0, "refused");
    const out = up.stdout + up.stderr;
    assert.match(out, /invalid arguments of Machine sa:\n\s+specialArgs\.pkgs: shadows the module argument 'pkgs'/);
    assert.doesNotMatch(out, /specialArgs\.fine/);
    assert.equal(machinesIn(s).length, 0);
    assert.equal(await profile("sa"), before);
  });

  test("a machine's specialArgs in the YAML description (over defaults.specialArgs by name)", async () => {
    const s = writeStack(path.join(tmp, "yaml"), "t", {
      sa: { targetHost: hosts.sa.address, config: config("sa", { args: ["greeting", "colour"], etc: { greeting: "greeting", colour: "colour" } }), specialArgs: { greeting: "hello yaml" } } as never,
    }, { "pulumi-nixos:sshPrivateKeyFile": lab.privateKeyPath });
    const file = path.join(s.cwd, "Pulumi.t.yaml");
    const cfg = YAML.parse(fs.readFileSync(file, "utf8"));
    cfg.config["pulumi-nixos:network"] = { machines: cfg.config["pulumi-nixos:machines"], defaults: { specialArgs: { greeting: "from defaults", colour: "teal" } } };
    delete cfg.config["pulumi-nixos:machines"];
    fs.writeFileSync(file, YAML.stringify(cfg));
    expectExit(await engine("up", s), 0, "up");
    assert.equal(await etc("sa", "greeting"), "hello yaml");
    assert.equal(await etc("sa", "colour"), "teal");
    expectExit(await engine("destroy", s), 0, "destroy");
  });

  test("a Network's specialArgs reach all its machines, a machine's own win by name, Outputs included", async () => {
    const d = config("sd", { args: ["greeting", "colour", "aSystem"], etc: { greeting: "greeting", colour: "colour", "a-system": "aSystem" } });
    const s = stack("network", { sa: config("sa", { role: "sa-network" }) }, {});
    fs.writeFileSync(path.join(s.cwd, "sd.nix"), d);
    const file = path.join(s.cwd, "Pulumi.t.yaml");
    const cfg = YAML.parse(fs.readFileSync(file, "utf8"));
    cfg.config["special-args-test:network"] = {
      machines: { sd: { targetHost: hosts.sd.address, configuration: path.join(s.cwd, "sd.nix"), specialArgs: { greeting: "the machine's own" } } },
      specialArgs: { greeting: "the network's", colour: "the network's colour" }, wires: { aSystem: "sa.systemPath" },
    };
    fs.writeFileSync(file, YAML.stringify(cfg));
    expectExit(await engine("up", s), 0, "up");
    const st = stateResources(s.state);
    assert.equal(await etc("sd", "greeting"), "the machine's own");
    assert.equal(await etc("sd", "colour"), "the network's colour");
    assert.equal(await etc("sd", "a-system"), st.sa.outputs.systemPath);
    expectExit(await engine("destroy", s), 0, "destroy");
  });

  test("three machines waiting on one producer add one evaluation, not three", async () => {
    // A nix-instantiate in front of the real one, logging which machines each evaluation holds.
    const wrap = path.join(tmp, "wrap");
    fs.mkdirSync(wrap);
    const log = path.join(wrap, "evals.log");
    const real = spawnSync("sh", ["-c", "command -v nix-instantiate"], { encoding: "utf8" }).stdout.trim();
    fs.writeFileSync(path.join(wrap, "nix-instantiate"), `#!${process.execPath}
const args = process.argv.slice(2);
const e = args[args.indexOf("-E") + 1] || "";
const names = [...e.matchAll(/^  "([^"]+)" = info \\(/gm)].map((m) => m[1]);
if (names.length) require("fs").appendFileSync(${JSON.stringify(log)}, JSON.stringify(names.sort()) + "\\n");
const r = require("child_process").spawnSync(${JSON.stringify(real)}, args, { stdio: "inherit" });
process.exit(r.status === null ? 1 : r.status);
`, { mode: 0o755 });
    const consumer = (h: string) => config(h, { args: ["aSystem"], etc: { "a-system": "aSystem" } });
    const s = stack("batched", { sa: config("sa", { role: "sa-batched" }), sb: consumer("sb"), sc: consumer("sc"), sd: consumer("sd") },
      { wires: { sb: { aSystem: "sa.systemPath" }, sc: { aSystem: "sa.systemPath" }, sd: { aSystem: "sa.systemPath" } } });
    const up = await engine("up", s, [], { ...process.env, PATH: `${wrap}:${process.env.PATH}` });
    expectExit(up, 0, "up");
    const evals = fs.readFileSync(log, "utf8").trim().split("\n").map((l) => JSON.parse(l) as string[]);
    assert.deepEqual(evals, [["sa"], ["sb", "sc", "sd"]], "a alone (the others wait for it), then the three together");
    const st = stateResources(s.state);
    for (const m of ["sb", "sc", "sd"]) assert.equal(await etc(m, "a-system"), st.sa.outputs.systemPath, m);
    expectExit(await engine("destroy", s), 0, "destroy");
  });

  test("waitForSsh: a host whose sshd starts after the deploy began is deployed, its key pinned", async () => {
    const s = stack("wait", { sc: config("sc", { role: "sc-waited" }) }, { waitForSsh: { sc: 60 } });
    await lab.exec("sc", ["systemctl", "stop", "sshd"]);
    let started: Promise<unknown> | undefined;
    const timer = setTimeout(() => { started = lab.exec("sc", ["systemctl", "start", "sshd"]); }, 20_000);
    try {
      const up = await engine("up", s);
      expectExit(up, 0, "up while sshd comes up");
      assert.match(up.stdout + up.stderr, /waiting for SSH on \S*sc\S* \(until \d\d:\d\d:\d\d\)|waiting for SSH on \S+ \(until \d\d:\d\d:\d\d\)/);
      assert.equal((up.stdout + up.stderr).match(/waiting for SSH on/g)?.length, 1, "said once");
    } finally {
      clearTimeout(timer);
      await started;
      await lab.exec("sc", ["systemctl", "start", "sshd"]);
    }
    const st = stateResources(s.state);
    assert.equal(await etc("sc", "role"), "sc-waited\n");
    assert.equal(st.sc.outputs.hostPublicKey, `${(await lab.exec("sc", ["cat", "/etc/ssh/ssh_host_ed25519_key.pub"])).stdout.trim().split(/\s+/).slice(0, 2).join(" ")}`, "the key learned then is pinned");
    expectExit(await engine("destroy", s), 0, "destroy");
  });
});
