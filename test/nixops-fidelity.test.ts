/**
 * Issue 26: a NixOps network evaluates as it did under NixOps (NixOS/nixops master and v1.7), on
 * the real module system: what import-nixops carries from the state NixOps itself wrote
 * (../shared/nixops-state/deployments.nixops, copied) — the deployment's UUID and name, each
 * machine's recorded stateVersion —, NixOps 2's `network.storage`/`lock`/`nixpkgs` (a second
 * stand-in nixpkgs), NixOps's `networking.*IPv4` and 1.7 options, string keys, `<attr>-key` units.
 * Previews contact no host (the recorded *.local hosts are overridden with lab-subnet addresses,
 * and a preview dials nothing); one systemd lab host runs a network's system and its key's unit.
 */
import "./helpers/env";
import { describe, test, after } from "node:test";
import * as assert from "node:assert/strict";
import * as crypto from "crypto";
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import YAML from "yaml";
import { canRunLab, tempDir, ROOT, STANDIN_NIXPKGS } from "./helpers/env";
import { Lab } from "../provider/lab/lab";
import { engine, expectExit, StackRef } from "./helpers/engine";
import { evaluateNetworkNix, networkNotes, unsupportedProblems } from "../provider/network/network-nix";
import { networkExpr } from "../provider/nix/network-expr";
import { stackDeploymentUuid, uuidV5 } from "../provider/nixops/deployment-id";
import { run } from "../provider/util/run";
import { fetchPin } from "../provider/pins/pin";
import { startChannelServer } from "./channels/server";

const SHARED_STATE = path.resolve(ROOT, "../shared/nixops-state/deployments.nixops");
const CLI = path.join(ROOT, "bin/pulumi-nixos.js");
const NIXPKGS = [`nixpkgs=${STANDIN_NIXPKGS}`];
const MACHINES = ["heron", "talon", "tiger", "hound", "pigeon"];
/** What NixOps recorded (see ../shared/nixops-state/README.md). */
const NIXOS_UUID = "10d7070e-ef98-11f1-8393-02fc00000001";
const STATE_VERSIONS = { heron: "20.03", talon: "20.03", tiger: "20.09", hound: "20.09", pigeon: "20.09" };
const tmps: string[] = [];
after(() => { for (const t of tmps) fs.rmSync(t, { recursive: true, force: true }); });

function dirWith(files: Record<string, string>): string {
  const dir = tempDir("nixops-fid");
  tmps.push(dir);
  for (const [f, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, f)), { recursive: true });
    fs.writeFileSync(path.join(dir, f), text);
  }
  return dir;
}

const sha256 = (f: string) => crypto.createHash("sha256").update(fs.readFileSync(f)).digest("hex");

async function evalJson(expr: string, nixPath: string): Promise<unknown> {
  const r = await run(["nix-instantiate", "--eval", "--strict", "--json", "-E", expr], { env: { ...process.env, NIX_PATH: nixPath }, allowFailure: true, timeoutMs: 120_000 });
  if (r.code !== 0) throw new Error(r.stderr);
  return JSON.parse(r.stdout);
}

/**
 * The five machines of the shared deployment, each showing what its modules see: the module
 * arguments `uuid`/`deploymentName`, its stateVersion, NixOps's networking options and a key's path.
 */
const RUN = crypto.randomBytes(6).toString("hex");
const FIVE = `{
  network.description = "nixos";
  defaults = { config, uuid, deploymentName, name, ... }: {
    networking.privateIPv4 = "10.1.0.1";
    environment.etc."run".text = "${RUN}";
    environment.etc."nixops-ids".text = "\${uuid} \${deploymentName} \${config.deployment.uuid} \${config.system.stateVersion}";
  };
${MACHINES.map((m) => `  ${m} = { deployment.targetHost = "${m}.local"; };`).join("\n")}
}
`;

describe("import-nixops from the state NixOps wrote (shared file, copied)", () => {
  test("writes the deployment's UUID and name and each machine's stateVersion; the stack program evaluates with them", async () => {
    const dir = dirWith({ "network.nix": FIVE });
    const state = path.join(dir, "deployments.nixops");
    fs.copyFileSync(SHARED_STATE, state);
    const before = sha256(state);
    const prog = path.join(dir, "prog");
    fs.mkdirSync(prog);
    fs.writeFileSync(path.join(prog, "Pulumi.yaml"), `name: imported\nruntime:\n  name: nodejs\n  options:\n    typescript: true\nmain: ${path.join(ROOT, "stacks/index.ts")}\n`);
    const r = await run([process.execPath, CLI, "import-nixops", "--state", state, "-d", "nixos", "--stack", "nixos", "--cwd", prog, "--known-hosts", path.join(dir, "none")],
      { allowFailure: true, timeoutMs: 120_000 });
    assert.equal(r.code, 0, r.stderr);
    const stackFile = path.join(prog, "Pulumi.nixos.yaml");
    const doc = YAML.parseDocument(fs.readFileSync(stackFile, "utf8"));
    const cfg = (k: string) => (doc.toJS().config as Record<string, unknown>)[`pulumi-nixos:${k}`];
    assert.equal(cfg("deploymentUuid"), NIXOS_UUID);
    assert.equal(cfg("deploymentName"), "nixos");
    assert.deepEqual(cfg("stateVersions"), STATE_VERSIONS);
    assert.equal(cfg("networkNix"), "/nixos/configuration.nix", "NixOps's network file, as recorded");
    assert.equal(sha256(state), before, "the copy of the state file is only read");

    // staging: another UUID and name; its heron recorded no stateVersion (nothing written).
    const st = await run([process.execPath, CLI, "import-nixops", "--state", state, "-d", "staging", "--stack", "staging", "--cwd", prog, "--known-hosts", path.join(dir, "none")],
      { allowFailure: true, timeoutMs: 120_000 });
    assert.equal(st.code, 0, st.stderr);
    const staging = YAML.parse(fs.readFileSync(path.join(prog, "Pulumi.staging.yaml"), "utf8")).config;
    assert.equal(staging["pulumi-nixos:deploymentUuid"], "10e45468-ef98-11f1-8393-02fc00000001");
    assert.equal(staging["pulumi-nixos:deploymentName"], "staging");
    assert.equal(staging["pulumi-nixos:stateVersions"], undefined);

    // The operator supplies the network files (here: /nixos/configuration.nix's stand-in) and
    // lab-subnet addresses for the recorded *.local hosts; the evaluation the stack program makes
    // of them carries NixOps's identity and stateVersions.
    doc.setIn(["config", "pulumi-nixos:networkNix"], path.join(dir, "network.nix"));
    doc.setIn(["config", "pulumi-nixos:nixPath"], NIXPKGS);
    doc.setIn(["config", "pulumi-nixos:hosts"], Object.fromEntries(MACHINES.map((m, i) => [m, `10.231.99.${i + 2}`])));
    fs.writeFileSync(stackFile, doc.toString());
    // What the machines evaluate to with the imported values, and without them (as before this
    // issue: uuid "", the pin's stateVersion): --eval is read-only, so neither .drv is written here.
    const src = {
      files: [path.join(dir, "network.nix")], uuid: cfg("deploymentUuid") as string, deploymentName: cfg("deploymentName") as string,
      stateVersions: cfg("stateVersions") as Record<string, string>, rootAuthorizedKeys: cfg("rootAuthorizedKeys") as Record<string, string[]>,
    };
    const ids = await evalJson(`builtins.mapAttrs (n: m: m.config.environment.etc."nixops-ids".text) ${networkExpr(src)}.nodes`, NIXPKGS[0]);
    assert.deepEqual(ids, Object.fromEntries(MACHINES.map((m) => [m, `${NIXOS_UUID} nixos ${NIXOS_UUID} ${STATE_VERSIONS[m as keyof typeof STATE_VERSIONS]}`])));
    const drvs = (s: object) => evalJson(`builtins.mapAttrs (n: m: m.config.system.build.toplevel.drvPath) ${networkExpr({ ...src, ...s })}.nodes`, NIXPKGS[0]) as Promise<Record<string, string>>;
    const expected = await drvs({});
    const without = await drvs({ uuid: undefined, deploymentName: undefined, stateVersions: undefined });
    for (const m of MACHINES) assert.equal(fs.existsSync(expected[m]), false, `${m}: this run's system is new`);
    // The stack program evaluates every machine at program time (writing its .drv): the imported
    // UUID, name and stateVersions reached each machine's modules.
    const pv = await engine("preview", { cwd: prog, stack: "nixos", state: path.join(prog, "nixos.state.json") });
    expectExit(pv, 0, "preview");
    for (const m of MACHINES) assert.match(pv.stdout, new RegExp(`\\+\\s+pulumi-nodejs:dynamic/nixos:Machine network-${m} create`));
    assert.doesNotMatch(pv.stdout + pv.stderr, /\.local/, "no recorded host named");
    for (const m of MACHINES) {
      assert.equal(fs.existsSync(expected[m]), true, `${m}: the preview evaluated ${expected[m]}`);
      assert.equal(fs.existsSync(without[m]), false, `${m}: not the system without NixOps's values`);
    }
  });
});

/** The .drv of a machine's system, evaluated read-only (nothing written). */
async function machineDrv(src: Parameters<typeof networkExpr>[0], machine: string, nixPath: string): Promise<string> {
  return await evalJson(`${networkExpr(src)}.nodes.${machine}.config.system.build.toplevel.drvPath`, nixPath) as string;
}

describe("NixOps 2 networks and NixOps's options (real module system)", () => {
  test("network.storage.legacy and network.lock are accepted with a note; network.nixpkgs evaluates the network and wins over the pin", async () => {
    const second = path.join(dirWith({}), "second-nixpkgs");
    fs.cpSync(STANDIN_NIXPKGS, second, { recursive: true });
    fs.writeFileSync(path.join(second, ".version"), "20.09.4242.second\n");
    const dir = dirWith({
      "network.nix": `{
        network.description = "nixops 2";
        network.storage.legacy = { };
        network.lock.json = { };
        network.nixpkgs = import ${second} { };
        db = { config, ... }: { deployment.targetHost = "10.231.99.9"; environment.etc.release.text = config.system.nixos.version; };
      }`,
    });
    const files = [path.join(dir, "network.nix")];
    // Evaluated with the stand-in as <nixpkgs> (what pulumi-nixos:pin gives): the network's own wins.
    const info = evaluateNetworkNix({ files }, NIXPKGS);
    assert.equal(info.network.nixpkgs, second);
    assert.deepEqual([info.network.storage, info.network.lock], [["legacy"], ["json"]]);
    assert.deepEqual(unsupportedProblems(info), []);
    assert.deepEqual(networkNotes(info, "nixos"), [
      "network.storage.legacy is ignored: the stack's Pulumi backend holds the deployment's state",
      "network.lock.json is ignored: the stack's Pulumi backend locks the deployment during a run",
      `network.nixpkgs (${second}) evaluates the network, as NixOps 2 does; pin nixos gives <nixpkgs> and each host's channel`,
    ]);
    const v = await evalJson(`${networkExpr({ files })}.nodes.db.config.environment.etc.release.text`, NIXPKGS[0]);
    assert.equal(v, "20.09.4242.second");
    // No NIX_PATH at all: the network brings its nixpkgs.
    assert.equal(await evalJson(`${networkExpr({ files })}.nodes.db.config.environment.etc.release.text`, ""), "20.09.4242.second");
    // Two storage backends: refused, as NixOps 2 refuses them.
    const two = dirWith({ "network.nix": `{ network.storage = { legacy = { }; memory = { }; }; m = { deployment.targetHost = "10.231.99.9"; }; }` });
    assert.deepEqual(unsupportedProblems(evaluateNetworkNix({ files: [path.join(two, "network.nix")] }, NIXPKGS)),
      ["network.storage: only one storage backend (got legacy, memory; NixOps 2 refuses this too)"]);
  });

  test("through the stack program: network.nixpkgs evaluates each machine; <nixpkgs> and the host's channel still follow pulumi-nixos:pin", async () => {
    const second = path.join(dirWith({}), "second-nixpkgs");
    fs.cpSync(STANDIN_NIXPKGS, second, { recursive: true });
    fs.writeFileSync(path.join(second, ".version"), "20.09.4242.second\n");
    const dir = dirWith({
      "network.nix": `{ network.storage.legacy = { }; network.nixpkgs = import ${second} { };
        db = { deployment.targetHost = "10.231.99.9"; environment.etc.run.text = "${RUN}";
          environment.etc.angle.text = builtins.readFile <nixpkgs/.version>; }; }`,
    });
    fs.writeFileSync(path.join(dir, "Pulumi.yaml"), `name: netnix2\nruntime:\n  name: nodejs\n  options:\n    typescript: true\nmain: ${path.join(ROOT, "stacks/index.ts")}\n`);
    const r = spawnSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", path.join(dir, "id")]);
    assert.equal(r.status, 0, String(r.stderr));
    // The pin: a stand-in channel served on loopback.
    const ch = await startChannelServer(path.join(dir, "channels"), "127.0.0.1", ["24.05.9"]);
    try {
      const pin = { url: ch.channels["24.05.9"].url, sha256: ch.channels["24.05.9"].sha256 };
      fs.writeFileSync(path.join(dir, "Pulumi.t.yaml"), YAML.stringify({ config: {
        "pulumi-nixos:networkNix": "./network.nix", "pulumi-nixos:sshPrivateKeyFile": "./id",
        "pulumi-nixos:pins": { nixos: pin }, "pulumi-nixos:pin": "nixos",
      } }));
      // Async: the channel server answers from this process.
      const pinned = await fetchPin("test pin", pin);
      const drv = await machineDrv({ files: [path.join(dir, "network.nix")], uuid: stackDeploymentUuid("netnix2", "t"), deploymentName: "t" }, "db", `nixpkgs=${pinned}`);
      assert.match(drv, /-nixos-system-db-20\.09\.4242\.second\.drv$/, "the system is the second nixpkgs' (it wins over the pin)");
      assert.equal(fs.existsSync(drv), false, "this run's system is new");
      const stack: StackRef = { cwd: dir, stack: "t", state: path.join(dir, "t.state.json") };
      const pv = await engine("preview", stack);
      expectExit(pv, 0, "preview");
      const out = pv.stdout + pv.stderr;
      assert.match(out, /network\.storage\.legacy is ignored: the stack's Pulumi backend holds the deployment's state/);
      assert.match(out, /network\.nixpkgs \(\S+second-nixpkgs\) evaluates the network, as NixOps 2 does; pin nixos gives <nixpkgs> and each host's channel/);
      assert.match(pv.stdout, /\+\s+pulumi-nodejs:dynamic\/nixos:Machine network-db create/);
      assert.match(pv.stdout, /\+\s+pulumi-nodejs:dynamic\/nixos:ChannelPin network-db-channel create/, "the host's channel comes from the pin");
      // The stack program evaluated exactly that system (second nixpkgs, <nixpkgs> = the pin).
      assert.equal(fs.existsSync(drv), true, `the preview evaluated ${drv}`);
      assert.equal(await evalJson(`${networkExpr({ files: [path.join(dir, "network.nix")] })}.nodes.db.config.environment.etc.angle.text`, `nixpkgs=${pinned}`), "24.05.9\n");

      // Without a pin the network's own nixpkgs pins it (and is <nixpkgs>): no "not pinned" error, no channel.
      fs.writeFileSync(path.join(dir, "Pulumi.t.yaml"), YAML.stringify({ config: { "pulumi-nixos:networkNix": "./network.nix", "pulumi-nixos:sshPrivateKeyFile": "./id" } }));
      const own = await engine("preview", stack);
      expectExit(own, 0, "preview without a pin");
      assert.doesNotMatch(own.stdout, /ChannelPin/);
      const ownDrv = await machineDrv({ files: [path.join(dir, "network.nix")], uuid: stackDeploymentUuid("netnix2", "t"), deploymentName: "t" }, "db", `nixpkgs=${second}`);
      assert.equal(fs.existsSync(ownDrv), true, `the preview evaluated ${ownDrv} (<nixpkgs> = network.nixpkgs)`);
      // Neither a pin nor network.nixpkgs: refused before anything runs, saying how to pin.
      fs.writeFileSync(path.join(dir, "network.nix"), `{ db = { deployment.targetHost = "10.231.99.9"; }; }`);
      const bare = await engine("preview", stack);
      expectExit(bare, 1, "preview of an unpinned network");
      assert.match(bare.stdout + bare.stderr, /networkNix: not pinned: set pin \(pulumi-nixos:pin, one of pulumi-nixos:pins\), a nixpkgs= entry in nixPath, network\.nixpkgs in the network, or allowUnpinned: true/);
      assert.doesNotMatch(bare.stdout, /Machine network-db create/);
    } finally {
      await ch.close();
    }
  });

  test("NixOps's networking options, string keys, key paths; storeKeysOnMachine false accepted, true refused; unknown deployment.* named", async () => {
    const dir = dirWith({
      "network.nix": `{
        web = { config, nodes, ... }: {
          deployment.targetHost = "10.231.99.2";
          networking.publicIPv4 = "198.51.100.7";
          networking.privateIPv4 = "10.1.0.2";
          deployment.storeKeysOnMachine = false;
          deployment.keys.db = { name = "db-password"; keyCommand = [ "echo" "pw" ]; user = "postgres"; };
          deployment.keys.legacy = "plain text key";
          environment.etc.facts.text = "\${config.networking.publicIPv4} \${config.deployment.keys.db.path} \${toString nodes.web.config.networking.vpnPublicKey}";
        };
        old = { deployment.targetHost = "10.231.99.3"; deployment.storeKeysOnMachine = true; deployment.autoLuks.secret.device = "/dev/xvdf"; deployment.encryptedLinksTo = [ "web" ]; };
      }`,
    });
    const files = [path.join(dir, "network.nix")];
    const info = evaluateNetworkNix({ files }, NIXPKGS);
    assert.deepEqual(info.machines.web.keys.legacy.text, "plain text key", "NixOps's deprecated string form is the key's text");
    assert.equal(info.machines.web.keys.db.name, "db-password");
    const problems = unsupportedProblems(info);
    assert.ok(!problems.some((p) => p.startsWith("web:")), problems.join("\n"));
    assert.ok(problems.some((p) => p.startsWith("old: deployment.storeKeysOnMachine = true is not supported (it put keys in the world-readable Nix store")), problems.join("\n"));
    assert.ok(problems.some((p) => p.startsWith("old: deployment.autoLuks is not supported")), problems.join("\n"));
    assert.ok(problems.some((p) => p.startsWith("old: deployment.encryptedLinksTo is not supported")), problems.join("\n"));
    const c = await evalJson(`let c = ${networkExpr({ files })}.nodes.web.config; in {
      facts = c.environment.etc.facts.text; path = c.deployment.keys.db.path;
      units = builtins.filter (n: builtins.match ".*-key" n != null) (builtins.attrNames c.systemd.services);
      paths = builtins.filter (n: builtins.match ".*-key" n != null) (builtins.attrNames c.systemd.paths);
      watched = c.systemd.paths.db-key.pathConfig.PathExists; }`, NIXPKGS[0]);
    assert.deepEqual(c, {
      facts: "198.51.100.7 /run/keys/db-password ", path: "/run/keys/db-password",
      // Named after the attribute, as NixOps's nix/keys.nix: db-key for the file db-password.
      units: ["db-key", "legacy-key"], paths: ["db-key", "legacy-key"], watched: "/run/keys/db-password",
    });
  });

  test("without an import: the stack's name and a UUID derived from project and stack, the same on every run", async () => {
    assert.equal(uuidV5("www.example.com", "6ba7b810-9dad-11d1-80b4-00c04fd430c8"), "2ed6657d-e927-568b-95e1-2665a8aea6a2", "RFC 4122 v5 (the DNS namespace's example)");
    const a = stackDeploymentUuid("proj", "prod");
    assert.match(a, /^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.equal(stackDeploymentUuid("proj", "prod"), a);
    assert.notEqual(stackDeploymentUuid("proj", "staging"), a);
    assert.notEqual(stackDeploymentUuid("other", "prod"), a);
  });
});

describe("a NixOps network on a systemd lab host", { skip: canRunLab ? false : "the lab needs root on Linux" }, () => {
  test("db-key.service for a key whose file is named otherwise; the host runs the system with NixOps's UUID and stateVersion", async () => {
    const tmp = dirWith({});
    const lab = await Lab.up({ dir: path.join(tmp, "lab"), names: ["db"] });
    try {
      const [h] = await lab.status();
      const uuid = "10d7070e-ef98-11f1-8393-02fc00000001";
      fs.writeFileSync(path.join(tmp, "network.nix"), `{
  network.storage.legacy = { };
  db = { config, uuid, ... }: {
    deployment.targetHost = "db.local";
    deployment.keys.db = { name = "db-password"; keyCommand = [ "printf" "pw-${RUN}" ]; user = "root"; };
    systemd.services.app = {
      wantedBy = [ "multi-user.target" ]; wants = [ "db-key.service" ]; after = [ "db-key.service" ];
      script = "cat \${config.deployment.keys.db.path} > /run/app.out; exec sleep infinity";
    };
    environment.etc.ids.text = "\${uuid} \${config.system.stateVersion}";
  };
}
`);
      fs.writeFileSync(path.join(tmp, "Pulumi.yaml"), `name: fidelity\nruntime:\n  name: nodejs\n  options:\n    typescript: true\nmain: ${path.join(ROOT, "stacks/index.ts")}\n`);
      // What import-nixops writes for the shared deployment (tested above), with the lab's address for db.local.
      fs.writeFileSync(path.join(tmp, "Pulumi.lab.yaml"), YAML.stringify({ config: {
        "pulumi-nixos:networkNix": "./network.nix", "pulumi-nixos:nixPath": NIXPKGS, "pulumi-nixos:sshPrivateKeyFile": lab.privateKeyPath,
        "pulumi-nixos:hosts": { db: h.address }, "pulumi-nixos:hostPublicKeys": { db: h.hostPublicKey },
        "pulumi-nixos:deploymentUuid": uuid, "pulumi-nixos:deploymentName": "nixos", "pulumi-nixos:stateVersions": { db: "20.03" },
      } }));
      const stack: StackRef = { cwd: tmp, stack: "lab", state: path.join(tmp, "lab.state.json") };
      expectExit(await engine("up", stack), 0, "up");
      const ex = async (cmd: string) => (await lab.exec("db", ["sh", "-c", cmd], { allowFailure: true })).stdout.trim();
      assert.equal(await ex("cat /etc/ids"), `${uuid} 20.03`);
      assert.equal(await ex("cat /run/keys/db-password"), `pw-${RUN}`);
      let state = "";
      for (let i = 0; i < 100 && state !== "active active active"; i++) {
        state = (await ex("systemctl is-active db-key.path db-key.service app")).split("\n").join(" ");
        if (state !== "active active active") await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal(state, "active active active", "the key's unit is named after its attribute");
      assert.equal(await ex("systemctl list-unit-files 'db-password-key*' --no-legend | wc -l"), "0", "no unit after the file name");
      assert.equal(await ex("cat /run/app.out"), `pw-${RUN}`, "the service that wants db-key.service found its key");
      expectExit(await engine("destroy", stack), 0, "destroy");
    } finally {
      await lab.down();
    }
  });
});
