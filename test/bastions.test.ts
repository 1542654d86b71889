/**
 * Reaching hosts the way operators do: `@pulumi/command`'s connection shape (hostKey, encrypted
 * keys, dial retries) and bastions (`proxy`, chains) on a lab whose hosts sit behind other lab
 * hosts (`lab up --behind`). Runs with its own HOME (no ssh config or known_hosts of root's).
 */
import "./helpers/env";
import { describe, test, before, after } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "fs";
import * as net from "net";
import * as path from "path";
import { Lab, LabHostInfo } from "../provider/lab/lab";
import { run } from "../provider/util/run";
import { SshSession } from "../provider/ssh/session";
import { normalizeConnection, Connection, chainKey } from "../provider/connection";
import { validateConnection } from "../provider/handlers/validate";
import { closeAllSessions } from "../provider/ssh/pool";
import { canRunLab, tempDir, ROOT } from "./helpers/env";
import { engine, expectExit, stateResources } from "./helpers/engine";
import { writeStack, nixConfig } from "./helpers/stack";
import * as YAML from "yaml";
import { writeLabStackFile } from "../provider/lab/stack-file";
import { descriptionProblems } from "../provider/network/description";
import { startChannelServer, ChannelServer, hostChannel, setChannelByHand } from "./channels/server";

const skip = canRunLab ? false : "the lab needs root on Linux";
const CLI = [process.execPath, path.join(ROOT, "bin/pulumi-nixos.js")];

/** Whether a TCP connect from this machine reaches address:22 within 2 s. */
function tcpReaches(address: string): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect({ host: address, port: 22, timeout: 2000 });
    s.once("connect", () => { s.destroy(); resolve("connected"); });
    s.once("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
    s.once("timeout", () => { s.destroy(); resolve("timeout"); });
  });
}

describe("bastions and the connection shape of @pulumi/command", { skip }, () => {
  let tmp = "";
  let lab: Lab;
  let hosts: Record<string, LabHostInfo> = {};
  let key = "";
  let ch: ChannelServer;
  const savedHome = process.env.HOME, savedAgent = process.env.SSH_AUTH_SOCK;

  before(async () => {
    tmp = tempDir("bastions");
    // An isolated HOME: nothing of root's ~/.ssh is read by the test or the programs it runs.
    process.env.HOME = path.join(tmp, "home");
    fs.mkdirSync(path.join(process.env.HOME, ".ssh"), { recursive: true, mode: 0o700 });
    delete process.env.SSH_AUTH_SOCK;
    // gate (a bastion) → inner (behind gate) → deep (behind inner): one and two bastions.
    lab = await Lab.up({ dir: path.join(tmp, "lab"), names: ["gate", "inner", "deep"], behind: { inner: "gate", deep: "inner" } });
    hosts = Object.fromEntries((await lab.status()).map((h) => [h.name, h]));
    key = fs.readFileSync(lab.privateKeyPath, "utf8");
    // A channel mirror on this machine (gate's gateway address): hosts behind bastions reach it
    // outbound through their bastions' NAT, as hidden hosts reach a mirror or the internet.
    const gateway = JSON.parse(fs.readFileSync(path.join(tmp, "lab", "lab.json"), "utf8")).hosts.find((h: { name: string }) => h.name === "gate").gateway;
    ch = await startChannelServer(path.join(tmp, "channels"), gateway, ["24.05.1", "24.11.2"]);
  });
  after(async () => {
    await ch?.close();
    await closeAllSessions();
    await lab?.down();
    process.env.HOME = savedHome;
    if (savedAgent) process.env.SSH_AUTH_SOCK = savedAgent;
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  const via = (...names: string[]): Connection | undefined =>
    names.reduce<Connection | undefined>((proxy, n) => normalizeConnection({ host: hosts[n].address, privateKey: key, proxy }), undefined);

  test("lab up --behind: the deployer cannot reach hosts behind a bastion, the bastion can", async () => {
    assert.equal(hosts.inner.behind, "gate");
    assert.equal(hosts.deep.behind, "inner");
    assert.equal(await tcpReaches(hosts.gate.address), "connected");
    for (const n of ["inner", "deep"]) assert.equal(await tcpReaches(hosts[n].address), "EHOSTUNREACH", `${n} is not reachable directly`);
    // From inside the bastion it is.
    const r = await lab.exec("gate", ["bash", "-c", `exec 3<>/dev/tcp/${hosts.inner.address}/22 && echo open`], { allowFailure: true });
    assert.equal(r.stdout.trim(), "open");
    // Outbound, hidden hosts reach this machine through their bastions (NAT), and are seen as the bastion.
    const url = new URL(ch.channels["24.05.1"].url);
    for (const n of ["inner", "deep"]) {
      const o = await lab.exec(n, ["bash", "-c", `exec 3<>/dev/tcp/${url.hostname}/${url.port} && printf 'GET ${url.pathname} HTTP/1.0\\r\\n\\r\\n' >&3 && head -1 <&3`], { allowFailure: true });
      assert.match(o.stdout, /^HTTP\/1\.1 200/, `${n} reaches the mirror outbound: ${o.stderr}`);
    }
  });

  test("one and two bastions: each hop's host key seen, a wrong bastion key refused", async () => {
    const one = normalizeConnection({ host: hosts.inner.address, privateKey: key, proxy: via("gate") });
    const s1 = await SshSession.connect(one);
    try {
      assert.equal((await s1.exec("hostname")).stdout.trim(), "inner");
      assert.deepEqual(s1.proxyHostKeys, [hosts.gate.hostPublicKey]);
      assert.equal(s1.hostPublicKey, hosts.inner.hostPublicKey);
      assert.match(s1.label, /^root@10\.231\.\d+\.2:22 via root@10\.231\.\d+\.2:22$/);
    } finally { s1.close(); }
    const two = normalizeConnection({ host: hosts.deep.address, privateKey: key, proxy: via("gate", "inner") });
    const s2 = await SshSession.connect(two);
    try {
      assert.equal((await s2.exec("hostname")).stdout.trim(), "deep");
      assert.deepEqual(s2.proxyHostKeys, [hosts.gate.hostPublicKey, hosts.inner.hostPublicKey]);
    } finally { s2.close(); }
    // The chain is the host's identity (locks, pools).
    assert.notEqual(chainKey(two), chainKey(normalizeConnection({ host: hosts.deep.address })));
    // A wrong key for the first bastion: refused, nothing further dialled.
    const wrong = normalizeConnection({ ...two, proxy: { ...two.proxy!, proxy: { ...two.proxy!.proxy!, hostKey: hosts.deep.hostPublicKey } } });
    await assert.rejects(SshSession.connect(wrong), /host key of root@[\d.]+:22 does not match the pinned connection\.proxy\.proxy\.hostKey/);
  });

  test("encrypted private key: right passphrase logs in, wrong or missing ones fail at once (not retried)", async () => {
    const kf = path.join(tmp, "enc_key");
    await run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "correct horse", "-C", "enc", "-f", kf]);
    await lab.exec("gate", ["sh", "-c", "cat >> /root/.ssh/authorized_keys"], { input: fs.readFileSync(kf + ".pub") });
    const enc = fs.readFileSync(kf, "utf8");
    const c = (privateKeyPassword?: string) => normalizeConnection({ host: hosts.gate.address, privateKey: enc, privateKeyPassword });
    const s = await SshSession.connect(c("correct horse"));
    try { assert.equal((await s.exec("hostname")).stdout.trim(), "gate"); } finally { s.close(); }
    for (const [pw, msg] of [["wrong", /could not be decrypted: wrong connection\.privateKeyPassword/], [undefined, /encrypted: set connection\.privateKeyPassword/]] as const) {
      const t0 = Date.now();
      await assert.rejects(SshSession.connect(c(pw)), (e: Error) => { assert.match(e.message, msg); assert.doesNotMatch(e.message, /attempts/); return true; });
      // Ten attempts with backoff would take > 7 s.
      assert.ok(Date.now() - t0 < 2000, `failed at once (${Date.now() - t0} ms)`);
    }
    // A key the host does not accept: an auth error, not retried either.
    const other = path.join(tmp, "other_key");
    await run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", other]);
    const t0 = Date.now();
    await assert.rejects(SshSession.connect(normalizeConnection({ host: hosts.gate.address, privateKey: fs.readFileSync(other, "utf8") })), /authentication failed/);
    assert.ok(Date.now() - t0 < 2000, `auth failure not retried (${Date.now() - t0} ms)`);
  });

  test("dial retries: a host that comes back within the attempts is reached; a dead one fails after dialErrorLimit", async () => {
    await lab.cut("gate");
    let restored = false;
    try {
      const t0 = Date.now();
      await assert.rejects(SshSession.connect(normalizeConnection({ host: hosts.gate.address, privateKey: key, dialErrorLimit: 3, perDialTimeout: 1 })), /\(3 attempts\)/);
      assert.ok(Date.now() - t0 >= 250, "backoff between attempts (100 + 150 ms at least)");
      setTimeout(() => { void lab.restore("gate").then(() => { restored = true; }); }, 1500);
      const s = await SshSession.connect(normalizeConnection({ host: hosts.gate.address, privateKey: key, perDialTimeout: 1 }));
      assert.ok(restored, "connected only after the host came back");
      s.close();
    } finally {
      if (!restored) await lab.restore("gate");
    }
  });

  test("a remote.Command-shaped connection (hostKey, proxy with hostKey, perDialTimeout, dialErrorLimit) is accepted as is", () => {
    const c = { host: hosts.inner.address, user: "root", privateKey: key, hostKey: hosts.inner.hostPublicKey, perDialTimeout: 15, dialErrorLimit: 10,
      proxy: { host: hosts.gate.address, user: "root", privateKey: key, hostKey: hosts.gate.hostPublicKey } };
    assert.deepEqual(validateConnection(c), []);
    const n = normalizeConnection(c);
    assert.equal(n.hostPublicKey, hosts.inner.hostPublicKey);
    assert.equal(n.hostKey, hosts.inner.hostPublicKey);
    assert.equal(n.proxy?.hostKey, hosts.gate.hostPublicKey);
  });

  test("lab up --stack-file: hosts behind a bastion get their proxy chain with each hop's key pinned", () => {
    const file = path.join(tmp, "stack-file", "Pulumi.lab.yaml");
    fs.mkdirSync(path.dirname(file), { recursive: true });
    // Updated in place, as `lab up --stack-file stacks/Pulumi.lab.yaml` does.
    fs.copyFileSync(path.join(ROOT, "stacks/Pulumi.lab.yaml"), file);
    writeLabStackFile(file, Object.values(hosts), lab.privateKeyPath);
    const ms = (YAML.parse(fs.readFileSync(file, "utf8")) as any).config["pulumi-nixos:network"].machines;
    assert.equal(ms.gate.proxy, undefined);
    assert.deepEqual(ms.inner.proxy, { host: hosts.gate.address, hostKey: hosts.gate.hostPublicKey });
    assert.deepEqual(ms.deep.proxy, { host: hosts.inner.address, hostKey: hosts.inner.hostPublicKey, proxy: { host: hosts.gate.address, hostKey: hosts.gate.hostPublicKey } });
    assert.deepEqual(descriptionProblems((YAML.parse(fs.readFileSync(file, "utf8")) as any).config["pulumi-nixos:network"]), [], "the description it writes is valid");
  });

  test("pins, keys and every fleet command through one and two bastions", async () => {
    const pin = (v: string) => ({ url: ch.channels[v].url, sha256: ch.channels[v].sha256 });
    const channelOf = (n: string) => hostChannel(lab, n);
    const keyFile = path.join(tmp, "pin-key");
    fs.writeFileSync(keyFile, "one-bastion-key", { mode: 0o600 });
    const machines = (innerPin: string) => ({
      inner: { targetHost: hosts.inner.address, config: nixConfig("inner"), pin: innerPin, proxy: { host: hosts.gate.address }, keys: { k: { file: keyFile } } },
      deep: { targetHost: hosts.deep.address, config: nixConfig("deep"), pin: "b", proxy: { host: hosts.inner.address, proxy: { host: hosts.gate.address } } },
    } as any);
    const extra = { "pulumi-nixos:sshPrivateKeyFile": lab.privateKeyPath, "pulumi-nixos:pins": { a: pin("24.05.1"), b: pin("24.11.2") } };
    const s = writeStack(path.join(tmp, "pins"), "t", machines("a"), extra);
    expectExit(await engine("up", s), 0, "pinned up through bastions");
    assert.equal(await channelOf("inner"), `nixos ${ch.channels["24.05.1"].url}\n24.05.1`, "one bastion: the host fetched and verified its pin");
    assert.equal(await channelOf("deep"), `nixos ${ch.channels["24.11.2"].url}\n24.11.2`, "two bastions");
    let st = stateResources(s.state);
    assert.equal(st.inner.outputs.nixosVersion, "24.05.1");
    assert.equal(st.deep.outputs.nixosVersion, "24.11.2");
    assert.equal(st["deep/channel"].outputs.connection.proxy.proxy.hostKey, hosts.gate.hostPublicKey, "the pin's connection records the chain's keys");
    assert.equal((await lab.exec("inner", ["cat", "/run/keys/k"])).stdout, "one-bastion-key");

    // A pin change goes through the chain too; the channel drifts and refresh sees it.
    writeStack(s.cwd, "t", machines("b"), extra);
    expectExit(await engine("up", s), 0, "pin change through a bastion");
    assert.equal(await channelOf("inner"), `nixos ${ch.channels["24.11.2"].url}\n24.11.2`);
    await setChannelByHand(lab, "deep", ch.channels["24.05.1"].url);
    const rf = await engine("refresh", s);
    expectExit(rf, 0, "refresh through two bastions");
    assert.match(rf.stdout, /ChannelPin network-deep-channel drift \[diff: .*~url/);
    expectExit(await engine("up", s), 0, "converge");
    assert.equal(await channelOf("deep"), `nixos ${ch.channels["24.11.2"].url}\n24.11.2`);

    // Every fleet command on both hosts, through their chains.
    const fleet = (...args: string[]) => {
      const dd = args.includes("--") ? args.indexOf("--") : args.length;
      return run([...CLI, ...args.slice(0, dd), "--state", s.state, ...args.slice(dd)], { allowFailure: true });
    };
    const check = await fleet("check", "--json");
    assert.equal(check.code, 0, check.stdout + check.stderr);
    for (const x of JSON.parse(check.stdout)) assert.deepEqual([x.name, x.exists, x.up, x.reachable, x.disksOk], [x.name, "Yes", "Yes", "Yes", "Yes"]);
    const gens = await fleet("list-generations", "--json");
    assert.equal(gens.code, 0, gens.stderr);
    const g = JSON.parse(gens.stdout);
    st = stateResources(s.state);
    for (const n of ["inner", "deep"]) assert.equal(g[n].find((x: any) => x.current).number, st[n].outputs.generation, `${n}: current generation`);
    const before = (await lab.exec("deep", ["readlink", "/run/current-system"])).stdout.trim();
    const rb = await fleet("rollback", "--include", "deep");
    assert.equal(rb.code, 0, rb.stdout + rb.stderr);
    assert.match(rb.stdout, new RegExp(`deep: now generation ${st.deep.outputs.generation - 1}`));
    assert.notEqual((await lab.exec("deep", ["readlink", "/run/current-system"])).stdout.trim(), before, "deep switched back");
    const rb2 = await fleet("rollback", String(st.deep.outputs.generation), "--include", "deep");
    assert.equal(rb2.code, 0, rb2.stdout + rb2.stderr);
    assert.equal((await lab.exec("deep", ["readlink", "/run/current-system"])).stdout.trim(), before, "and forward to the given generation");
    const bootId = (await lab.exec("inner", ["cat", "/proc/sys/kernel/random/boot_id"])).stdout.trim();
    const rbt = await fleet("reboot", "--include", "inner");
    assert.equal(rbt.code, 0, rbt.stdout + rbt.stderr);
    assert.match(rbt.stdout, /inner: back up \(boot [0-9a-f-]+, system (running|N\/A)\); keys re-uploaded: k/);
    assert.notEqual((await lab.exec("inner", ["cat", "/proc/sys/kernel/random/boot_id"])).stdout.trim(), bootId, "inner rebooted");
    assert.equal((await lab.exec("inner", ["cat", "/run/keys/k"])).stdout, "one-bastion-key");
    const info = await fleet("info", "--json");
    assert.deepEqual(Object.fromEntries(JSON.parse(info.stdout).map((x: any) => [x.name, x.status])), { deep: "Up / Up-to-date", inner: "Up / Up-to-date" });
    // deep is still reachable through the rebooted inner; targets lists both.
    const sh = await fleet("ssh", "deep", "--", "hostname");
    assert.equal(sh.stdout.trim(), "deep", sh.stderr);
    const tg = await fleet("targets");
    assert.equal(tg.code, 0, tg.stderr);
    for (const n of ["inner", "deep"]) assert.match(tg.stdout, new RegExp(`${n}\\b`));

    expectExit(await engine("destroy", s), 0, "destroy through bastions");
    assert.equal(await channelOf("deep"), "", "the pin's delete restored deep's (absent) channel");
  });

  test("deploy, keys, refresh and the fleet CLI through one and two bastions; bastion keys recorded, then enforced", async () => {
    const tokenFile = path.join(tmp, "token");
    fs.writeFileSync(tokenFile, "s3cret-behind-two", { mode: 0o600 });
    const s = writeStack(path.join(tmp, "p1"), "t", {
      inner: { targetHost: hosts.inner.address, config: nixConfig("inner"), proxy: { host: hosts.gate.address } },
      deep: { targetHost: hosts.deep.address, config: nixConfig("deep"), proxy: { host: hosts.inner.address, proxy: { host: hosts.gate.address } },
        keys: { token: { file: tokenFile } } },
    } as any, { "pulumi-nixos:sshPrivateKeyFile": lab.privateKeyPath });
    const r = await engine("up", s);
    expectExit(r, 0, "up through bastions");
    const st = stateResources(s.state);
    assert.equal(st.inner.outputs.connection.proxy.hostKey, hosts.gate.hostPublicKey, "bastion key recorded at first contact");
    assert.equal(st.inner.outputs.connection.hostKey, hosts.inner.hostPublicKey, "hostKey output for remote.Command");
    assert.equal(st.inner.outputs.connection.hostPublicKey, hosts.inner.hostPublicKey);
    assert.equal(st.deep.outputs.connection.proxy.hostKey, hosts.inner.hostPublicKey);
    assert.equal(st.deep.outputs.connection.proxy.proxy.hostKey, hosts.gate.hostPublicKey);
    for (const n of ["inner", "deep"]) {
      const cur = (await lab.exec(n, ["readlink", "/run/current-system"])).stdout.trim();
      assert.equal(cur, st[n].outputs.systemPath, `${n} runs the deployed system`);
    }
    assert.equal((await lab.exec("deep", ["cat", "/run/keys/token"])).stdout, "s3cret-behind-two");
    assert.ok(!fs.readFileSync(s.state, "utf8").includes("BEGIN OPENSSH PRIVATE KEY"), "no private key in clear text in state");
    const rf = await engine("refresh", s);
    expectExit(rf, 0, "refresh through bastions");
    assert.match(rf.stdout, /unchanged/);

    // The fleet CLI, send-keys and `pulumi-nixos ssh` use the recorded chain.
    const info = await run([...CLI, "info", "--state", s.state], { allowFailure: true });
    assert.equal(info.code, 0, info.stdout + info.stderr);
    assert.match(info.stdout, /deep +.*Up \/ Up-to-date/);
    assert.match(info.stdout, /inner +.*Up \/ Up-to-date/);
    const sh = await run([...CLI, "ssh", "deep", "--state", s.state, "--", "hostname"], { allowFailure: true });
    assert.equal(sh.code, 0, sh.stderr);
    assert.equal(sh.stdout.trim(), "deep");
    await lab.exec("deep", ["rm", "-f", "/run/keys/token"]);
    const sk = await run([...CLI, "send-keys", "--state", s.state, "--include", "deep"], { allowFailure: true });
    assert.equal(sk.code, 0, sk.stdout + sk.stderr);
    assert.equal((await lab.exec("deep", ["cat", "/run/keys/token"])).stdout, "s3cret-behind-two");

    // The bastion's key changes (reinstalled, or someone in the middle): refused before any command.
    await lab.rekey("gate");
    const before = (await lab.exec("inner", ["readlink", "/nix/var/nix/profiles/system"])).stdout;
    const rf2 = await engine("refresh", s);
    expectExit(rf2, 1, "refresh with a changed bastion key");
    assert.match(rf2.stdout, /host key of root@[\d.]+:22 changed since first contact|does not match the pinned connection\.proxy/);
    const sh2 = await run([...CLI, "ssh", "inner", "--state", s.state, "--", "touch /tmp/ran"], { allowFailure: true });
    assert.notEqual(sh2.code, 0);
    assert.match(sh2.stdout + sh2.stderr, /connection\.proxy\.hostKey/);
    assert.equal((await lab.exec("inner", ["sh", "-c", "test -e /tmp/ran && echo ran || echo no"])).stdout.trim(), "no", "no command ran");
    assert.equal((await lab.exec("inner", ["readlink", "/nix/var/nix/profiles/system"])).stdout, before);
  });
});
