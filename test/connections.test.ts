/**
 * Connections as operators have them (issue 28): a stack per connection form — explicit
 * privateKey, ssh-agent only, a default identity (~/.ssh/id_ed25519), an ~/.ssh/config alias with
 * its IdentityFile, a password — each reaching one host directly and one behind a bastion, with a
 * Machine, a DeploymentKey and a ChannelPin on each: create → record-only update → refresh →
 * an `up` that changes nothing → destroy. Every run has its own HOME and agent (or none): nothing
 * of root's ~/.ssh is read. Handler results also go through the SDK's own Struct.fromJavaScript.
 */
import "./helpers/env";
import { describe, test, before, after } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "fs";
import * as path from "path";
import { spawn } from "child_process";
import * as YAML from "yaml";
import { Lab, LabHostInfo } from "../provider/lab/lab";
import { run } from "../provider/util/run";
import { closeAllSessions } from "../provider/ssh/pool";
import { SshSession } from "../provider/ssh/session";
import { Connection, normalizeConnection } from "../provider/connection";
import { StackState } from "./engine/state";
import { strip } from "./engine/secrets";
import { canRunLab, tempDir, ROOT, STANDIN_NIXPKGS } from "./helpers/env";
import { engine, expectExit, stateResources, StackRef } from "./helpers/engine";
import { nixConfig, writeStack } from "./helpers/stack";
import { startChannelServer, ChannelServer, hostChannel } from "./channels/server";

const skip = canRunLab ? false : "the lab needs root on Linux";
const PASSWORD = "lab-deployer-pw-7";

/** A hop as the test program takes it (test/programs/connections). */
interface Hop { host: string; user?: string; privateKeyFile?: string; passwordFile?: string; perDialTimeout?: number; proxy?: Hop }

/** An ssh-agent of our own (ended by pid in cleanup), holding `keyFile`. */
async function startAgent(dir: string, keyFile: string): Promise<{ sock: string; stop: () => void }> {
  const sock = path.join(dir, "agent.sock");
  const child = spawn("ssh-agent", ["-D", "-a", sock], { stdio: "ignore" });
  for (let i = 0; i < 100 && !fs.existsSync(sock); i++) await new Promise((r) => setTimeout(r, 50));
  await run(["ssh-add", keyFile], { env: { ...process.env, SSH_AUTH_SOCK: sock } });
  return { sock, stop: () => { if (child.exitCode === null) child.kill("SIGTERM"); } };
}

describe("connections as operators have them: agent, default identity, ssh config, password; direct and behind a bastion", { skip }, () => {
  let tmp = "";
  let lab: Lab;
  let hosts: Record<string, LabHostInfo> = {};
  let ch: ChannelServer;
  let agent: { sock: string; stop: () => void } | undefined;
  let labKey = "";

  before(async () => {
    tmp = tempDir("connections");
    lab = await Lab.up({ dir: path.join(tmp, "lab"), names: ["cgate", "cdirect", "chidden"], behind: { chidden: "cgate" } });
    hosts = Object.fromEntries((await lab.status()).map((h) => [h.name, h]));
    labKey = lab.privateKeyPath;
    const gateway = JSON.parse(fs.readFileSync(path.join(tmp, "lab", "lab.json"), "utf8")).hosts.find((h: { name: string }) => h.name === "cgate").gateway;
    ch = await startChannelServer(path.join(tmp, "channels"), gateway, ["24.05.1"]);
    // Password logins for `deployer` (sudo without a password, as the lab sets it up).
    for (const n of Object.keys(hosts)) {
      await lab.exec(n, ["sh", "-c", `echo 'deployer:${PASSWORD}' | chpasswd && printf 'Match User deployer\\n  PasswordAuthentication yes\\n' >> /etc/ssh/sshd_config && kill -HUP "$(cat /run/sshd.pid)"`]);
    }
    agent = await startAgent(tmp, labKey);
  });
  after(async () => {
    agent?.stop();
    await ch?.close();
    await closeAllSessions();
    await lab?.down();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  /** A HOME of its own for one form: `files` under it (paths relative to HOME). */
  const homeWith = (form: string, files: Record<string, string> = {}): string => {
    const home = path.join(tmp, `home-${form}`);
    fs.mkdirSync(path.join(home, ".ssh"), { recursive: true, mode: 0o700 });
    for (const [f, text] of Object.entries(files)) {
      fs.mkdirSync(path.dirname(path.join(home, f)), { recursive: true, mode: 0o700 });
      fs.writeFileSync(path.join(home, f), text, { mode: 0o600 });
    }
    return home;
  };

  /** The environment of one form's runs: its HOME, its agent or none. */
  const envOf = (home: string, withAgent: boolean): NodeJS.ProcessEnv => {
    const env: NodeJS.ProcessEnv = { ...process.env, HOME: home };
    if (withAgent) env.SSH_AUTH_SOCK = agent!.sock; else delete env.SSH_AUTH_SOCK;
    return env;
  };

  /** Writes the stack of one form: `direct` (cdirect) and `behind` (chidden behind cgate). */
  const writeFormStack = (form: string, connections: Record<string, Hop>, extra: Record<string, unknown> = {}): StackRef => {
    const dir = path.join(tmp, `stack-${form}`);
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, "Pulumi.yaml"), `name: connections-test\nruntime: nodejs\nmain: ${path.join(ROOT, "test/programs/connections/index.ts")}\n`);
    const machineConfigs: Record<string, string> = {};
    for (const n of Object.keys(connections)) {
      const f = path.join(dir, `${n}.nix`);
      fs.writeFileSync(f, nixConfig(`${form}-${n}`.replace(/[^a-z0-9-]/g, ""), { paths: 2, sizeKB: 1 }));
      machineConfigs[n] = f;
    }
    const cfg: Record<string, unknown> = {
      "connections-test:connections": connections, "connections-test:machineConfigs": machineConfigs,
      "connections-test:nixpkgs": STANDIN_NIXPKGS, "connections-test:keyText": "key-for-connections",
      "connections-test:pin": { url: ch.channels["24.05.1"].url, sha256: ch.channels["24.05.1"].sha256 }, ...extra,
    };
    fs.writeFileSync(path.join(dir, "Pulumi.t.yaml"), "config:\n" + Object.entries(cfg).map(([k, v]) => `  ${k}: ${JSON.stringify(v)}`).join("\n") + "\n");
    return { cwd: dir, stack: "t", state: path.join(dir, "t.state.json") };
  };

  /** With every hop's perDialTimeout set: a change recorded without touching a host. */
  const withTimeout = (h: Hop, t: number): Hop => ({ ...h, perDialTimeout: t, ...(h.proxy ? { proxy: withTimeout(h.proxy, t) } : {}) });

  const profileOf = async (n: string) => (await lab.exec(n, ["readlink", "/nix/var/nix/profiles/system"])).stdout.trim();
  const keyStat = async (n: string) => (await lab.exec(n, ["stat", "-c", "%a %Y %i", "/run/keys/k"], { allowFailure: true })).stdout.trim();

  /** The whole life of one form's stack, asserting what each step must (and must not) change. */
  async function lifecycle(form: string, connections: Record<string, Hop>, env: NodeJS.ProcessEnv): Promise<void> {
    const s = writeFormStack(form, connections);
    const targets = { direct: "cdirect", behind: "chidden" } as Record<string, string>;
    const up = await engine("up", s, [], env);
    expectExit(up, 0, `${form}: up`);
    let st = stateResources(s.state);
    for (const [n, host] of Object.entries(targets)) {
      const m = st[`m-${n}`].outputs;
      assert.equal(await profileOf(host), `system-${m.generation}-link`, `${form}/${n}: the deployed generation is the profile`);
      assert.equal((await lab.exec(host, ["readlink", "/run/current-system"])).stdout.trim(), m.systemPath, `${form}/${n}: runs the recorded system`);
      assert.equal((await lab.exec(host, ["cat", "/run/keys/k"])).stdout, "key-for-connections");
      assert.match(await hostChannel(lab, host), /24\.05\.1$/, `${form}/${n}: channel pinned`);
      for (const r of [`m-${n}`, `k-${n}`, `ch-${n}`]) {
        const c = st[r].outputs.connection;
        assert.equal(c.hostKey, hosts[host].hostPublicKey, `${form}/${r}: the target's key pinned`);
        if (n === "behind" && !c.jumpHostKeys) assert.equal(c.proxy.hostKey, hosts.cgate.hostPublicKey, `${form}/${r}: the bastion's own key pinned`);
        if (c.jumpHostKeys) assert.deepEqual(c.jumpHostKeys, { [`${hosts.cgate.address}:22`]: hosts.cgate.hostPublicKey }, `${form}/${r}: the ProxyJump bastion's key`);
      }
    }
    // commandConnection: what a remote.Command gets, dialled as it would (ssh2, no ssh config; the
    // agent from the environment when no key is in it), with each hop's pinned key checked.
    const opened = StackState.load(s.state, undefined).all();
    for (const [n, host] of Object.entries(targets)) {
      const m = opened.find((r) => r.urn.endsWith(`::m-${n}`))!;
      const cc = strip(m.outputs.commandConnection as any) as any;
      assert.equal(JSON.stringify(m.outputs.commandConnection).includes("4dabf18193072939515e22adb298388d"), true, `${form}/${n}: commandConnection is a secret`);
      assert.equal(cc.host, n === "direct" ? hosts.cdirect.address : hosts.chidden.address, `${form}/${n}: the address ssh dials (the alias resolved)`);
      assert.deepEqual([st[`m-${n}`].outputs.host, st[`m-${n}`].outputs.port], [cc.host, 22], `${form}/${n}: plain host and port outputs`);
      if (n === "behind") assert.equal(cc.proxy.host, hosts.cgate.address, `${form}/${n}: the bastion as its proxy`);
      // Key material from ~/.ssh never reaches state: with a default identity or an IdentityFile
      // the connection holds no key, and remote.Command (which reads no ~/.ssh) needs an agent.
      const given = connections[n];
      if (!given.privateKeyFile && !given.passwordFile) assert.equal(cc.privateKey, undefined, `${form}/${n}: no key from ~/.ssh in commandConnection`);
      const saved = process.env.SSH_AUTH_SOCK, savedHome = process.env.HOME;
      // An operator's remote.Command with no key in its connection uses their agent: ours holds the lab key.
      if (!given.privateKeyFile && !given.passwordFile) process.env.SSH_AUTH_SOCK = agent!.sock; else delete process.env.SSH_AUTH_SOCK;
      process.env.HOME = path.join(tmp, "home-empty"); // remote.Command reads no ~/.ssh
      try {
        const hop = (c: any): Connection => normalizeConnection({ ...c, sshConfig: false, ...(c.proxy ? { proxy: hop(c.proxy) } : {}) });
        const conn = hop(cc);
        const sess = await SshSession.connect(conn, { pin: cc.hostKey });
        try { assert.equal((await sess.exec("hostname")).stdout.trim(), host, `${form}/${n}: commandConnection reaches the host`); } finally { sess.close(); }
      } finally {
        if (saved) process.env.SSH_AUTH_SOCK = saved; else delete process.env.SSH_AUTH_SOCK;
        process.env.HOME = savedHome;
      }
    }
    const text = fs.readFileSync(s.state, "utf8");
    assert.ok(!text.includes("PRIVATE KEY"), `${form}: no key material in clear text in state`);
    assert.ok(!text.includes(PASSWORD), `${form}: no password in clear text in state`);
    const pinsBefore = Object.fromEntries(Object.entries(st).map(([r, x]) => [r, JSON.stringify([x.outputs.connection.hostKey, x.outputs.connection.proxy?.hostKey ?? null, x.outputs.connection.jumpHostKeys ?? null])]));

    // Record-only: a timeout on every hop (and the machines' tags). No host is touched, every pin kept.
    const before = { direct: [await profileOf("cdirect"), await keyStat("cdirect")], behind: [await profileOf("chidden"), await keyStat("chidden")] };
    writeFormStack(form, Object.fromEntries(Object.entries(connections).map(([n, h]) => [n, withTimeout(h, 20)])), { "connections-test:tags": ["web"] });
    expectExit(await engine("up", s, [], env), 0, `${form}: record-only up`);
    st = stateResources(s.state);
    for (const [r, x] of Object.entries(st)) {
      assert.equal(JSON.stringify([x.outputs.connection.hostKey, x.outputs.connection.proxy?.hostKey ?? null, x.outputs.connection.jumpHostKeys ?? null]), pinsBefore[r], `${form}/${r}: pins kept by a record-only update`);
      assert.equal(x.outputs.connection.perDialTimeout, 20, `${form}/${r}: the new timeout recorded`);
    }
    assert.deepEqual(st["m-direct"].outputs.tags, ["web"]);
    assert.deepEqual({ direct: [await profileOf("cdirect"), await keyStat("cdirect")], behind: [await profileOf("chidden"), await keyStat("chidden")] }, before,
      `${form}: no host changed (same generation, key file untouched)`);

    const rf = await engine("refresh", s, [], env);
    expectExit(rf, 0, `${form}: refresh`);
    assert.doesNotMatch(rf.stdout, /drift/, `${form}: refresh finds no drift`);
    const noop = await engine("up", s, [], env);
    expectExit(noop, 0, `${form}: second up`);
    assert.match(noop.stdout, /Resources:\n +7 unchanged\n/, `${form}: the next up changes nothing (6 resources and the stack)`);
    assert.doesNotMatch(noop.stdout, /~ update|\+ create|- delete/);

    expectExit(await engine("destroy", s, [], env), 0, `${form}: destroy`);
    for (const host of Object.values(targets)) {
      assert.equal(await keyStat(host), "", `${form}: ${host}'s key removed`);
      assert.equal(await hostChannel(lab, host), "", `${form}: ${host}'s channel restored (absent before)`);
    }
  }

  const direct = (h: Omit<Hop, "host"> = {}): Hop => ({ host: hosts.cdirect.address, ...h });
  const behind = (h: Omit<Hop, "host"> = {}): Hop => ({ host: hosts.chidden.address, ...h, proxy: { host: hosts.cgate.address, ...h } });

  test("privateKey in the program", async () => {
    await lifecycle("privatekey", { direct: direct({ privateKeyFile: labKey }), behind: behind({ privateKeyFile: labKey }) }, envOf(homeWith("privatekey"), false));
  });

  test("ssh-agent only (no key anywhere else)", async () => {
    await lifecycle("agent", { direct: direct(), behind: behind() }, envOf(homeWith("agent"), true));
  });

  test("a default identity (~/.ssh/id_ed25519), no agent, no ssh config", async () => {
    const home = homeWith("default", { ".ssh/id_ed25519": fs.readFileSync(labKey, "utf8") });
    await lifecycle("default", { direct: direct(), behind: behind() }, envOf(home, false));
  });

  test("an ~/.ssh/config alias with its IdentityFile (and ProxyJump for the bastion)", async () => {
    const home = path.join(tmp, "home-alias");
    const key = path.join(home, "keys", "lab_key");
    homeWith("alias", {
      "keys/lab_key": fs.readFileSync(labKey, "utf8"),
      ".ssh/config": [
        "Host conn-direct", `  HostName ${hosts.cdirect.address}`, `  IdentityFile ${key}`,
        "Host conn-hidden", `  HostName ${hosts.chidden.address}`, "  ProxyJump conn-gate", `  IdentityFile ${key}`,
        "Host conn-gate", `  HostName ${hosts.cgate.address}`, `  IdentityFile ${key}`, "",
      ].join("\n"),
    });
    await lifecycle("alias", { direct: { host: "conn-direct" }, behind: { host: "conn-hidden" } }, envOf(home, false));
  });

  test("a password (deployer, sudo for the privileged steps)", async () => {
    const pw = path.join(tmp, "password");
    fs.writeFileSync(pw, PASSWORD, { mode: 0o600 });
    await lifecycle("password", { direct: direct({ user: "deployer", passwordFile: pw }), behind: behind({ user: "deployer", passwordFile: pw }) }, envOf(homeWith("password"), false));
  });

  test("renames without aliases: the key file and the channel the new resources own stay; with aliases nothing is replaced", async () => {
    const env = envOf(homeWith("rename"), true);
    const s = writeFormStack("rename", { a: direct() });
    expectExit(await engine("up", s, [], env), 0, "up");
    const keyBefore = await keyStat("cdirect");
    // Renamed without aliases: the new resources are created (writing the same file and URL), then the old deleted.
    fs.copyFileSync(path.join(s.cwd, "a.nix"), path.join(s.cwd, "b.nix"));
    const cfg = path.join(s.cwd, "Pulumi.t.yaml");
    const swap = (from: string, to: string, renamedFrom?: Record<string, string>) => {
      const doc = YAML.parse(fs.readFileSync(cfg, "utf8"));
      for (const k of ["connections-test:connections", "connections-test:machineConfigs"]) {
        doc.config[k] = Object.fromEntries(Object.entries(doc.config[k]).map(([n, v]) => [n === from ? to : n, v]));
      }
      if (renamedFrom) doc.config["connections-test:renamedFrom"] = renamedFrom; else delete doc.config["connections-test:renamedFrom"];
      fs.writeFileSync(cfg, YAML.stringify(doc));
    };
    swap("a", "b");
    const r = await engine("up", s, [], env);
    expectExit(r, 0, "rename without aliases");
    assert.match(r.stdout + r.stderr, /warning: k-a: key file \/run\/keys\/k on \S+ left in place: it was written since by k-b/);
    assert.match(r.stdout + r.stderr, /warning: ch-a: channel nixos on \S+ left as it is: it is pinned now by ch-b/);
    assert.equal((await lab.exec("cdirect", ["cat", "/run/keys/k"])).stdout, "key-for-connections", "the key file stays");
    assert.match(await hostChannel(lab, "cdirect"), /24\.05\.1$/, "the channel stays pinned");
    // Renamed back with aliases: the same resources, nothing created, deleted or uploaded.
    const beforeAlias = await keyStat("cdirect");
    swap("b", "c", { c: "b" });
    fs.copyFileSync(path.join(s.cwd, "b.nix"), path.join(s.cwd, "c.nix"));
    const ra = await engine("up", s, [], env);
    expectExit(ra, 0, "rename with aliases");
    assert.doesNotMatch(ra.stdout, /created|deleted|replaced/);
    assert.equal(await keyStat("cdirect"), beforeAlias, "the key file untouched");
    assert.notEqual(keyBefore, "");
    // Destroy removes what the last owner wrote, and restores the channel as before the first pin.
    expectExit(await engine("destroy", s, [], env), 0, "destroy");
    assert.equal(await keyStat("cdirect"), "");
    assert.equal(await hostChannel(lab, "cdirect"), "", "the channel the first pin found (none) is back");
  });

  test("a machine and its key moved into a Network: with aliases nothing is redone; without, the new ones take over and the host keeps its system and key", async () => {
    const env = envOf(homeWith("move"), true);
    const cfgOf = (s: StackRef) => path.join(s.cwd, "Pulumi.t.yaml");
    const setConfig = (s: StackRef, key: string, value: unknown) => {
      const doc = YAML.parse(fs.readFileSync(cfgOf(s), "utf8"));
      if (value === undefined) delete doc.config[`connections-test:${key}`]; else doc.config[`connections-test:${key}`] = value;
      fs.writeFileSync(cfgOf(s), YAML.stringify(doc));
    };
    const hostFacts = async () => ({
      profile: await profileOf("cdirect"),
      system: (await lab.exec("cdirect", ["readlink", "/run/current-system"])).stdout.trim(),
      key: (await lab.exec("cdirect", ["cat", "/run/keys/k"])).stdout,
    });
    for (const withAliases of [true, false]) {
      const s = writeFormStack(withAliases ? "move-aliased" : "move-plain", { a: direct() });
      setConfig(s, "pin", undefined); // a pin would be the Network's nixpkgs too
      expectExit(await engine("up", s, [], env), 0, "up, standalone");
      const before = await hostFacts();
      const stat = await keyStat("cdirect");
      setConfig(s, "inNetwork", { aliases: withAliases });
      const r = await engine("up", s, [], env);
      expectExit(r, 0, `moved into the network ${withAliases ? "with" : "without"} aliases`);
      const st = stateResources(s.state);
      assert.ok(st.a?.urn.includes("pulumi-nixos:index:Network$") && st["a/k"]?.urn.includes("pulumi-nixos:index:Network$"), "the machine and key are the network's now");
      assert.equal(st["m-a"], undefined, "no standalone machine left in the state");
      assert.equal(st["k-a"], undefined, "no standalone key left in the state");
      assert.deepEqual(await hostFacts(), before, "the host runs the same generation and keeps its key");
      if (withAliases) {
        assert.doesNotMatch(r.stdout, /(Machine|DeploymentKey) \S+ (created|deleted|replaced)/, "no machine or key created or deleted (only the Network component is new)");
        assert.doesNotMatch(r.stdout + r.stderr, /activating|uploading/, "nothing redone on the host");
        assert.equal(await keyStat("cdirect"), stat, "the key file untouched");
      } else {
        assert.match(r.stdout, /\+ .*Machine\s+fleet-a\b/, "the network's machine is created");
        assert.match(r.stdout, /- .*Machine\s+m-a\b/, "the standalone one is deleted");
        assert.match(r.stdout + r.stderr, /m-a: forgotten; \S+ keeps running \/nix\/store\//, "deleting the old Machine leaves the host as it is");
        assert.match(r.stdout + r.stderr, /warning: k-a: key file \/run\/keys\/k on \S+ left in place: it was written since by fleet-a-k/);
      }
      expectExit(await engine("destroy", s, [], env), 0, "destroy");
      assert.equal(await keyStat("cdirect"), "", "destroy removes the key the network's resource wrote");
    }
    // A label that names no child is refused before anything registers.
    const bad = writeFormStack("move-typo", { a: direct() });
    setConfig(bad, "pin", undefined);
    setConfig(bad, "inNetwork", { aliases: true, extraLabel: "a/key" });
    const rb = await engine("up", bad, [], env);
    expectExit(rb, 1, "an alias for no child");
    assert.match(rb.stdout + rb.stderr, /Network fleet: aliases: "a\/key" names no machine, key or channel of the network \(its children: a, a\/k\)/);
    assert.doesNotMatch(rb.stdout + rb.stderr, /    at /, "no stack trace");
    assert.deepEqual(Object.values(stateResources(bad.state)).filter((r) => r.type !== "pulumi-nixos:index:Network"), [], "no machine, key or pin registered");
  });

  test("teammates: two checkouts at different paths deploy one stack and see no diff; after drift the plan shows the property", async () => {
    const env = envOf(homeWith("team"), true);
    const a = writeStack(path.join(tmp, "team-a", "proj"), "t", { team: { targetHost: hosts.cdirect.address, config: nixConfig("team", { paths: 1 }) } });
    const bDir = path.join(tmp, "team-b", "elsewhere", "checkout");
    fs.cpSync(a.cwd, bDir, { recursive: true });
    const b: StackRef = { ...a, cwd: bDir }; // one backend: the same state file
    expectExit(await engine("up", a, [], env), 0, "up from the first checkout");
    const st = stateResources(a.state);
    const m = Object.values(st).find((r) => r.inputs.kind === "machine")!;
    assert.equal(m.inputs.configuration, "./team.nix", "recorded relative to the project root");
    for (const [who, ref] of [["second", b], ["first", a]] as const) {
      const pv = await engine("preview", ref, [], env);
      expectExit(pv, 0, `preview from the ${who} checkout`);
      assert.doesNotMatch(pv.stdout, /~ |to update|to replace/, `the ${who} checkout sees no diff`);
      expectExit(await engine("up", ref, [], env), 0, `up from the ${who} checkout`);
      assert.equal(stateResources(a.state)[Object.keys(st).find((k) => st[k] === m)!].inputs.configuration, "./team.nix", "state does not flip");
    }
    // Drift by hand (the previous generation switched to), found by refresh: the correcting up
    // shows the property that differs, because refresh recorded the inputs as the host has them.
    await lab.exec("cdirect", ["sh", "-c", "nix-env -p /nix/var/nix/profiles/system --rollback >/dev/null && /nix/var/nix/profiles/system/bin/switch-to-configuration switch >/dev/null 2>&1"]);
    const rf = await engine("refresh", a, [], env);
    expectExit(rf, 0, "refresh after drift");
    assert.match(rf.stdout, /drift \[diff: .*~systemPath/);
    const pv = await engine("preview", a, [], env);
    expectExit(pv, 0, "preview after the refresh");
    assert.match(pv.stdout, /~ .*Machine \S+ .*\[diff: [^\]]*~systemPath/, "the plan names the property that differs");
    assert.doesNotMatch(pv.stdout, /~connection/, "and not the connection (recorded as given)");
    expectExit(await engine("up", a, [], env), 0, "converge");
    assert.equal((await lab.exec("cdirect", ["readlink", "-f", "/run/current-system"])).stdout.trim(), stateResources(a.state)[Object.keys(st).find((k) => st[k] === m)!].outputs.systemPath);
    expectExit(await engine("destroy", a, [], env), 0, "destroy");
  });

  test("nothing accepted: the error lists what was tried, the host is untouched", async () => {
    // A key the hosts do not know as the default identity, no agent: refused, naming what was offered.
    const other = path.join(tmp, "other_key");
    await run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", other]);
    const home = homeWith("refused", { ".ssh/id_ed25519": fs.readFileSync(other, "utf8") });
    const before = await profileOf("cdirect");
    const s = writeFormStack("refused", { direct: direct() });
    const r = await engine("up", s, [], envOf(home, false));
    expectExit(r, 1, "up with a key nobody accepts");
    assert.match(r.stdout, /authentication failed .*tried ~\/\.ssh\/id_ed25519/);
    assert.doesNotMatch(r.stdout + r.stderr, /Unexpected struct type|at .*\.js:\d+/);
    assert.equal(await profileOf("cdirect"), before);
  });

  test("exit 4 with an agent-only connection: up ends (no hang), the failed units named and recorded", async () => {
    const s = writeFormStack("exit4", { direct: direct() });
    fs.writeFileSync(path.join(s.cwd, "direct.nix"), nixConfig("exit4", { paths: 1, activation: 'test.activation = { exitCode = 4; failedUnits = [ "broken-thing.service" ]; };' }));
    const env = envOf(homeWith("exit4"), true);
    const r = await engine("up", s, [], env);
    expectExit(r, 1, "up whose switch exits 4");
    assert.match(r.stdout, /exited with 4 \(some units failed: .*broken-thing\.service/);
    assert.doesNotMatch(r.stdout + r.stderr, /Unexpected struct type/);
    const m = stateResources(s.state)["m-direct"];
    assert.ok(m.outputs.failedUnits.includes("broken-thing.service"), "recorded as created but unhealthy, with the failed units");
    assert.equal((await lab.exec("cdirect", ["readlink", "/run/current-system"])).stdout.trim(), m.outputs.systemPath, "the new system is active");
    expectExit(await engine("destroy", s, [], env), 0, "destroy");
  });
});
