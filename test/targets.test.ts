/**
 * `pulumi-nixos targets` (issue 12, point 3): arguments that work unquoted inside $(...), a --json
 * list, every ancestor (root Stack, Network) also on a fresh stack, and --state like the other
 * fleet commands. The lab part runs the printed arguments through a real shell.
 */
import "./helpers/env";
import { describe, test, before, after } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "fs";
import * as path from "path";
import YAML from "yaml";
import { Lab, LabHostInfo } from "../provider/lab/lab";
import { run, RunResult } from "../provider/util/run";
import { canRunLab, tempDir, ROOT, STANDIN_NIXPKGS } from "./helpers/env";
import { engine, expectExit, stateResources, StackRef } from "./helpers/engine";
import { nixConfig } from "./helpers/stack";

const BIN = path.join(ROOT, "bin/pulumi-nixos.js");
const HARNESS = path.join(ROOT, "dist/test/engine/cli.js");
const targets = (...args: string[]): Promise<RunResult> => run([process.execPath, BIN, "targets", ...args], { allowFailure: true, timeoutMs: 60_000 });

/** A project of the repo's stack program with a network description in stack config. */
function project(dir: string, name: string, stack: string, network: Record<string, unknown>, extra: Record<string, unknown> = {}): StackRef {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, "Pulumi.yaml"), `name: ${name}\nruntime:\n  name: nodejs\n  options:\n    typescript: true\nmain: ${path.join(ROOT, "stacks", "index.ts")}\n`);
  fs.writeFileSync(path.join(dir, `Pulumi.${stack}.yaml`), YAML.stringify({ config: { "pulumi-nixos:network": network, ...extra } }));
  return { cwd: dir, stack, state: path.join(dir, `${stack}.state.json`) };
}

describe("targets from stack config (a fresh stack)", () => {
  let tmp = "";
  before(() => { tmp = tempDir("targets"); });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  test("unquoted --target arguments with the Stack and the Network first; --json; --no-parents; --exclude", async () => {
    const s = project(path.join(tmp, "fresh"), "tgt", "fresh", {
      description: "fleet",
      pins: { p: { url: "http://example.invalid/nixexprs.tar.xz", sha256: "1f5d2g1p6nhwhlfhh8jwn6mjsaqv2cjjs9ilm4wgnpl3w2ikn9rc" } },
      machines: {
        a: { targetHost: "a.lan", configuration: "./a.nix", tags: ["web"], pin: "p", keys: { k1: { config: "x" } } },
        b: { targetHost: "b.lan", configuration: "./b.nix", tags: ["db"] },
      },
    });
    // The Network's children by type, named <network>-<machine>[-<key>|-channel].
    const child = (t: string, n: string) => `urn:pulumi:fresh::tgt::pulumi-nixos:index:Network$pulumi-nodejs:dynamic/nixos:${t}::fleet-${n}`;
    const want = ["urn:pulumi:fresh::tgt::pulumi:pulumi:Stack::tgt-fresh", "urn:pulumi:fresh::tgt::pulumi-nixos:index:Network::fleet",
      child("Machine", "a"), child("DeploymentKey", "a-k1"), child("ChannelPin", "a-channel")];
    const r = await targets("--stack", "fresh", "--cwd", s.cwd, "--tag", "web");
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), want.map((u) => `--target ${u}`).join(" "));
    assert.doesNotMatch(r.stdout, /['"]/, "no quotes: inside $(...) they would stay literal");
    // What a shell makes of $(...): exactly these words.
    const words = await run(["sh", "-c", `for w in $(${process.execPath} ${BIN} targets --stack fresh --cwd ${s.cwd} --tag web); do echo "$w"; done`]);
    assert.deepEqual(words.stdout.trim().split("\n"), want.flatMap((u) => ["--target", u]));
    const js = await targets("--stack", "fresh", "--cwd", s.cwd, "--include", "a", "--json");
    assert.deepEqual(JSON.parse(js.stdout), want);
    const np = await targets("--stack", "fresh", "--cwd", s.cwd, "--exclude", "a", "--no-parents", "--json");
    assert.deepEqual(JSON.parse(np.stdout), [child("Machine", "b")]);
  });

  test("names that would not survive unquoted are refused; unknown machines and no stack are errors", async () => {
    const s = project(path.join(tmp, "bad"), "tgt", "bad", { machines: { a: { targetHost: "a.lan", configuration: "./a.nix", keys: { "db password": { config: "x" } } } } });
    const r = await targets("--stack", "bad", "--cwd", s.cwd);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /network-a-db password' has a space or a shell character/);
    const unknown = await targets("--stack", "bad", "--cwd", s.cwd, "--include", "nope");
    assert.equal(unknown.code, 2, "a usage error (README: exit codes)");
    assert.match(unknown.stderr, /no machine named nope \(machines: a\)/);
    const none = await targets("--tag", "web");
    assert.equal(none.code, 2);
    assert.match(none.stderr, /give --stack NAME .* or --state FILE/);
  });
});

describe("targets through a shell against the lab", { skip: canRunLab ? false : "the lab needs root on Linux" }, () => {
  let tmp = "";
  let lab: Lab;
  let hosts: LabHostInfo[];

  before(async () => {
    tmp = tempDir("targets-lab");
    lab = await Lab.up({ dir: path.join(tmp, "lab"), hosts: 2 });
    hosts = await lab.status();
    // As on a NixOS host booted with provider/nix/keys.nix: activation keeps the ramfs it finds.
    await lab.exec("host1", ["sh", "-c", "mount -t ramfs -o mode=0750 ramfs /run/keys && chgrp keys /run/keys"]);
  });
  after(async () => {
    await lab?.down();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  /** `harness OP … $(pulumi-nixos targets …)`, as the README shows it, through sh. */
  const viaShell = (op: string, s: StackRef, targetArgs: string) =>
    run(["sh", "-c", `${process.execPath} ${HARNESS} ${op} --cwd ${s.cwd} --stack ${s.stack} --state ${s.state} $(${process.execPath} ${BIN} targets ${targetArgs})`], { allowFailure: true, timeoutMs: 600_000 });

  test("up $(targets --tag web) on a fresh stack deploys only the web machine; --state; destroy $(targets --no-parents)", async () => {
    const s = project(path.join(tmp, "prog"), "pulumi-nixos", "t", {
      description: "lab",
      machines: {
        host1: { targetHost: hosts[0].address, configuration: "./host1.nix", tags: ["web"], keys: { k: { config: "kText" } } },
        host2: { targetHost: hosts[1].address, configuration: "./host2.nix", tags: ["db"] },
      },
    }, { "pulumi-nixos:nixPath": [`nixpkgs=${STANDIN_NIXPKGS}`], "pulumi-nixos:sshPrivateKeyFile": lab.privateKeyPath });
    for (const h of hosts) fs.writeFileSync(path.join(s.cwd, `${h.name}.nix`), nixConfig(h.name));
    const set = await run([process.execPath, HARNESS, "config", "set", "--secret", "--cwd", s.cwd, "--stack", "t", "--", "kText", "key text\n"], { allowFailure: true });
    assert.equal(set.code, 0, set.stderr);

    const up = await viaShell("up", s, `--stack t --cwd ${s.cwd} --tag web`);
    expectExit(up, 0, "targeted up");
    let st = stateResources(s.state);
    assert.match(up.stdout, /host1: switch done/, "host1 deployed");
    assert.ok(st["host1/k"], "its key too");
    assert.equal(st.host2, undefined, "host2 not targeted");
    assert.equal((await lab.exec("host1", ["cat", "/run/keys/k"])).stdout, "key text\n");

    // --state gives the recorded URNs: host1's resources and their ancestors as the state has them.
    const fromState = JSON.parse((await targets("--state", s.state, "--tag", "web", "--json")).stdout);
    const fromConfig = JSON.parse((await targets("--stack", "t", "--cwd", s.cwd, "--tag", "web", "--json")).stdout);
    const recorded = JSON.parse(fs.readFileSync(s.state, "utf8")).deployment.resources.map((r: { urn: string }) => r.urn);
    for (const u of fromState) assert.ok(recorded.includes(u), `${u} is in the state`);
    for (const u of fromConfig.filter((x: string) => !x.includes("pulumi:pulumi:Stack") || recorded.some((r: string) => r.includes("pulumi:pulumi:Stack")))) {
      assert.ok(fromState.includes(u), `config and state agree on ${u}`);
    }

    expectExit(await engine("up", s), 0, "untargeted up");
    assert.ok(stateResources(s.state).host2?.outputs.generation >= 1, "host2 deployed");
    const ds = await viaShell("destroy", s, `--state ${s.state} --include host2 --no-parents`);
    expectExit(ds, 0, "targeted destroy");
    st = stateResources(s.state);
    assert.equal(st.host2, undefined, "host2 forgotten");
    assert.ok(st.host1 && st["host1/k"] && Object.keys(st).some((k) => k === "lab"), "host1, its key and the Network stay");
    expectExit(await engine("destroy", s), 0, "destroy");
  });
});
