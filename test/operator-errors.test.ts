/**
 * What an operator sees when the input is wrong (issue 32): one clear message naming the
 * resources and fields, no stack trace, no internal protocol line, and nothing run on any host
 * (these fail at program time, before any resource registers: no host is contacted at all).
 */
import "./helpers/env";
import { describe, test, after } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "fs";
import * as path from "path";
import { tempDir, ROOT } from "./helpers/env";
import { engine, expectExit, StackRef } from "./helpers/engine";
import { stackConfigProblems } from "../provider/stack-config";

const tmp = tempDir("operator-errors");
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** A stack of the bad-inputs program with these machines. */
function stack(name: string, machines: Record<string, unknown>): StackRef {
  const dir = path.join(tmp, name);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, "Pulumi.yaml"), `name: bad-inputs\nruntime: nodejs\nmain: ${path.join(ROOT, "test/programs/bad-inputs/index.ts")}\n`);
  fs.writeFileSync(path.join(dir, "Pulumi.t.yaml"), `config:\n  bad-inputs:machines: ${JSON.stringify(machines)}\n`);
  return { cwd: dir, stack: "t", state: path.join(dir, "t.state.json") };
}

/** The run failed with `re` in its output, and nothing of our code's internals. */
function failsWith(out: { code: number | null; stdout: string; stderr: string }, re: RegExp, what: string): void {
  expectExit(out as any, 1, what);
  const all = out.stdout + out.stderr;
  assert.match(all, re, what);
  assert.doesNotMatch(all, /^\s+at .*\.(js|ts):\d+/m, `${what}: no stack trace`);
  assert.doesNotMatch(all, /@@pulumi-nixos/, `${what}: no protocol line`);
}

describe("operator errors: refused before anything runs, named", () => {
  test("two machines on one host are refused, naming both (plain and lifted connections, and through the same bastion)", async () => {
    failsWith(await engine("preview", stack("same", { alpha: { host: "10.9.0.5" }, beta: { host: "10.9.0.5", port: 22 } })),
      /Machine beta: reaches the same host as Machine alpha \(10\.9\.0\.5:22\)/, "same address");
    failsWith(await engine("preview", stack("lifted", { alpha: { host: "10.9.0.5" }, beta: { host: "10.9.0.5", lifted: true } })),
      /Machine beta: reaches the same host as Machine alpha/, "a lifted connection");
    failsWith(await engine("preview", stack("bastion", { alpha: { host: "10.9.1.2", proxy: { host: "10.9.0.1" } }, beta: { host: "10.9.1.2", proxy: { host: "10.9.0.1" } } })),
      /Machine beta: reaches the same host as Machine alpha \(10\.9\.1\.2:22 via 10\.9\.0\.1:22\)/, "same bastion chain");
    // One private address behind two bastions is two hosts; another port is another host.
    expectExit(await engine("preview", stack("distinct", { alpha: { host: "10.9.1.2", proxy: { host: "10.9.0.1" } }, beta: { host: "10.9.1.2", proxy: { host: "10.9.0.2" } }, gamma: { host: "10.9.1.2", port: 2222 } })), 0, "distinct hosts");
  });

  test("inline keys of a Machine are checked as a DeploymentKey's", async () => {
    failsWith(await engine("preview", stack("inline-key", { web: { host: "10.9.0.7", keys: { db: { permissions: "999" }, "bad/name": { destDir: "relative" } } } })),
      /Machine web keys\.db: permissions '999' must be 3-4 octal digits/, "bad mode");
    const r = await engine("preview", stack("inline-key2", { web: { host: "10.9.0.7", keys: { k: { destDir: "relative" } } } }));
    failsWith(r, /Machine web keys\.k: destDir 'relative' must be an absolute, normalized path/, "bad destDir");
  });

  test("the stack program: a misspelt key, a missing network file, a plain secret: one named message each", async () => {
    const dir = (name: string, cfg: Record<string, unknown>): StackRef => {
      const d = path.join(tmp, name);
      fs.mkdirSync(d, { recursive: true });
      fs.writeFileSync(path.join(d, "Pulumi.yaml"), `name: pulumi-nixos\nruntime: nodejs\nmain: ${path.join(ROOT, "stacks", "index.ts")}\n`);
      fs.writeFileSync(path.join(d, "Pulumi.t.yaml"), "config:\n" + Object.entries(cfg).map(([k, v]) => `  ${k}: ${JSON.stringify(v)}`).join("\n") + "\n");
      return { cwd: d, stack: "t", state: path.join(d, "t.state.json") };
    };
    failsWith(await engine("preview", dir("typo", { "pulumi-nixos:netwrok": { machines: { a: { targetHost: "10.9.0.1", configuration: "./a.nix" } } } })),
      /pulumi-nixos:netwrok: not a setting of pulumi-nixos \(did you mean 'network'\?\)/, "a misspelt key");
    failsWith(await engine("preview", dir("nofile", { "pulumi-nixos:networkFile": "./missing.yaml" })),
      /pulumi-nixos:networkFile: no such file .*missing\.yaml \(relative paths are from the project root/, "a missing networkFile");
    failsWith(await engine("preview", dir("plain", { "pulumi-nixos:machines": { a: { targetHost: "10.9.0.1", configuration: "./a.nix" } }, "pulumi-nixos:sshPrivateKey": "-----BEGIN OPENSSH PRIVATE KEY-----" })),
      /config pulumi-nixos:sshPrivateKey: .* is a secret but is set as plain text/, "a plain secret");
  });

  test("stack config: unknown keys named with did-you-mean, a missing or doubled network said plainly", () => {
    assert.deepEqual(stackConfigProblems(["pulumi-nixos:netwrok", "pulumi-nixos:sshPrivateKeyFile", "aws:region"]), [
      "pulumi-nixos:netwrok: not a setting of pulumi-nixos (did you mean 'network'?)",
      "no network in the stack config: set pulumi-nixos:network (a description), pulumi-nixos:networkFile (a YAML file), pulumi-nixos:networkNix (NixOps's network files) or pulumi-nixos:machines (see `pulumi-nixos import-nixops` for a NixOps deployment)",
    ]);
    assert.deepEqual(stackConfigProblems(["pulumi-nixos:network", "pulumi-nixos:sshPrivateKey.heron", "pulumi-nixos:vaultTokn"]), ["pulumi-nixos:vaultTokn: not a setting of pulumi-nixos (did you mean 'vaultToken'?)"]);
    assert.match(stackConfigProblems(["pulumi-nixos:networkNix", "pulumi-nixos:networkFile"])[0], /gives the network 2 ways .*keep one/);
    // A key's `config:` source in a project itself named pulumi-nixos lives in our namespace.
    assert.deepEqual(stackConfigProblems(["pulumi-nixos:machines", "pulumi-nixos:dbPassword"], ["dbPassword"]), []);
  });
});

