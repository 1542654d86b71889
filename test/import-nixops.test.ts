/**
 * Issue 18: `pulumi-nixos import-nixops`. NixOps-schema state files made here (sql.js, NixOps's
 * own DDL; two deployments, `none` machines with per-machine key pairs, toplevel, targetHost),
 * `--list`, `-d` writing the stack file with the keys sealed, errors; then lab hosts brought to
 * "NixOps state" without our `up` (root's authorized key from the fixture, a system set with
 * `nix-env --set` + switch from the same network files) and adopted by the first `up`.
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
import { engine, expectExit, stateResources, StackRef } from "./helpers/engine";
import { run, RunResult } from "../provider/util/run";
import { Lab } from "../provider/lab/lab";
import { networkExpr, networkToplevelExpr } from "../provider/nix/network-expr";

const CLI = path.join(ROOT, "bin/pulumi-nixos.js");
const tmps: string[] = [];
after(() => { for (const t of tmps) fs.rmSync(t, { recursive: true, force: true }); });

// NixOps's schema (nixops/statefile.py, version 3), verbatim.
const SCHEMA = [
  "create table SchemaVersion(version integer not null)",
  "create table Deployments(uuid text primary key)",
  `create table DeploymentAttrs(deployment text not null, name text not null, value text not null,
     primary key(deployment, name), foreign key(deployment) references Deployments(uuid) on delete cascade)`,
  `create table Resources(id integer primary key autoincrement, deployment text not null, name text not null, type text not null,
     foreign key(deployment) references Deployments(uuid) on delete cascade)`,
  `create table ResourceAttrs(machine integer not null, name text not null, value text not null,
     primary key(machine, name), foreign key(machine) references Resources(id) on delete cascade)`,
];

interface FixtureDeployment { uuid: string; attrs: Record<string, string>; resources: { name: string; type: string; attrs: Record<string, string> }[] }

/** Writes a NixOps state file (in WAL mode, as NixOps leaves it) with sql.js. */
async function writeStateFile(file: string, deployments: FixtureDeployment[], version = 3): Promise<void> {
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const SQL = await (require("sql.js") as () => Promise<any>)();
  const db = new SQL.Database();
  for (const s of SCHEMA) db.run(s);
  db.run("insert into SchemaVersion(version) values (?)", [version]);
  for (const d of deployments) {
    db.run("insert into Deployments(uuid) values (?)", [d.uuid]);
    for (const [k, v] of Object.entries(d.attrs)) db.run("insert into DeploymentAttrs(deployment, name, value) values (?, ?, ?)", [d.uuid, k, v]);
    for (const r of d.resources) {
      db.run("insert into Resources(deployment, name, type) values (?, ?, ?)", [d.uuid, r.name, r.type]);
      const id = db.exec("select last_insert_rowid()")[0].values[0][0];
      for (const [k, v] of Object.entries(r.attrs)) db.run("insert into ResourceAttrs(machine, name, value) values (?, ?, ?)", [id, k, v]);
    }
  }
  const bytes = Buffer.from(db.export());
  db.close();
  bytes[18] = 2; bytes[19] = 2; // journal_mode = wal, as NixOps sets it
  fs.writeFileSync(file, bytes, { mode: 0o600 });
}

/** A per-machine key pair as NixOps's `none` backend made it (ed25519, "NixOps client key for NAME"); no file left behind. */
function keyPair(dir: string, name: string): { priv: string; pub: string } {
  const f = path.join(dir, `tmpkey-${name}`);
  const r = spawnSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", `NixOps client key for ${name}`, "-f", f]);
  assert.equal(r.status, 0, String(r.stderr));
  const kp = { priv: fs.readFileSync(f, "utf8"), pub: fs.readFileSync(`${f}.pub`, "utf8").trim() };
  fs.rmSync(f); fs.rmSync(`${f}.pub`);
  return kp;
}

const sha256 = (f: string) => crypto.createHash("sha256").update(fs.readFileSync(f)).digest("hex");
const cli = (args: string[], env?: NodeJS.ProcessEnv): Promise<RunResult> =>
  run([process.execPath, CLI, ...args], { allowFailure: true, timeoutMs: 120_000, ...(env ? { env } : {}) });

/** The fixture: deployment "web" (alpha, beta: none machines + an ssh-keypair resource) and "mail" (one machine). */
async function fixture(dir: string, hosts: Record<string, string>, toplevels: Record<string, string> = {}) {
  const keys = { alpha: keyPair(dir, "alpha"), beta: keyPair(dir, "beta"), relay: keyPair(dir, "relay") };
  const net = path.join(dir, "nixops");
  fs.mkdirSync(net, { recursive: true });
  fs.writeFileSync(path.join(net, "network.nix"), `{ domain ? "lab" }: {
  network.description = "web servers";
  defaults = { name, ... }: { environment.etc."site".text = "\${name}.\${domain}\\n"; };
  alpha = { deployment.targetHost = "${hosts.alpha}"; networking.hostName = "alpha"; };
  beta = { nodes, ... }: { deployment.targetHost = "${hosts.beta}"; environment.etc."upstream".text = nodes.alpha.config.deployment.targetHost; };
}
`);
  fs.writeFileSync(path.join(net, "mail.nix"), `{ relay = { deployment.targetHost = "10.0.0.25"; }; }\n`);
  const file = path.join(dir, "deployments.nixops");
  const machine = (name: "alpha" | "beta") => ({
    name, type: "none",
    attrs: {
      targetHost: hosts[name], "none.sshPrivateKey": keys[name].priv, "none.sshPublicKey": keys[name].pub,
      "none.sshPublicKeyDeployed": "1", vmId: `nixops-5f2e-${name}`, state: "1",
      ...(toplevels[name] ? { toplevel: toplevels[name] } : {}),
    },
  });
  await writeStateFile(file, [
    {
      uuid: "5f2e6b1a-af54-11ea-b171-02422b1a33b6",
      attrs: {
        name: "web", description: "web servers", nixExprs: JSON.stringify([path.join(net, "network.nix")]),
        args: JSON.stringify({ domain: '"example.org"' }), nixPath: JSON.stringify([`nixpkgs=${STANDIN_NIXPKGS}`]), rollbackEnabled: "1",
      },
      resources: [machine("alpha"), machine("beta"), { name: "deploy-key", type: "ssh-keypair", attrs: { privateKey: "x", publicKey: "y" } }],
    },
    {
      uuid: "9a1c0d2e-b000-11ea-8f00-02422b1a33b6",
      attrs: { name: "mail", description: "mail relay", nixExprs: JSON.stringify([path.join(net, "mail.nix")]) },
      resources: [{ name: "relay", type: "none", attrs: { targetHost: "10.0.0.25", "none.sshPrivateKey": keys.relay.priv, "none.sshPublicKey": keys.relay.pub } }],
    },
  ]);
  return { file, net, keys };
}

/** A project dir whose program is the repo's stack program. */
function project(dir: string): string {
  const prog = path.join(dir, "prog");
  fs.mkdirSync(prog, { recursive: true });
  fs.writeFileSync(path.join(prog, "Pulumi.yaml"), `name: imported\nruntime:\n  name: nodejs\n  options:\n    typescript: true\nmain: ${path.join(ROOT, "stacks/index.ts")}\n`);
  return prog;
}

/** Files under dir (recursively) whose content includes any of the strings. */
function filesContaining(dir: string, needles: string[], except: string[] = []): string[] {
  const hits: string[] = [];
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (except.includes(p)) continue;
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) { const c = fs.readFileSync(p, "latin1"); if (needles.some((n) => c.includes(n))) hits.push(p); }
    }
  };
  walk(dir);
  return hits;
}

describe("import-nixops (state files made here)", () => {
  test("--list shows each deployment like `nixops list`; the state file is only read", async () => {
    const dir = tempDir("nixops-list");
    tmps.push(dir);
    const { file } = await fixture(dir, { alpha: "10.0.0.1", beta: "10.0.0.2" });
    const before = sha256(file);
    const r = await cli(["import-nixops", "--list", "--state", file]);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.split("\n");
    const web = lines.find((l) => l.includes("5f2e6b1a-af54-11ea-b171-02422b1a33b6"))!;
    assert.match(web, /\s+web\s+web servers\s+2\s+none\s+/, "plain aligned columns when piped (provider/cli/table.ts)");
    assert.ok(web.includes(path.join(dir, "nixops/network.nix")));
    assert.match(lines.find((l) => l.includes("9a1c0d2e"))!, /\s+mail\s+mail relay\s+1\s+/);
    const j = JSON.parse((await cli(["import-nixops", "--list", "--json"], { ...process.env, NIXOPS_STATE: file })).stdout);
    assert.deepEqual(j.map((d: any) => [d.name, d.machines]), [["web", 2], ["mail", 1]]);
    assert.equal(sha256(file), before, "the state file is unchanged");
  });

  test("-d writes networkNix, args, per-machine keys sealed, host keys from known_hosts (TOFU otherwise), and says what it could not carry over", async () => {
    const dir = tempDir("nixops-import");
    tmps.push(dir);
    const { file, net, keys } = await fixture(dir, { alpha: "10.0.0.1", beta: "10.0.0.2" });
    const before = sha256(file);
    const prog = project(dir);
    // alpha's host key in hashed form (HashKnownHosts yes), beta's absent.
    const salt = crypto.randomBytes(20);
    const hashed = `|1|${salt.toString("base64")}|${crypto.createHmac("sha1", salt).update("10.0.0.1").digest("base64")}`;
    const kh = path.join(dir, "known_hosts");
    fs.writeFileSync(kh, `other.example ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOtherOtherOtherOtherOtherOtherOtherOther\n${hashed} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAlphaAlphaAlphaAlphaAlphaAlphaAlphaAlph\n`);
    const r = await cli(["import-nixops", "--state", file, "-d", "web", "--stack", "nixos", "--cwd", prog, "--known-hosts", kh]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /2 machines: alpha, beta/);
    assert.match(r.stdout, /host keys from known_hosts: alpha/);
    assert.match(r.stdout, /beta: no host key in known_hosts: the first deploy records the key it sees \(trust on first use\)/);
    assert.match(r.stdout, /not carried over:[\s\S]*resource deploy-key \(ssh-keypair\): NixOps resources are not supported/);
    assert.match(r.stdout, /generations: they stay on the hosts/);
    const stackFile = path.join(prog, "Pulumi.nixos.yaml");
    const doc = YAML.parse(fs.readFileSync(stackFile, "utf8"));
    assert.equal(doc.config["pulumi-nixos:networkNix"], path.join(net, "network.nix"));
    assert.deepEqual(doc.config["pulumi-nixos:networkArgsNix"], { domain: '"example.org"' });
    assert.deepEqual(doc.config["pulumi-nixos:nixPath"], [`nixpkgs=${STANDIN_NIXPKGS}`]);
    assert.deepEqual(doc.config["pulumi-nixos:hostPublicKeys"], { alpha: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAlphaAlphaAlphaAlphaAlphaAlphaAlphaAlph" });
    assert.deepEqual(doc.config["pulumi-nixos:rootAuthorizedKeys"], { alpha: [keys.alpha.pub], beta: [keys.beta.pub] });
    for (const m of ["alpha", "beta"]) assert.match(doc.config[`pulumi-nixos:sshPrivateKey.${m}`].secure, /^v1:/);
    assert.match(doc.encryptionsalt, /^v1:/);
    // The private keys: in clear text only in NixOps's own state file, nowhere else we wrote.
    const privs = [keys.alpha.priv, keys.beta.priv, keys.relay.priv].map((k) => k.split("\n")[1]);
    assert.deepEqual(filesContaining(dir, privs, [file]), []);
    assert.ok(!r.stdout.includes(privs[0]) && !r.stderr.includes(privs[0]));
    assert.equal(sha256(file), before, "the state file is unchanged");
    // A second import is refused without --force (the stack already has a network).
    const again = await cli(["import-nixops", "--state", file, "-d", "web", "--stack", "nixos", "--cwd", prog, "--known-hosts", kh]);
    assert.notEqual(again.code, 0);
    assert.match(again.stderr, /already has pulumi-nixos:networkNix \(--force replaces it\)/);
  });

  test("unknown deployment, wrong schema version, a missing file and a file that is not SQLite: clear errors", async () => {
    const dir = tempDir("nixops-errors");
    tmps.push(dir);
    const { file } = await fixture(dir, { alpha: "10.0.0.1", beta: "10.0.0.2" });
    const prog = project(dir);
    const unknown = await cli(["import-nixops", "--state", file, "-d", "webb", "--stack", "x", "--cwd", prog]);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /no deployment 'webb' \(deployments: web \(5f2e6b1a-af54-11ea-b171-02422b1a33b6\), mail \(9a1c0d2e-b000-11ea-8f00-02422b1a33b6\)\)/);
    const old = path.join(dir, "old.nixops");
    await writeStateFile(old, [], 2);
    const v2 = await cli(["import-nixops", "--state", old, "--list"]);
    assert.equal(v2.code, 1);
    assert.match(v2.stderr, /NixOps state schema version 2 is not supported \(pulumi-nixos reads version 3; run any nixops command once to upgrade the file\)/);
    const missing = await cli(["import-nixops", "--state", path.join(dir, "nope.nixops"), "--list"]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /NixOps state file \S+nope\.nixops does not exist/);
    const text = path.join(dir, "text.nixops");
    fs.writeFileSync(text, "not a database\n".repeat(20));
    const notDb = await cli(["import-nixops", "--state", text, "--list"]);
    assert.match(notDb.stderr, /text\.nixops is not a NixOps state file \(not an SQLite database\)/);
    fs.writeFileSync(`${file}-wal`, "pending");
    const wal = await cli(["import-nixops", "--state", file, "--list"]);
    assert.match(wal.stderr, /has changes not yet written back from \S+-wal/);
    assert.equal(fs.existsSync(path.join(prog, "Pulumi.x.yaml")), false, "nothing written on error");
  });
});

describe("import-nixops: adoption on the lab", { skip: canRunLab ? false : "the lab needs root on Linux" }, () => {
  test("hosts in NixOps state: up copies nothing to the host running its system, updates the other, with the imported per-machine keys", async () => {
    const dir = tempDir("nixops-adopt");
    tmps.push(dir);
    const lab = await Lab.up({ dir: path.join(dir, "lab"), names: ["alpha", "beta"] });
    try {
      const hosts = Object.fromEntries((await lab.status()).map((h) => [h.name, h]));
      const { file, net, keys } = await fixture(dir, { alpha: hosts.alpha.address, beta: hosts.beta.address });
      const files = [path.join(net, "network.nix")];
      const physical = { alpha: [keys.alpha.pub], beta: [keys.beta.pub] };
      const nixArgs = { domain: '"example.org"' };
      const build = async (expr: string) => (await run(["nix-build", "--no-out-link", "-I", `nixpkgs=${STANDIN_NIXPKGS}`, "-E", expr])).stdout.trim();
      // "NixOps state": alpha runs what the network evaluates to (with its physical spec); beta an
      // older revision of the network (another domain).
      const alphaSys = await build(networkToplevelExpr({ files, nixArgs, rootAuthorizedKeys: physical }, "alpha"));
      const betaOld = await build(networkToplevelExpr({ files, nixArgs: { domain: '"old.example.org"' }, rootAuthorizedKeys: physical }, "beta"));
      for (const [m, sys] of [["alpha", alphaSys], ["beta", betaOld]] as const) {
        const closure = (await run(["nix-store", "-qR", sys])).stdout.trim().split("\n");
        const nar = spawnSync("nix-store", ["--export", ...closure], { maxBuffer: 1 << 30 });
        assert.equal(nar.status, 0, String(nar.stderr));
        await lab.exec(m, ["nix-store", "--import"], { input: nar.stdout });
        await lab.exec(m, ["sh", "-c", `nix-env -p /nix/var/nix/profiles/system --set ${sys} && ${sys}/bin/switch-to-configuration switch`]);
        // Root's authorized key: NixOps's per-machine key only (the lab's key no longer works).
        await lab.exec(m, ["sh", "-c", "cat > /root/.ssh/authorized_keys"], { input: `${keys[m].pub}\n` });
      }
      await writeToplevels(file, { alpha: alphaSys, beta: betaOld });
      const before = sha256(file);

      const prog = project(dir);
      const kh = path.join(dir, "known_hosts");
      fs.writeFileSync(kh, `${hosts.alpha.address} ${hosts.alpha.hostPublicKey}\n`);
      const imp = await cli(["import-nixops", "--state", file, "-d", "5f2e6b1a-af54-11ea-b171-02422b1a33b6", "--stack", "lab", "--cwd", prog, "--known-hosts", kh]);
      assert.equal(imp.code, 0, imp.stderr);
      // The physical spec is in the evaluation: root keeps NixOps's key on a real NixOS.
      const kept = await run(["nix-instantiate", "--eval", "--strict", "--json", "-I", `nixpkgs=${STANDIN_NIXPKGS}`, "-E",
        `${networkExpr({ files, nixArgs, rootAuthorizedKeys: physical })}.nodes.beta.config.users.users.root.openssh.authorizedKeys.keys`]);
      assert.deepEqual(JSON.parse(kept.stdout), [keys.beta.pub]);

      const stack: StackRef = { cwd: prog, stack: "lab", state: path.join(prog, "lab.state.json") };
      const up = await engine("up", stack);
      expectExit(up, 0, "up");
      const st = stateResources(stack.state);
      assert.equal(st.alpha.outputs.systemPath, alphaSys, "the system NixOps deployed is the one the network evaluates to");
      assert.equal(st.alpha.outputs.bytesCopied, 0, "alpha already runs its system: nothing copied");
      assert.equal(st.alpha.outputs.hostPublicKey, hosts.alpha.hostPublicKey);
      assert.notEqual(st.beta.outputs.systemPath, betaOld);
      assert.ok(st.beta.outputs.bytesCopied > 0, "beta ran something else: updated");
      assert.equal(st.beta.outputs.hostPublicKey, hosts.beta.hostPublicKey, "beta's key recorded at first contact");
      for (const m of ["alpha", "beta"]) {
        assert.equal((await lab.exec(m, ["readlink", "/run/current-system"])).stdout.trim(), st[m].outputs.systemPath, m);
        assert.equal((await lab.exec(m, ["cat", "/root/.ssh/authorized_keys"])).stdout.trim(), keys[m as "alpha" | "beta"].pub, `${m}: NixOps's key still authorized`);
      }
      assert.equal((await lab.exec("beta", ["cat", "/etc/site"])).stdout, "beta.example.org\n");
      // The private keys: sealed in the stack file and in state, in clear text nowhere we wrote.
      const privs = [keys.alpha.priv, keys.beta.priv].map((k) => k.split("\n")[1]);
      assert.deepEqual(filesContaining(dir, privs, [file, path.join(dir, "lab")]), []);
      assert.ok(!up.stdout.includes(privs[0]) && !up.stdout.includes(privs[1]));
      assert.equal(sha256(file), before, "the state file is unchanged");

      expectExit(await engine("destroy", stack), 0, "destroy");
    } finally {
      await lab.down();
    }
  });
});

/** Records each machine's toplevel in the fixture, as `nixops deploy` did. */
async function writeToplevels(file: string, toplevels: Record<string, string>): Promise<void> {
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const SQL = await (require("sql.js") as () => Promise<any>)();
  const bytes = fs.readFileSync(file);
  bytes[18] = 1; bytes[19] = 1;
  const db = new SQL.Database(new Uint8Array(bytes));
  for (const [m, t] of Object.entries(toplevels)) {
    db.run("insert or replace into ResourceAttrs(machine, name, value) select id, 'toplevel', ? from Resources where name = ?", [t, m]);
  }
  const out = Buffer.from(db.export());
  db.close();
  out[18] = 2; out[19] = 2;
  fs.writeFileSync(file, out);
}
