import "./helpers/env";
import { describe, test, before, after } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "fs";
import * as path from "path";
import { Lab, LabHostInfo } from "../provider/lab/lab";
import { canRunLab, tempDir, ROOT } from "./helpers/env";
import { engine, expectExit, stateResources, StackRef } from "./helpers/engine";
import { writeStack, nixConfig } from "./helpers/stack";
import { run } from "../provider/util/run";
import { narHashBytes, sameNarHash } from "../provider/fanout/nar-hash";
import { newPeerKey } from "../provider/fanout/peer-key";
import { buildSystem } from "./bench/closures";
import { closureOf } from "../provider/nix/closure";
import { missingOnHost } from "../provider/host/copy";
import { closeAllSessions, withHost } from "../provider/ssh/pool";
import { siteCoordinator } from "../provider/fanout/site";
import { parseSigningKey, signNarInfo } from "../provider/fanout/cache-sign";
import { descriptionProblems, machineSpec, NetworkDescription } from "../provider/network/description";

const skip = canRunLab ? false : "the lab needs root on Linux";
const NAMES = ["s1", "s2", "s3", "s4"];

/**
 * A site of four hosts on one LAN behind one uplink veth: each path crosses the uplink once, the
 * hosts pass it on; a peer whose send dies, or whose stream is corrupted, is not taken.
 */
describe("fan-out: a site through one uplink", { skip }, () => {
  let tmp = "";
  let lab: Lab;
  let hosts: LabHostInfo[] = [];
  /** Bytes the machine sent into the site (its end of the uplink veth). */
  const uplinkTx = () => Number(fs.readFileSync(`/sys/class/net/${lab.uplinkDevice("lan")}/statistics/tx_bytes`, "utf8"));
  const current = async (name: string) => (await lab.exec(name, ["sh", "-c", "readlink /run/current-system || true"])).stdout.trim();

  before(async () => {
    tmp = tempDir("fan-out");
    lab = await Lab.up({ dir: path.join(tmp, "lab"), names: NAMES, sites: { lan: NAMES } });
    hosts = await lab.status();
  });
  after(async () => {
    await lab?.down();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  /** One identical system on every host of the site (a fleet of like nodes), ~4 MiB of random content new to the site. */
  const deploy = (dir: string, role: string) => {
    const machines = Object.fromEntries(hosts.map((h) => [h.name, { targetHost: h.address, targetPort: h.port, site: "lan", config: nixConfig(`node-${dir}`, { role, paths: 8, sizeKB: 512, random: true }) }]));
    return writeStack(path.join(tmp, dir), "lab", machines, { "pulumi-nixos:sshPrivateKeyFile": lab.privateKeyPath });
  };

  /** Nothing of the per-deploy credentials or scratch stores is left on any host. */
  const assertNoLeftovers = async () => {
    for (const h of NAMES) {
      const r = await lab.exec(h, ["sh", "-c", "grep -c pulumi-nixos-fanout /root/.ssh/authorized_keys || true; ls /run/pulumi-nixos-fanout /nix/var/pulumi-nixos/fanout 2>/dev/null | grep -v ':$' | grep -c . || true"]);
      assert.deepEqual(r.stdout.trim().split("\n"), ["0", "0"], `${h}: fan-out keys or scratch stores left`);
    }
  };

  /** Every host runs `system`, its whole closure valid and intact (nix-store --verify-path re-hashes it). */
  const assertRuns = async (system: string, role: string) => {
    for (const h of NAMES) {
      assert.equal(await current(h), system, `${h} runs the new system`);
      assert.equal((await lab.exec(h, ["cat", "/etc/role"])).stdout, `${role}\n`);
      const v = await lab.exec(h, ["sh", "-c", `nix-store --verify-path $(nix-store -qR ${system}) && echo intact`], { allowFailure: true });
      assert.equal(v.stdout.trim(), "intact", `${h}: ${v.stderr}`);
    }
  };

  test("four hosts: the closure crosses the uplink about once, the others get it from peers", async (t) => {
    const s = deploy("fan", "fanned");
    const before = uplinkTx();
    const up = await engine("up", s);
    expectExit(up, 0, "up");
    const carried = uplinkTx() - before;
    const st = stateResources(s.state);
    const system = st.s1.outputs.systemPath;
    const closureBytes: number = st.s1.outputs.closureSize.bytes;
    for (const h of NAMES) assert.equal(st[h].inputs.site, "lan", `${h}: its site recorded`);
    await assertRuns(system, "fanned");
    // A direct deploy carries it four times; the fan-out once (plus SSH and the hosts' queries).
    assert.ok(closureBytes > 4 * 1024 * 1024, `closure ${closureBytes} bytes`);
    assert.ok(carried < 1.5 * closureBytes, `uplink carried ${carried} bytes for a ${closureBytes}-byte closure`);
    assert.ok(carried > 0.9 * closureBytes, `uplink carried ${carried} bytes: the closure crossed it at least once`);
    const out = up.stdout + up.stderr;
    t.diagnostic(`uplink carried ${carried} bytes for a ${closureBytes}-byte closure on 4 hosts; ${out.split("\n").filter((l) => /site lan: .*uplink carried/.test(l)).length} per-host source lines`);
    for (const l of out.split("\n").filter((x) => /site lan: \d/.test(x))) t.diagnostic(l.trim());
    assert.match(out, /from s\d over the LAN/);
    assert.match(out, /the site's uplink carried/);
    assert.doesNotMatch(out, /not taken/);
    await assertNoLeftovers();
  });

  test("a shaped uplink (100 Mbit/s, 40 ms RTT through relays): the peers pass paths over the LAN, not back through the uplink", async (t) => {
    await lab.linkSite("lan", { rateMbit: 100, rttMs: 40 });
    try {
      hosts = await lab.status();
      assert.ok(hosts.every((h) => h.port !== 22), "every host is reached through its relay on the uplink");
      const s = deploy("shaped", "shaped");
      const before = uplinkTx();
      const up = await engine("up", s);
      expectExit(up, 0, "up");
      const carried = uplinkTx() - before;
      const closureBytes: number = stateResources(s.state).s1.outputs.closureSize.bytes;
      t.diagnostic(`uplink carried ${carried} bytes for a ${closureBytes}-byte closure`);
      await assertRuns(stateResources(s.state).s1.outputs.systemPath, "shaped");
      assert.match(up.stdout + up.stderr, /from s\d over the LAN/);
      assert.ok(carried < 1.5 * closureBytes && carried > 0.9 * closureBytes, `uplink carried ${carried} bytes for a ${closureBytes}-byte closure`);
      await assertNoLeftovers();
    } finally {
      await lab.clearSiteLink("lan");
      hosts = await lab.status();
    }
  });

  /** A stand-in nix-store on every host whose `--export` (what a sending peer runs) misbehaves. */
  const plantExport = async (body: string) => {
    for (const h of NAMES) {
      await lab.exec(h, ["sh", "-ec", `mkdir -p /root/.nix-profile/bin; cat > /root/.nix-profile/bin/nix-store; chmod 755 /root/.nix-profile/bin/nix-store`],
        { input: `#!/bin/sh\nif [ "$1" = --export ]; then ${body}; fi\nexec /usr/bin/nix-store "$@"\n` });
    }
  };
  const removeExport = async () => { for (const h of NAMES) await lab.exec(h, ["rm", "-f", "/root/.nix-profile/bin/nix-store"]); };

  test("a peer killed mid-transfer: the host takes the paths over the uplink, the deploy succeeds", async () => {
    // The sending peer dies after 64 KiB of its stream (its shell killed): the receiver's import breaks off.
    await plantExport(`/usr/bin/nix-store "$@" | head -c 65536; kill -9 $PPID; exit 1`);
    try {
      const s = deploy("killed", "after-a-dead-peer");
      const up = await engine("up", s);
      expectExit(up, 0, "up");
      await assertRuns(stateResources(s.state).s1.outputs.systemPath, "after-a-dead-peer");
      assert.match(up.stdout + up.stderr, /copy from s\d not taken \(s\d → s\d: the send failed/);
      await assertNoLeftovers();
    } finally { await removeExport(); }
  });

  test("a peer sending a corrupted path: refused before registration, fetched over the uplink, never activated", async () => {
    // Same length, other bytes: the NAR stays well-formed, only its hash differs.
    await plantExport(`/usr/bin/nix-store "$@" | LC_ALL=C sed 's/corrupt-me/CORRUPT-ME/g'; exit 0`);
    try {
      const s = deploy("corrupt", "corrupt-me");
      const up = await engine("up", s);
      expectExit(up, 0, "up");
      const out = up.stdout + up.stderr;
      assert.match(out, /do not match the deployer's narHash\/narSize\/references .*refused/);
      await assertRuns(stateResources(s.state).s1.outputs.systemPath, "corrupt-me");
      for (const h of NAMES) assert.equal((await lab.exec(h, ["sh", "-c", "grep -rl CORRUPT-ME /etc/ /nix/store/ 2>/dev/null | head -1 || true"])).stdout.trim(), "", `${h}: no corrupted file`);
      await assertNoLeftovers();
    } finally { await removeExport(); }
  });

  test("a dead peer (cut off the network): the next host takes the paths over the uplink", async () => {
    fs.mkdirSync(path.join(tmp, "dead"));
    const sys = await buildSystem(path.join(tmp, "dead"), "dead-peer", { paths: 4, sizeKB: 256, seed: "dead-peer", random: true });
    const closure = await closureOf([sys.outPath]);
    const all = closure.map((p) => p.path);
    const key = fs.readFileSync(lab.privateKeyPath, "utf8");
    const [a, b] = hosts;
    const conn = (h: LabHostInfo) => ({ host: h.address, port: h.port, user: "root", privateKey: key });
    const member = (h: LabHostInfo, s: Parameters<Parameters<typeof withHost>[2]>[0]) => ({ name: h.name, session: s, lanAddress: h.address, lanPort: 22, hostPublicKey: h.hostPublicKey });
    const site = siteCoordinator("dead-peer");
    const log = () => undefined;
    const [seeded, lackedA] = await withHost(conn(a), { pin: a.hostPublicKey }, async (s) => {
      const missing = await missingOnHost(s, all);
      return [await site.obtain(member(a, s), closure, missing, log, 60_000), missing.length] as const;
    });
    assert.ok(lackedA > 0 && seeded.uplink.paths === lackedA, "the first host took what it lacked over the uplink");
    await lab.cut(a.name);
    try {
      const [got, lackedB] = await withHost(conn(b), { pin: b.hostPublicKey }, async (s) => {
        const missing = await missingOnHost(s, all);
        const r = await site.obtain(member(b, s), closure, missing, log, 60_000);
        assert.deepEqual(await missingOnHost(s, all), [], "the host has the whole closure");
        return [r, missing.length] as const;
      });
      assert.equal(got.refused.length, 1, "the dead peer's copy was not taken");
      assert.deepEqual(got.peers, {});
      assert.ok(lackedB > 0 && got.uplink.paths === lackedB, "all it lacked came over the uplink");
      const v = await lab.exec(b.name, ["sh", "-c", `nix-store --verify-path ${all.join(" ")} && echo intact`], { allowFailure: true });
      assert.equal(v.stdout.trim(), "intact", v.stderr);
    } finally {
      await lab.restore(a.name);
      await closeAllSessions();
    }
  });

  /** A binary cache served over HTTP (GET and PUT, as Nix's HttpBinaryCacheStore uses) by lab host s4 on the site's LAN. */
  const CACHE_SERVER = `const http=require("http"),fs=require("fs"),path=require("path");const root="/var/cache/pnx";
http.createServer((q,r)=>{const f=path.join(root,path.normalize(decodeURIComponent(q.url.split("?")[0])));if(!f.startsWith(root+"/")){r.statusCode=403;return r.end();}
if(q.method==="PUT"){fs.mkdirSync(path.dirname(f),{recursive:true});const t=f+"."+Math.random()+".tmp";const w=fs.createWriteStream(t);q.pipe(w);w.on("finish",()=>{fs.renameSync(t,f);r.end();});return;}
fs.stat(f,(e,st)=>{if(e||!st.isFile()){r.statusCode=404;return r.end();}r.setHeader("content-length",st.size);if(q.method==="HEAD")return r.end();fs.createReadStream(f).pipe(r);});}).listen(8080,process.argv[1]);`;
  const setSecret = async (s: StackRef, key: string, value: string) => {
    const r = await run([process.execPath, path.join(ROOT, "dist/test/engine/cli.js"), "config", "set", "--secret", "--cwd", s.cwd, "--stack", s.stack, "--", key, value], { allowFailure: true });
    assert.equal(r.code, 0, r.stderr);
  };
  const withCache = async (fn: (url: string, keys: { secret: string; pub: string; otherPub: string }) => Promise<void>) => {
    const dir = tempDir("cache-keys");
    const server = hosts[3];
    await lab.exec(server.name, ["sh", "-c", `mkdir -p /var/cache/pnx; nohup node -e '${CACHE_SERVER}' ${server.address} >/dev/null 2>&1 & echo $! > /run/cache-server.pid`]);
    try {
      await run(["nix-store", "--generate-binary-cache-key", "pnx-lab-cache-1", path.join(dir, "sec"), path.join(dir, "pub")]);
      await run(["nix-store", "--generate-binary-cache-key", "pnx-other-1", path.join(dir, "sec2"), path.join(dir, "pub2")]);
      const read = (f: string) => fs.readFileSync(path.join(dir, f), "utf8").trim();
      await fn(`http://${server.address}:8080`, { secret: read("sec"), pub: read("pub"), otherPub: read("pub2") });
    } finally {
      await lab.exec(server.name, ["sh", "-c", "kill $(cat /run/cache-server.pid); rm -rf /var/cache/pnx /run/cache-server.pid"], { allowFailure: true });
      fs.rmSync(dir, { recursive: true, force: true });
    }
  };
  const cacheStack = (dir: string, url: string, publicKey: string) => writeStack(path.join(tmp, dir), "lab", Object.fromEntries(hosts.map((h) => [h.name,
    { targetHost: h.address, targetPort: h.port, cache: { url, publicKey }, config: nixConfig(`node-${dir}`, { role: dir, paths: 8, sizeKB: 512, random: true }) }])),
  { "pulumi-nixos:sshPrivateKeyFile": lab.privateKeyPath });

  test("a binary cache as the medium (http, on the site): put there once, signed in-process; the hosts substitute with the signature checked", async (t) => {
    await withCache(async (url, keys) => {
      const s = cacheStack("cached", url, keys.pub);
      await setSecret(s, "pulumi-nixos:cacheSigningKey", keys.secret);
      const before = uplinkTx();
      const up = await engine("up", s);
      expectExit(up, 0, "up");
      const carried = uplinkTx() - before;
      const st = stateResources(s.state);
      const closureBytes: number = st.s1.outputs.closureSize.bytes;
      t.diagnostic(`uplink carried ${carried} bytes for a ${closureBytes}-byte closure on 4 hosts through the cache`);
      await assertRuns(st.s1.outputs.systemPath, "cached");
      const out = up.stdout + up.stderr;
      assert.match(out, /cache http:\/\/\S+: \d+ paths substituted/);
      assert.doesNotMatch(out, /not \(refused/);
      assert.ok(carried < 1.5 * closureBytes, `uplink carried ${carried} bytes for a ${closureBytes}-byte closure`);
      // The secret key is nowhere in the state or the output in clear text.
      const secretPart = keys.secret.split(":")[1];
      assert.ok(!fs.readFileSync(s.state, "utf8").includes(secretPart), "signing key in clear text in state");
      assert.ok(!out.includes(secretPart), "signing key in the output");
    });
  });

  test("a cache whose signatures are not by the trusted key: the hosts refuse its paths, they are copied directly", async () => {
    await withCache(async (url, keys) => {
      const s = cacheStack("wrong-key", url, keys.otherPub);
      await setSecret(s, "pulumi-nixos:cacheSigningKey", keys.secret);
      const up = await engine("up", s);
      expectExit(up, 0, "up");
      assert.match(up.stdout + up.stderr, /refused: no valid signature by pnx-other-1\); copying those/);
      await assertRuns(stateResources(s.state).s1.outputs.systemPath, "wrong-key");
    });
  });

  test("lab down removes the site: its namespace, uplink veth and route", async () => {
    const rec = JSON.parse(fs.readFileSync(path.join(lab.dir, "lab.json"), "utf8"));
    const site = rec.sites[0];
    assert.ok((await run(["ip", "-o", "route"])).stdout.includes(`10.231.${site.slot}.128/25`), "the machine routes the site's LAN through the uplink");
    await lab.down();
    assert.equal(fs.existsSync(`/run/netns/${site.netns}`), false, "site netns");
    assert.doesNotMatch((await run(["ip", "-o", "link"])).stdout, new RegExp(`\\b${site.vethOuter}\\b`));
    assert.doesNotMatch((await run(["ip", "-o", "route"])).stdout, new RegExp(`10\\.231\\.${site.slot}\\.128/25`));
    for (const h of rec.hosts) assert.equal(fs.existsSync(`/run/netns/${h.netns}`), false, `netns ${h.netns}`);
    assert.equal(fs.existsSync(lab.dir), false);
  });
});

describe("fan-out parts", () => {
  test("site in the description: per machine and in defaults; a bad name refused by its field", () => {
    const d = { defaults: { site: "rack-a" }, machines: { web: { targetHost: "10.0.0.1", configuration: "./web.nix" }, db: { targetHost: "10.0.0.2", configuration: "./db.nix", site: "rack-b" } } };
    assert.deepEqual(descriptionProblems(d), []);
    assert.equal(machineSpec(d as NetworkDescription, "web").site, "rack-a");
    assert.equal(machineSpec(d as NetworkDescription, "db").site, "rack-b");
    const bad = descriptionProblems({ machines: { web: { targetHost: "10.0.0.1", configuration: "./web.nix", site: "Rack A" } } });
    assert.equal(bad.length, 1);
    assert.match(bad[0], /machines\.web\.site: a site name/);
  });

  test("NAR hashes compare by their bytes in SRI, base32 and base16 notation", () => {
    // One hash as `nix path-info --json` (2.8, SRI) and `nix-store -q --hash` (base32) print it.
    const sri = "sha256-Nj/ct41Jl1Ua73ewRTUC50MlDiY5VPLUrTtW00lGiKQ=";
    const b32 = "sha256:19488r4x6mivmpag4m1r4q72ahz708slbc3pxwd5b5s9invxqgrn";
    assert.equal(narHashBytes(b32)!.toString("hex"), "363fdcb78d4997551aef77b0453502e743250e263954f2d4ad3b56d3494688a4");
    assert.ok(sameNarHash(sri, b32));
    assert.ok(sameNarHash(sri, "sha256:363fdcb78d4997551aef77b0453502e743250e263954f2d4ad3b56d3494688a4"));
    assert.ok(!sameNarHash(sri, "sha256:09488r4x6mivmpag4m1r4q72ahz708slbc3pxwd5b5s9invxqgrn"));
    assert.ok(!sameNarHash(undefined, sri));
    assert.equal(narHashBytes("md5:abc"), undefined);
  });

  test("the per-deploy key is a valid OpenSSH ed25519 key: ssh-keygen derives the same public key", async () => {
    const k = newPeerKey("pulumi-nixos-fanout-test");
    const dir = tempDir("peer-key");
    try {
      fs.writeFileSync(path.join(dir, "k"), k.privatePem, { mode: 0o600 });
      const r = await run(["ssh-keygen", "-y", "-f", path.join(dir, "k")]);
      assert.equal(r.stdout.trim(), k.publicLine);
      assert.match(k.publicLine, /^ssh-ed25519 AAAAC3NzaC1lZDI1NTE5\S+ pulumi-nixos-fanout-test$/);
    } finally { fs.rmSync(dir, { recursive: true, force: true }); }
  });

  test("cache signatures made in-process: Nix accepts them with the key's public half, refuses them with another key", async () => {
    const dir = tempDir("cache-sign");
    try {
      // Keys as Nix makes them; the secret is read into memory here (a stack secret in a deploy).
      await run(["nix-store", "--generate-binary-cache-key", "pnx-test-1", path.join(dir, "sec"), path.join(dir, "pub")]);
      await run(["nix-store", "--generate-binary-cache-key", "pnx-other-1", path.join(dir, "sec2"), path.join(dir, "pub2")]);
      const key = parseSigningKey(fs.readFileSync(path.join(dir, "sec"), "utf8"));
      assert.equal(key.publicKey, fs.readFileSync(path.join(dir, "pub"), "utf8").trim());
      fs.mkdirSync(path.join(dir, "sys"));
      const sys = await buildSystem(path.join(dir, "sys"), "signed", { paths: 2, sizeKB: 4, seed: "signed" });
      const cache = path.join(dir, "cache");
      await run(["nix", "--extra-experimental-features", "nix-command", "copy", "--to", `file://${cache}?compression=none`, sys.outPath]);
      const infos = fs.readdirSync(cache).filter((f) => f.endsWith(".narinfo"));
      assert.ok(infos.length >= 3);
      for (const f of infos) fs.writeFileSync(path.join(cache, f), signNarInfo(fs.readFileSync(path.join(cache, f), "utf8"), key));
      const fetch = (pub: string, into: string) => run(["nix", "--extra-experimental-features", "nix-command", "copy", "--from", `file://${cache}`, "--to", `local?root=${path.join(dir, into)}`,
        "--option", "require-sigs", "true", "--option", "trusted-public-keys", pub, sys.outPath], { allowFailure: true });
      const good = await fetch(key.publicKey, "good");
      assert.equal(good.code, 0, good.stderr);
      const wrong = await fetch(fs.readFileSync(path.join(dir, "pub2"), "utf8").trim(), "wrong");
      assert.notEqual(wrong.code, 0);
      assert.match(wrong.stderr, /lacks a valid signature/);
      assert.throws(() => parseSigningKey("pnx-test-1:AAAA", "pulumi-nixos:cacheSigningKey"), /^Error: pulumi-nixos:cacheSigningKey: not a Nix binary-cache secret key/);
    } finally {
      await run(["chmod", "-R", "u+w", dir], { allowFailure: true });
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
