/**
 * Issue 17: a NixOps user's network.nix, unchanged, is a stack (`networkNix`). Evaluation against
 * the stand-in nixpkgs (real nix-instantiate), then the seed's network deployed to five lab hosts
 * through the stack program, keys read from the test Vault at deploy time, and the Vault's secret
 * strings searched for in the whole store afterwards.
 */
import "./helpers/env";
import { describe, test, after } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "fs";
import { spawnSync } from "child_process";
import * as path from "path";
import YAML from "yaml";
import { canRunLab, tempDir, ROOT, STANDIN_NIXPKGS } from "./helpers/env";
import { engine, expectExit, stateResources, StackRef } from "./helpers/engine";
import { THEDRONEELY_SECRETS, nixopsNetworkNixBed } from "./examples/lab-bed";
import { evaluateNetworkNix, nixKeySource, resolveKeyText, splitRefs, unsupportedProblems } from "../provider/network/network-nix";
import { networkToplevelExpr } from "../provider/nix/network-expr";
import { run } from "../provider/util/run";

const EXAMPLE = path.join(ROOT, "examples/nixops-network-nix");
const NIXPKGS = [`nixpkgs=${STANDIN_NIXPKGS}`];
const SEED_MACHINES = ["heron", "talon", "tiger", "hound", "pigeon"];
const tmps: string[] = [];
after(() => { for (const t of tmps) fs.rmSync(t, { recursive: true, force: true }); });

/** Writes files into a fresh temp dir; returns its path. */
function network(files: Record<string, string>): string {
  const dir = tempDir("netnix");
  tmps.push(dir);
  for (const [f, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, f)), { recursive: true });
    fs.writeFileSync(path.join(dir, f), text);
  }
  return dir;
}

/** Builds a machine's toplevel from the network (what Machine evaluates) and returns its path. */
async function buildMachine(files: string[], machine: string, extra: { args?: Record<string, unknown> } = {}): Promise<string> {
  const r = await run(["nix-build", "--no-out-link", ...NIXPKGS.flatMap((e) => ["-I", e]), "-E", networkToplevelExpr({ files, ...extra }, machine)]);
  return r.stdout.trim();
}

describe("networkNix evaluation (stand-in nixpkgs)", () => {
  test("the seed's network.nix, unchanged: five machines with their targetHosts, tags, and keys as Vault references", () => {
    const info = evaluateNetworkNix({ files: [path.join(EXAMPLE, "network.nix")] }, NIXPKGS);
    assert.deepEqual(Object.keys(info.machines).sort(), [...SEED_MACHINES].sort());
    for (const m of SEED_MACHINES) {
      const d = info.machines[m];
      assert.equal(d.targetHost, `${m}.local`);
      assert.equal(d.targetPort, 22);
      assert.equal(d.targetUser, "root");
      assert.equal(d.targetEnv, "none");
      assert.deepEqual(Object.keys(d.keys).sort(), ["thedroneely_cockpit_api_token", "thedroneely_pgsql_database_password", "thedroneely_ssh_known_hosts"]);
      const pg = d.keys.thedroneely_pgsql_database_password;
      assert.deepEqual([pg.user, pg.group, pg.permissions, pg.destDir], ["thedroneely", "postgres", "0640", "/run/keys"]);
      // "${builtins.extraBuiltins.vault …}" is a reference that survived the interpolation: a vault source.
      const src = nixKeySource(m, pg, () => { throw new Error("no Vault read for a vault source"); });
      assert.deepEqual(src.vault, { path: "thedroneely/", field: "pgsql_database_password" });
      assert.equal(src.text, undefined);
    }
    assert.deepEqual(info.machines.heron.tags, ["web"]);
    assert.deepEqual(info.machines.pigeon.tags, ["mail"]);
    assert.equal(info.network.description, "nixos");
    assert.equal(info.network.enableRollback, true);
    assert.deepEqual(unsupportedProblems(info), []);
    // Nothing of the Vault's values could be there: the evaluation never asked it.
    for (const s of Object.values(THEDRONEELY_SECRETS)) assert.ok(!JSON.stringify(info).includes(s));
  });

  test("machines as a function and as an attribute set; nodes cross-references; defaults merged; two files merged; args", async () => {
    const dir = network({
      "a.nix": `{ domain ? "lab" }: {
        network.description = "two files";
        defaults = { config, name, ... }: { environment.etc."from-defaults".text = "default for \${name}"; deployment.targetPort = 2222; };
        alpha = { deployment.targetHost = "alpha.\${domain}"; networking.hostName = "alpha"; };
        beta = { config, lib, nodes, name, resources, ... }: {
          deployment.targetHost = "beta.\${domain}";
          deployment.keys.peer-file.keyFile = ./peer-secret;
          environment.etc."peer".text = "\${name} sees \${nodes.alpha.config.networking.hostName} at \${nodes.alpha.config.deployment.targetHost}, \${toString (builtins.length (builtins.attrNames resources.machines))} machines";
        };
      }`,
      "b.nix": `{
        alpha = { lib, ... }: { environment.etc."second-file".text = "from b.nix"; deployment.targetUser = "deployer"; };
        gamma = { deployment.targetHost = "10.0.0.3"; deployment.keys.cmd.keyCommand = [ "echo" "x" ]; };
      }`,
    });
    const files = [path.join(dir, "a.nix"), path.join(dir, "b.nix")];
    const info = evaluateNetworkNix({ files, args: { domain: "example.org" } }, NIXPKGS);
    assert.deepEqual(Object.keys(info.machines).sort(), ["alpha", "beta", "gamma"]);
    assert.equal(info.machines.alpha.targetHost, "alpha.example.org");
    assert.equal(info.machines.alpha.targetUser, "deployer", "b.nix's definition of alpha merged with a.nix's");
    assert.equal(info.machines.beta.targetPort, 2222, "defaults apply to every machine");
    assert.equal(info.machines.gamma.targetPort, 2222);
    assert.equal(info.network.description, "two files");
    assert.deepEqual(nixKeySource("beta", info.machines.beta.keys["peer-file"], () => { throw new Error("unused"); }), { file: path.join(dir, "peer-secret") });
    assert.deepEqual(nixKeySource("gamma", info.machines.gamma.keys.cmd, () => { throw new Error("unused"); }), { command: ["echo", "x"] });

    const beta = await buildMachine(files, "beta", { args: { domain: "example.org" } });
    assert.equal(fs.readFileSync(path.join(beta, "etc/peer"), "utf8"), "beta sees alpha at alpha.example.org, 3 machines");
    assert.equal(fs.readFileSync(path.join(beta, "etc/from-defaults"), "utf8"), "default for beta");
    assert.match(path.basename(beta), /-nixos-system-beta-/, "networking.hostName defaults to the machine's name");
    const alpha = await buildMachine(files, "alpha", { args: { domain: "example.org" } });
    assert.equal(fs.readFileSync(path.join(alpha, "etc/second-file"), "utf8"), "from b.nix");
  });

  test("unsupported resources.* and a targetEnv other than none are named, not ignored", () => {
    const dir = network({
      "network.nix": `{
        resources.sshKeyPairs.deploy-key = { };
        resources.ec2KeyPairs.my-pair = { region = "eu-west-1"; };
        web = { deployment.targetEnv = "ec2"; deployment.ec2.region = "eu-west-1"; };
        ok = { deployment.targetHost = "10.0.0.1"; };
      }`,
    });
    const problems = unsupportedProblems(evaluateNetworkNix({ files: [path.join(dir, "network.nix")] }, NIXPKGS));
    assert.ok(problems.some((p) => p.startsWith("resources.sshKeyPairs.deploy-key: NixOps resources are not supported")), problems.join("\n"));
    assert.ok(problems.some((p) => p.startsWith("resources.ec2KeyPairs.my-pair:")), problems.join("\n"));
    assert.ok(problems.some((p) => p.startsWith('web: deployment.targetEnv = "ec2" is not supported')), problems.join("\n"));
    assert.ok(problems.some((p) => p.startsWith("web: deployment.ec2 is not supported")), problems.join("\n"));
    assert.ok(!problems.some((p) => p.startsWith("ok:")), problems.join("\n"));
  });

  test("a syntax error names the file and the line", () => {
    const dir = network({
      "network.nix": `{\n  heron = { imports = [ ./heron.nix ]; deployment.targetHost = "heron.local"; };\n}\n`,
      "heron.nix": `{ config, ... }: {\n  networking.hostName = "heron";\n  environment.etc.x.text = "missing semicolon"\n}\n`,
    });
    assert.throws(() => evaluateNetworkNix({ files: [path.join(dir, "network.nix")] }, NIXPKGS), (e: Error) => {
      assert.match(e.message, /^networkNix .*network\.nix: evaluation failed:/);
      assert.match(e.message, /syntax error/);
      assert.ok(e.message.includes(`${path.join(dir, "heron.nix")}:4`), e.message);
      return true;
    });
  });

  test("other extra builtins: the user's extra-builtins file's exec commands run at deploy time, mixed text assembled", async () => {
    const dir = network({
      "network.nix": `{ m = { deployment.targetHost = "10.0.0.1"; deployment.keys.k.text = "user=app\\npass=\${builtins.extraBuiltins.pass "db/app"}\\n"; }; }`,
      "extra-builtins.nix": `{ exec, ... }: { pass = name: exec [ ./wrappers/pass name ]; }`,
      "wrappers/pass": `#!/bin/sh\nprintf '"%s \\\\"quoted\\\\""' "secret-of-$1"\n`,
    });
    fs.chmodSync(path.join(dir, "wrappers/pass"), 0o755);
    const info = evaluateNetworkNix({ files: [path.join(dir, "network.nix")], extraBuiltinsFile: path.join(dir, "extra-builtins.nix") }, NIXPKGS);
    const text = info.machines.m.keys.k.text!;
    assert.ok(!text.includes("secret-of"), "the command did not run at evaluation");
    const parts = splitRefs(text);
    assert.deepEqual(parts[1], { kind: "exec", value: [path.join(dir, "wrappers/pass"), "db/app"] });
    assert.equal(await resolveKeyText("m/k", parts, {}), 'user=app\npass=secret-of-db/app "quoted"\n');
  });
});

/** A stack of the repo's program (stacks/index.ts) whose network is `files`, evaluated with the stand-in. */
function nixStack(dir: string, files: string[]): StackRef {
  fs.writeFileSync(path.join(dir, "Pulumi.yaml"), `name: netnix\nruntime:\n  name: nodejs\n  options:\n    typescript: true\nmain: ${path.join(ROOT, "stacks/index.ts")}\n`);
  // A throwaway key: preview checks that the machines have one, and contacts no host.
  const r = spawnSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", path.join(dir, "id")]);
  assert.equal(r.status, 0, String(r.stderr));
  fs.writeFileSync(path.join(dir, "Pulumi.t.yaml"), YAML.stringify({ config: {
    "pulumi-nixos:networkNix": files, "pulumi-nixos:nixPath": NIXPKGS, "pulumi-nixos:sshPrivateKeyFile": "./id",
  } }));
  return { cwd: dir, stack: "t", state: path.join(dir, "t.state.json") };
}

describe("networkNix through the stack program (preview, no host contacted)", () => {
  test("unsupported resources and targetEnv fail the program with an error naming each", async () => {
    const dir = network({ "network.nix": `{ resources.sshKeyPairs.kp = { }; web = { deployment.targetEnv = "virtualbox"; }; db = { deployment.targetHost = "10.0.0.9"; }; }` });
    const pv = await engine("preview", nixStack(dir, ["./network.nix"]));
    expectExit(pv, 1, "preview");
    const out = pv.stdout + pv.stderr;
    assert.match(out, /networkNix \S+network\.nix: not supported here:/);
    assert.match(out, /resources\.sshKeyPairs\.kp: NixOps resources are not supported/);
    assert.match(out, /web: deployment\.targetEnv = "virtualbox" is not supported/);
    assert.doesNotMatch(out, /nixos:\w+ network-(web|db)\S* create/);
  });

  test("a machine whose system does not evaluate: the run fails naming it, and no key goes to any host", async () => {
    // Deployment data evaluates (the throw is only in the system); 10.0.0.9 is no lab host: a key
    // upload would fail with a connection error instead.
    const dir = network({ "network.nix": `{ db = { deployment.targetHost = "10.0.0.9"; deployment.keys.pw.keyCommand = [ "echo" "pw" ]; environment.etc.broken.text = throw "db's system is broken"; }; }` });
    const up = await engine("up", nixStack(dir, ["./network.nix"]));
    expectExit(up, 1, "up");
    const out = up.stdout + up.stderr;
    assert.match(out, /db's system is broken/);
    assert.doesNotMatch(out, /10\.0\.0\.9/, "no connection was attempted");
    assert.deepEqual(Object.keys(stateResources(path.join(dir, "t.state.json"))).filter((k) => k.includes("db")), []);
  });

  test("a literal key text becomes a Pulumi secret, with a warning that it sat in a Nix file", async () => {
    const dir = network({ "network.nix": `{ db = { deployment.targetHost = "10.0.0.9"; deployment.keys.pw = { text = "literal-pw-in-nix"; user = "postgres"; }; }; }` });
    const pv = await engine("preview", nixStack(dir, ["./network.nix"]));
    expectExit(pv, 0, "preview");
    assert.match(pv.stdout, /\+\s+pulumi-nodejs:dynamic\/nixos:Machine network-db create/);
    assert.match(pv.stdout, /\+\s+pulumi-nodejs:dynamic\/nixos:DeploymentKey network-db-pw create/);
    assert.match(pv.stdout + pv.stderr, /db\/pw: deployment\.keys\.pw\.text is written in a Nix file; it is kept as a Pulumi secret/);
    assert.ok(!(pv.stdout + pv.stderr).includes("literal-pw-in-nix"), "the text is not printed");
  });
});

/** The seed's network on lab hosts heron…pigeon through the stack program, keys from the test Vault. */
describe("networkNix deployed to the lab", { skip: canRunLab ? false : "the lab needs root on Linux" }, () => {
  test("the seed's network.nix, unchanged, deploys: systems, nodes cross-reference, Vault keys at deploy time, nothing secret in the store", async () => {
    const tmp = tempDir("netnix-lab");
    tmps.push(tmp);
    const bed = await nixopsNetworkNixBed(tmp);
    const { lab, stack } = bed;
    const vault = bed.vault!;
    try {
      const env = { ...process.env, VAULT_TOKEN: "s.thedroneely" };

      const pv = await engine("preview", stack, [], env);
      expectExit(pv, 0, "preview");
      for (const m of SEED_MACHINES) {
        assert.match(pv.stdout, new RegExp(`\\+\\s+pulumi-nodejs:dynamic/nixos:Machine network-${m} create`));
        assert.match(pv.stdout, new RegExp(`\\+\\s+pulumi-nodejs:dynamic/nixos:DeploymentKey network-${m}-thedroneely_pgsql_database_password create`));
        assert.match(pv.stdout, new RegExp(`\\+\\s+pulumi-nodejs:dynamic/nixos:ChannelPin network-${m}-channel create`));
      }

      const up = await engine("up", stack, [], env);
      expectExit(up, 0, "up");
      const st = stateResources(stack.state);
      for (const m of SEED_MACHINES) {
        assert.equal((await lab.exec(m, ["readlink", "/run/current-system"])).stdout.trim(), st[m].outputs.systemPath, m);
        assert.equal((await lab.exec(m, ["cat", "/etc/role"])).stdout, `${m}\n`);
        assert.deepEqual(st[m].outputs.tags, { heron: ["web"], talon: ["web"], tiger: ["db"], hound: ["db"], pigeon: ["mail"] }[m]);
        // The keys, read from the Vault at deploy time, with the seed's owners and modes.
        const ls = (await lab.exec(m, ["sh", "-c", "cd /run/keys && for f in thedroneely_*; do echo \"$f $(stat -c '%U %G %a' $f) $(cat $f)\"; done"])).stdout.trim().split("\n");
        assert.deepEqual(ls, [
          `thedroneely_cockpit_api_token thedroneely root 600 ${THEDRONEELY_SECRETS.cockpit_api_token}`,
          `thedroneely_pgsql_database_password thedroneely postgres 640 ${THEDRONEELY_SECRETS.pgsql_database_password}`,
          `thedroneely_ssh_known_hosts thedroneely root 600 ${THEDRONEELY_SECRETS.ssh_known_hosts}`,
        ], m);
        assert.ok(st[`${m}/thedroneely_cockpit_api_token`].inputs.content.ciphertext, `${m}: key content is a secret in state`);
        // The host's channel follows the pin.
        assert.equal(st[`${m}/channel`].outputs.nixpkgsVersion, "24.05.7376");
      }
      assert.ok(vault.requests.length >= 15 && vault.requests.every((r) => r.token === "s.thedroneely"), "keys read from the Vault with the token in a header");
      // nodes.<name>.config: pigeon's relay file names heron and talon at their deployment.targetHost.
      assert.equal((await lab.exec("pigeon", ["cat", "/etc/relay-peers"])).stdout, "heron heron.local\ntalon talon.local\n");
      assert.equal((await lab.exec("heron", ["cat", "/etc/nixos-channel"])).stdout, "https://nixos.org/channels/nixos-24.05\n");

      const again = await engine("up", stack, [], env);
      expectExit(again, 0, "second up");
      assert.match(again.stdout, /unchanged/);
      assert.doesNotMatch(again.stdout, /dynamic\/nixos:\w+ \S+ update/);

      // The Vault's secret strings: nowhere in the operator's store, the state file or the run output.
      const secrets = Object.values(THEDRONEELY_SECRETS);
      const grep = await run(["grep", "-rlF", ...secrets.flatMap((s) => ["-e", s]), "/nix/store"], { allowFailure: true, timeoutMs: 300_000 });
      assert.equal(grep.code, 1, `secret found in the store: ${grep.stdout}${grep.stderr}`);
      const stateText = fs.readFileSync(stack.state, "utf8");
      for (const s of secrets) {
        assert.ok(!stateText.includes(s), "secret in clear text in state");
        assert.ok(!up.stdout.includes(s) && !up.stderr.includes(s), "secret in the run's output");
      }

      expectExit(await engine("destroy", stack, [], env), 0, "destroy");
      assert.deepEqual(Object.values(stateResources(stack.state)).filter((r) => r.type.startsWith("pulumi-nodejs:dynamic")), []);
    } finally {
      await bed.stop();
    }
  });
});
