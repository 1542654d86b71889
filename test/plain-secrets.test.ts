/**
 * Secret-bearing values given as plain stack config are refused (issue 12, point 5): a key's
 * `text:`, `pulumi-nixos:sshPrivateKey`, `vaultToken` and a key's `config:` source. The run fails
 * at program time with a message naming the config key and `pulumi config set --secret`, and
 * nothing is deployed. No host is contacted, so no lab is needed.
 */
import "./helpers/env";
import { describe, test, before, after } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "fs";
import * as path from "path";
import YAML from "yaml";
import { run } from "../provider/util/run";
import { tempDir, ROOT, STANDIN_NIXPKGS } from "./helpers/env";
import { engine, expectExit, stateResources, StackRef } from "./helpers/engine";
import { nixConfig } from "./helpers/stack";

describe("secrets in plain config are refused", () => {
  let tmp = "";
  let sshKey = "";
  let n = 0;

  before(async () => {
    tmp = tempDir("plain-secrets");
    await run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", path.join(tmp, "id")]);
    sshKey = fs.readFileSync(path.join(tmp, "id"), "utf8");
  });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  /** A stack of the repo's program with one machine (never reached: these runs fail or only preview). */
  function stack(config: Record<string, unknown>, keys?: Record<string, unknown>): StackRef {
    const dir = path.join(tmp, `p${++n}`);
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, "Pulumi.yaml"), `name: pulumi-nixos\nruntime:\n  name: nodejs\n  options:\n    typescript: true\nmain: ${path.join(ROOT, "stacks", "index.ts")}\n`);
    fs.writeFileSync(path.join(dir, "m1.nix"), nixConfig("m1"));
    const network = { machines: { m1: { targetHost: "10.231.250.2", configuration: "./m1.nix", ...(keys ? { keys } : {}) } } };
    fs.writeFileSync(path.join(dir, "Pulumi.t.yaml"), YAML.stringify({ config: {
      "pulumi-nixos:network": network, "pulumi-nixos:nixPath": [`nixpkgs=${STANDIN_NIXPKGS}`],
      "pulumi-nixos:sshPrivateKeyFile": path.join(tmp, "id"), ...config,
    } }));
    return { cwd: dir, stack: "t", state: path.join(dir, "state.json") };
  }
  const setSecret = async (s: StackRef, key: string, value: string) => {
    const r = await run([process.execPath, path.join(ROOT, "dist/test/engine/cli.js"), "config", "set", "--secret", "--cwd", s.cwd, "--stack", s.stack, "--", key, value], { allowFailure: true });
    assert.equal(r.code, 0, r.stderr);
  };
  /** The run fails with the message, and the state holds no resource. */
  async function refused(s: StackRef, op: "preview" | "up", key: string, setKey = key): Promise<void> {
    const r = await engine(op, s);
    expectExit(r, 1, `${op} with plain ${key}`);
    const out = r.stdout + r.stderr;
    assert.ok(out.includes(`config ${key}:`), `names the config key ${key}:\n${out}`);
    assert.ok(out.includes(`pulumi config set --secret ${setKey}`), `says to use pulumi config set --secret:\n${out}`);
    assert.deepEqual(Object.values(stateResources(s.state)).filter((x) => x.type.startsWith("pulumi-nodejs:dynamic")), [], "nothing deployed");
  }

  test("pulumi-nixos:sshPrivateKey as plain text is refused; set with --secret it is taken", async () => {
    const s = stack({ "pulumi-nixos:sshPrivateKey": sshKey });
    await refused(s, "preview", "pulumi-nixos:sshPrivateKey");
    await refused(s, "up", "pulumi-nixos:sshPrivateKey");
    assert.ok(!(await engine("preview", s)).stdout.includes("BEGIN OPENSSH"), "the key is never echoed");
    const ok = stack({});
    await setSecret(ok, "pulumi-nixos:sshPrivateKey", sshKey);
    const pv = await engine("preview", ok);
    expectExit(pv, 0, "preview with a secret sshPrivateKey");
    assert.match(pv.stdout, /\+\s+pulumi-nodejs:dynamic\/nixos:Machine network-m1 create/);
  });

  test("a key's text: in plain network config is refused; config: must name a secret", async () => {
    await refused(stack({}, { token: { text: "hunter2" } }), "preview", "pulumi-nixos:network", "--path 'pulumi-nixos:network.machines.m1.keys.token.text'");
    const viaConfig = stack({ "pulumi-nixos:tokenText": "hunter2" }, { token: { config: "tokenText" } });
    await refused(viaConfig, "preview", "pulumi-nixos:tokenText");
    const ok = stack({}, { token: { config: "tokenText" } });
    await setSecret(ok, "pulumi-nixos:tokenText", "hunter2");
    const pv = await engine("preview", ok);
    expectExit(pv, 0, "preview with a secret key text");
    assert.match(pv.stdout, /\+\s+pulumi-nodejs:dynamic\/nixos:DeploymentKey network-m1-token create/);
  });

  test("pulumi-nixos:vaultToken as plain text is refused", async () => {
    await refused(stack({ "pulumi-nixos:vaultToken": "s.plain" }, { v: { vault: { path: "app/", field: "token" } } }), "preview", "pulumi-nixos:vaultToken");
  });
});
