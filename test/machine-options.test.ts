import "./helpers/env";
import { describe, test, before, after } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "fs";
import * as path from "path";
import YAML from "yaml";
import { Lab, LabHostInfo } from "../provider/lab/lab";
import { canRunLab, tempDir, ROOT } from "./helpers/env";
import { engine, expectExit, stateResources } from "./helpers/engine";
import { writeStack, nixConfig } from "./helpers/stack";
import { buildSystem, BuiltSystem } from "./bench/closures";
import { create, MachineInputs } from "../provider/handlers/machine";
import { activate } from "../provider/host/activate";
import { missingOnHost } from "../provider/host/copy";
import { closureOf } from "../provider/nix/closure";
import { closeAllSessions, withHost } from "../provider/ssh/pool";
import { sshStats } from "../provider/ssh/session";

const skip = canRunLab ? false : "the lab needs root on Linux";

describe("machine options: flake, buildOn target, action test/boot, rollback off", { skip }, () => {
  let tmp = "";
  let lab: Lab;
  let hosts: LabHostInfo[] = [];
  const current = async (name: string) => (await lab.exec(name, ["sh", "-c", "readlink /run/current-system || true"])).stdout.trim();
  const gens = async (name: string) => (await lab.exec(name, ["sh", "-c", "nix-env -p /nix/var/nix/profiles/system --list-generations | wc -l"])).stdout.trim();

  before(async () => {
    tmp = tempDir("options");
    lab = await Lab.up({ dir: path.join(tmp, "lab"), names: ["alpha", "beta"] });
    hosts = await lab.status();
  });
  after(async () => {
    await lab?.down();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  test("machines from a flake (the flake example's program)", async () => {
    const dir = path.join(tmp, "flake");
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, "Pulumi.yaml"), `name: flake-example\nruntime:\n  name: nodejs\n  options:\n    typescript: true\nmain: ${path.join(ROOT, "examples/flake/index.ts")}\n`);
    fs.writeFileSync(path.join(dir, "Pulumi.lab.yaml"), YAML.stringify({ config: {
      "flake-example:machines": Object.fromEntries(hosts.map((h) => [h.name, { host: h.address }])),
      "flake-example:sshPrivateKeyFile": lab.privateKeyPath,
    } }));
    const s = { cwd: dir, stack: "lab", state: path.join(dir, "state.json") };
    const up = await engine("up", s);
    expectExit(up, 0, "flake up");
    const st = stateResources(s.state);
    assert.match(st.alpha.outputs.systemPath, /-nixos-system-alpha-/);
    assert.equal(st.alpha.inputs.flake, `${path.join(ROOT, "test/fixtures")}#alpha`);
    assert.equal(await current("alpha"), st.alpha.outputs.systemPath);
    assert.equal((await lab.exec("beta", ["cat", "/etc/role"])).stdout, "beta\n");
    expectExit(await engine("destroy", s), 0, "destroy");
  });

  test("buildOn target: the .drv closure is copied and built on the host", async () => {
    const s = writeStack(path.join(tmp, "target"), "t", { alpha: { targetHost: hosts[0].address, config: nixConfig("built-on-target", { paths: 3 }), buildOn: "target" } },
      { "pulumi-nixos:sshPrivateKeyFile": lab.privateKeyPath });
    const up = await engine("up", s);
    expectExit(up, 0, "buildOn target");
    assert.match(up.stdout + up.stderr, /alpha: built \d+ derivations on the host \(\d+\/\d+\)/);
    const m = stateResources(s.state).alpha.outputs;
    assert.equal(await current("alpha"), m.systemPath);
    assert.equal(fs.existsSync(m.systemPath), false, "the toplevel was never built on this machine");
    assert.ok(m.closureSize.paths >= 4);
  });

  test("action test activates without a new boot default; action boot sets it without activating", async () => {
    const before = await current("beta");
    const beforeGens = await gens("beta");
    const s = writeStack(path.join(tmp, "actions"), "t", { beta: { targetHost: hosts[1].address, config: nixConfig("beta", { role: "tested" }), action: "test" } },
      { "pulumi-nixos:sshPrivateKeyFile": lab.privateKeyPath });
    expectExit(await engine("up", s), 0, "action test");
    const tested = stateResources(s.state).beta.outputs.systemPath;
    assert.equal(await current("beta"), tested);
    assert.equal(await gens("beta"), beforeGens, "no new generation for `test`");
    await lab.reboot("beta");
    assert.equal(await current("beta"), before, "after a reboot the profile's default runs again");

    writeStack(s.cwd, "t", { beta: { targetHost: hosts[1].address, config: nixConfig("beta", { role: "booted" }), action: "boot" } }, { "pulumi-nixos:sshPrivateKeyFile": lab.privateKeyPath });
    expectExit(await engine("up", s), 0, "action boot");
    const booted = stateResources(s.state).beta.outputs.systemPath;
    assert.equal(await current("beta"), before, "boot does not activate");
    const rf = await engine("refresh", s);
    assert.doesNotMatch(rf.stdout, /drift/, "for action boot, refresh compares the boot default");
    await lab.reboot("beta");
    assert.equal(await current("beta"), booted, "the next boot runs it");
  });

  test("enableRollback false keeps the host's generations (NixOps's meaning); keepGenerations 1 prunes", async () => {
    const dir = path.join(tmp, "norollback");
    const base = writeStack(dir, "t", {}, {});
    const net = (role: string, keep?: number) => {
      fs.writeFileSync(path.join(dir, "alpha.nix"), nixConfig("alpha", { role }));
      fs.writeFileSync(path.join(dir, "Pulumi.t.yaml"), YAML.stringify({ config: {
        "pulumi-nixos:network": { enableRollback: false, machines: { alpha: { targetHost: hosts[0].address, configuration: "./alpha.nix", ...(keep ? { keepGenerations: keep } : {}) } } },
        "pulumi-nixos:nixPath": [`nixpkgs=${path.join(ROOT, "test/fixtures/nixpkgs")}`],
        "pulumi-nixos:sshPrivateKeyFile": lab.privateKeyPath,
      } }));
    };
    const before = Number(await gens("alpha"));
    net("one");
    expectExit(await engine("up", base), 0, "first");
    net("two");
    expectExit(await engine("up", base), 0, "second");
    // NixOps's enableRollback only decided whether the deployer kept a network profile
    // (nixops/deployment.py, rollback_enabled): the host's generations all stay.
    assert.equal(Number(await gens("alpha")), before + 2, "every generation kept with enableRollback false");
    net("three", 1);
    const up = await engine("up", base);
    expectExit(up, 0, "third, keepGenerations 1");
    assert.match(up.stdout + up.stderr, /keepGenerations 1: \d+ older generations? deleted/);
    assert.equal(await gens("alpha"), "1", "only the current generation is kept");
    assert.equal(await current("alpha"), stateResources(base.state).alpha.outputs.systemPath);
  });

  test("remote commands per deploy: a redeploy of what the host has is one, a fresh one two; a check that finds paths missing changes nothing", async () => {
    const key = fs.readFileSync(lab.privateKeyPath, "utf8");
    const [held, fresh] = await Promise.all(["held", "fresh"].map((seed) => buildSystem(tmp, `opt-${seed}`, { paths: 5, sizeKB: 4, seed })));
    const h = hosts[0];
    const inputs = (sys: BuiltSystem): MachineInputs => ({
      name: h.name, connection: { host: h.address, port: h.port, user: "root", privateKey: key }, systemPath: sys.outPath, drvPath: sys.drvPath,
      action: "switch", buildOn: "local", substituteOnTarget: false, compress: false, connectTimeout: 15, activationTimeout: 60,
    });
    const first = await create(inputs(held));
    assert.ok(first.outs.bytesCopied > 0);
    const gensBefore = await gens(h.name);
    // What the host has: the check and the activation run as one command, nothing is copied.
    const c0 = sshStats.commands;
    const again = await create(inputs(held));
    assert.equal(sshStats.commands - c0, 1, "one remote command for a redeploy of what the host has");
    assert.equal(again.outs.bytesCopied, 0);
    assert.equal(await current(h.name), held.outPath);
    assert.equal(await gens(h.name), gensBefore, "the same system makes no new generation");
    // What it lacks: the first command lists the missing paths and leaves profile and system alone.
    const closure = await closureOf([fresh.outPath]);
    const checked = await withHost(inputs(fresh).connection, {}, (s) => activate(s, fresh.outPath, "switch", { timeoutSec: 60, requirePaths: closure.map((p) => p.path) }));
    const onHost = new Set((await closureOf([held.outPath])).map((p) => p.path));
    assert.deepEqual([...checked.missing].sort(), closure.map((p) => p.path).filter((p) => !onHost.has(p)).sort(), "exactly the paths the host lacks");
    assert.ok(checked.missing.includes(fresh.outPath), "the toplevel is reported missing");
    assert.equal(await current(h.name), held.outPath, "nothing was activated");
    assert.equal(await gens(h.name), gensBefore, "the profile was not touched");
    // Only Nix's database says what is valid: a directory left in the store by hand is still missing.
    const stray = "/nix/store/11111111111111111111111111111111-stray";
    await lab.exec(h.name, ["mkdir", "-p", stray]);
    const asked = await withHost(inputs(fresh).connection, {}, (s) => missingOnHost(s, [held.outPath, stray, "/nix/store/22222222222222222222222222222222-absent?"]));
    assert.deepEqual(asked, [stray, "/nix/store/22222222222222222222222222222222-absent?"]);
    await lab.exec(h.name, ["rmdir", stray]);
    // A fresh system: the check, then the import with the activation following in the same command.
    const c1 = sshStats.commands;
    const deployed = await create(inputs(fresh));
    // Plus magic rollback's confirmation, over a new connection (provider/host/rollback.ts).
    assert.equal(sshStats.commands - c1, 3, "check + (import && activate) + confirmation");
    assert.equal(await current(h.name), fresh.outPath);
    assert.equal(deployed.outs.generation, first.outs.generation + 1);
    assert.equal(deployed.outs.previousSystemPath, held.outPath);
    await closeAllSessions();
  });
});
