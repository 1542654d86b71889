/**
 * The repo's own stack under the CLI's rules (issue 12, point 1): Pulumi.yaml's `main` is
 * stacks/index.ts, so the CLI runs it with pwd = stacks/ and the repo root as root directory;
 * relative paths in stack config resolve against the project root, not the pwd.
 */
import "./helpers/env";
import { describe, test, before, after } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "fs";
import * as path from "path";
import YAML from "yaml";
import { Lab, LabHostInfo } from "../provider/lab/lab";
import { run } from "../provider/util/run";
import { canRunLab, tempDir, ROOT } from "./helpers/env";
import { engine, expectExit, stateResources, StackRef } from "./helpers/engine";
import { entryPoint, pwdMain, runUnderMocks } from "./helpers/cli-rules";

/**
 * A checkout-like project dir: the repo's Pulumi.yaml and stacks/index.ts, links to the rest, and a
 * copy of stacks/Pulumi.lab.yaml as stack `stack` with the given hosts and a relative key file.
 */
function rootProject(dir: string, stack: string, hosts: string[], keyFile: string): StackRef {
  fs.mkdirSync(path.join(dir, "stacks"), { recursive: true });
  fs.copyFileSync(path.join(ROOT, "Pulumi.yaml"), path.join(dir, "Pulumi.yaml"));
  for (const p of ["package.json", "dist", "provider", "node_modules", "test"]) fs.symlinkSync(path.join(ROOT, p), path.join(dir, p));
  fs.symlinkSync(path.join(ROOT, "stacks/index.ts"), path.join(dir, "stacks/index.ts"));
  fs.copyFileSync(keyFile, path.join(dir, "deploy-key"));
  const doc = YAML.parse(fs.readFileSync(path.join(ROOT, "stacks/Pulumi.lab.yaml"), "utf8"));
  const machines = doc.config["pulumi-nixos:network"].machines;
  Object.keys(machines).forEach((m, i) => { machines[m].targetHost = hosts[i]; });
  doc.config["pulumi-nixos:sshPrivateKeyFile"] = "deploy-key"; // relative: against the project root
  fs.writeFileSync(path.join(dir, "stacks", `Pulumi.${stack}.yaml`), YAML.stringify(doc));
  return { cwd: dir, stack, state: path.join(dir, `${stack}.state.json`) };
}

describe("the repo's stack program under the CLI's rules", () => {
  let tmp = "";
  before(() => { tmp = tempDir("project-root"); });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  test("Pulumi.yaml runs stacks/index.ts: pwd stacks/, entry index.ts (not package.json's main)", () => {
    assert.deepEqual(pwdMain(ROOT), { pwd: path.join(ROOT, "stacks"), main: "index.ts" });
    assert.equal(entryPoint(path.join(ROOT, "stacks"), "index.ts"), path.join(ROOT, "stacks/index.ts"));
    assert.equal(fs.existsSync(path.join(ROOT, "stacks/Pulumi.try.yaml")), false, "no stray scratch stack");
  });

  test("started as the CLI starts it, the lab stack declares its machines with paths from the project root", async () => {
    await run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", path.join(tmp, "id")]);
    const s = rootProject(path.join(tmp, "mocks"), "mocked", ["10.231.250.2", "10.231.251.2", "10.231.252.2"], path.join(tmp, "id"));
    const r = await runUnderMocks(s.cwd, s.stack);
    assert.equal(r.code, 0, r.stderr);
    const machines = r.registrations.filter((x) => x.type === "pulumi-nodejs:dynamic/nixos:Machine" && x.inputs.kind === "machine");
    assert.deepEqual(machines.map((m) => m.name).sort(), ["lab-host1", "lab-host2", "lab-host3"], "named <network>-<machine>");
    for (const m of machines) {
      assert.equal(m.inputs.configuration, `./test/fixtures/lab-network/${m.inputs.name}.nix`, "configuration from the project root, recorded relative to it (the same on every checkout)");
      assert.match(m.inputs.systemPath, /^\/nix\/store\/\S+-nixos-system-/, "evaluated with nixPath from the project root");
      // The mocks see the connection as one secret (it holds the key): { <sig>, value }.
      const conn = m.inputs.connection.value ?? m.inputs.connection;
      assert.match(conn.privateKey, /BEGIN OPENSSH PRIVATE KEY/, "sshPrivateKeyFile read from the project root");
    }
    assert.ok(r.registrations.some((x) => x.type === "pulumi-nixos:index:Network" && x.name === "lab"));
  });
});

describe("the repo's stack against lab hosts", { skip: canRunLab ? false : "the lab needs root on Linux" }, () => {
  let tmp = "";
  let lab: Lab;
  let hosts: LabHostInfo[];
  before(async () => {
    tmp = tempDir("project-root-lab");
    lab = await Lab.up({ dir: path.join(tmp, "lab"), hosts: 3 });
    hosts = await lab.status();
  });
  after(async () => {
    await lab?.down();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  test("preview → up → refresh → destroy of stacks/Pulumi.lab.yaml", async () => {
    const s = rootProject(path.join(tmp, "repo"), "lab", hosts.map((h) => h.address), lab.privateKeyPath);
    const pv = await engine("preview", s);
    expectExit(pv, 0, "preview");
    for (const h of ["host1", "host2", "host3"]) assert.match(pv.stdout, new RegExp(`\\+\\s+pulumi-nodejs:dynamic/nixos:Machine lab-${h} create`));
    expectExit(await engine("up", s), 0, "up");
    const st = stateResources(s.state);
    for (const h of ["host1", "host2", "host3"]) {
      assert.ok(st[h].outputs.generation >= 1);
      assert.equal((await lab.exec(h, ["readlink", "/run/current-system"])).stdout.trim(), st[h].outputs.systemPath);
    }
    assert.deepEqual(st.host3.outputs.tags, ["db"]);
    const rf = await engine("refresh", s);
    expectExit(rf, 0, "refresh");
    assert.doesNotMatch(rf.stdout, /drift/);
    expectExit(await engine("destroy", s), 0, "destroy");
    assert.deepEqual(Object.values(stateResources(s.state)).filter((r) => r.type.startsWith("pulumi-nodejs:dynamic")), []);
  });
});
