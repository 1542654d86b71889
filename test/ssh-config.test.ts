/**
 * The operator's files: ~/.ssh/config (compared with `ssh -G` on the same file: Include, Host
 * patterns, Match host, first match wins, ProxyJump) and ~/.ssh/known_hosts (hashed entries,
 * [host]:port, strict/tofu), against a lab host behind a bastion. Runs with its own HOME.
 */
import "./helpers/env";
import { describe, test, before, after } from "node:test";
import * as assert from "node:assert/strict";
import * as crypto from "crypto";
import * as fs from "fs";
import * as path from "path";
import { Lab, LabHostInfo } from "../provider/lab/lab";
import { run } from "../provider/util/run";
import { SshSession } from "../provider/ssh/session";
import { normalizeConnection } from "../provider/connection";
import { applySshConfig, sshHostConfig } from "../provider/ssh/ssh-config";
import { lookupKnownHost } from "../provider/ssh/known-hosts";
import { closeAllSessions } from "../provider/ssh/pool";
import { canRunLab, tempDir, ROOT } from "./helpers/env";
import { engine, expectExit, stateResources } from "./helpers/engine";
import { writeStack, nixConfig } from "./helpers/stack";

const skip = canRunLab ? false : "the lab needs root on Linux";

/** A known_hosts host field hashed as `ssh-keygen -H` writes it. */
function hashed(name: string): string {
  const salt = crypto.randomBytes(20);
  return `|1|${salt.toString("base64")}|${crypto.createHmac("sha1", salt).update(name).digest("base64")}`;
}

describe("~/.ssh/config and known_hosts", () => {
  let tmp = "", home = "";
  const saved = { HOME: process.env.HOME, SSH_AUTH_SOCK: process.env.SSH_AUTH_SOCK };
  before(() => {
    tmp = tempDir("sshcfg");
    home = path.join(tmp, "home");
    fs.mkdirSync(path.join(home, ".ssh/conf.d"), { recursive: true, mode: 0o700 });
    // Isolated: no file of root's ~/.ssh is read by this test or what it runs.
    process.env.HOME = home;
    delete process.env.SSH_AUTH_SOCK;
  });
  after(async () => {
    await closeAllSessions();
    process.env.HOME = saved.HOME;
    if (saved.SSH_AUTH_SOCK) process.env.SSH_AUTH_SOCK = saved.SSH_AUTH_SOCK;
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  test("the values `ssh -G` computes from the same file: Include, patterns, negation, Match host, first match wins, ProxyJump", async () => {
    const file = path.join(home, ".ssh/config");
    // Absolute paths: ssh expands ~ from the passwd entry, not from HOME.
    fs.writeFileSync(file, [
      `Include ${home}/.ssh/conf.d/*.conf`,
      "Host web-* !web-admin",
      "  User deployer",
      "  Port 2201",
      "Host web-1",
      "  Port 9999",
      "  HostName 10.0.0.1",
      "Match host 10.0.0.*",
      `  IdentityFile ${home}/keys/%h.key`,
      "Host *",
      `  UserKnownHostsFile ${home}/kh`,
      "  ServerAliveInterval 10",
      "",
    ].join("\n"));
    fs.writeFileSync(path.join(home, ".ssh/conf.d/10-heron.conf"), "Host heron\n  HostName 10.0.0.7\n  ProxyJump jump@gate:2222,inner\nHost gate\n  HostName 192.0.2.1\n  User ops\n");
    for (const host of ["web-1", "web-2", "web-admin", "heron", "gate", "elsewhere"]) {
      const r = await run(["ssh", "-G", "-F", file, host]);
      const g: Record<string, string[]> = {};
      for (const l of r.stdout.split("\n")) { const [k, ...v] = l.split(" "); if (k) (g[k] ??= []).push(v.join(" ")); }
      const ours = sshHostConfig(host, file);
      const hostname = ours.hostName ?? host;
      assert.equal(hostname, g.hostname[0], `${host}: hostname`);
      assert.equal(ours.user ?? "root", g.user[0], `${host}: user`);
      assert.equal(String(ours.port ?? 22), g.port[0], `${host}: port`);
      assert.deepEqual(ours.proxyJump.map((j) => `${j.user ? j.user + "@" : ""}${j.host}${j.port ? ":" + j.port : ""}`).join(","), g.proxyjump?.[0] ?? "", `${host}: proxyjump`);
      assert.deepEqual(ours.userKnownHostsFiles, g.userknownhostsfile[0].split(" "), `${host}: userknownhostsfile`);
      // ssh -G prints %h unexpanded and lists its default identities when none is configured.
      const configured = (g.identityfile ?? []).filter((f) => !f.startsWith("~/.ssh/id_")).map((f) => f.replace("%h", hostname));
      assert.deepEqual(ours.identityFiles, configured, `${host}: identityfile`);
    }
    assert.deepEqual(sshHostConfig("web-2", file).ignored, ["serveraliveinterval"], "directives we do not use are named");
  });

  test("ProxyCommand (and other directives we cannot honour) give a clear error; sshConfig: false skips the file", () => {
    const file = path.join(tmp, "pc_config");
    fs.writeFileSync(file, "Host old\n  ProxyCommand ssh -W %h:%p gate\n  HostKeyAlias oldbox\n");
    assert.throws(() => sshHostConfig("old", file), /ProxyCommand, HostKeyAlias are not supported .*use ProxyJump or connection\.proxy.*sshConfig: false/);
    assert.doesNotThrow(() => sshHostConfig("new", file));
  });

  test("known_hosts lookup: plain, hashed, [host]:port (plain and hashed), negation, @revoked", () => {
    const f = path.join(tmp, "kh_unit");
    const k1 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
    const k2 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBBBBnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
    fs.writeFileSync(f, [
      `alpha,10.1.1.1 ${k1}`,
      `${hashed("beta")} ${k1}`,
      `[gamma]:2222 ${k1}`,
      `${hashed("[delta]:2200")} ${k2} comment`,
      `*.lan,!secret.lan ${k2}`,
      `@revoked revoked.example ${k1}`,
      "# comment",
    ].join("\n"));
    assert.deepEqual(lookupKnownHost("alpha", 22, [f]).keys.map((x) => x.key), [k1]);
    assert.deepEqual(lookupKnownHost("10.1.1.1", 22, [f]).keys.map((x) => x.key), [k1]);
    assert.deepEqual(lookupKnownHost("beta", 22, [f]).keys.map((x) => x.key), [k1]);
    assert.deepEqual(lookupKnownHost("gamma", 2222, [f]).keys.map((x) => x.key), [k1]);
    assert.deepEqual(lookupKnownHost("gamma", 22, [f]).keys, [], "port 22 is not [gamma]:2222");
    assert.deepEqual(lookupKnownHost("delta", 2200, [f]).keys.map((x) => x.key), [k2]);
    assert.deepEqual(lookupKnownHost("box.lan", 22, [f]).keys.map((x) => x.key), [k2]);
    assert.deepEqual(lookupKnownHost("secret.lan", 22, [f]).keys, []);
    assert.deepEqual(lookupKnownHost("revoked.example", 22, [f]).revoked, [k1]);
    assert.match(lookupKnownHost("beta", 22, [f]).keys[0].where, /kh_unit:2$/);
  });

  describe("on the lab (a host behind a bastion)", { skip }, () => {
    let lab: Lab;
    let hosts: Record<string, LabHostInfo> = {};
    const cfg = () => path.join(home, ".ssh/config");
    const kh = () => path.join(home, ".ssh/known_hosts");

    before(async () => {
      lab = await Lab.up({ dir: path.join(tmp, "lab"), names: ["gate", "inner"], behind: { inner: "gate" } });
      hosts = Object.fromEntries((await lab.status()).map((h) => [h.name, h]));
      fs.writeFileSync(path.join(home, ".ssh/conf.d/20-lab.conf"), [
        "Host lab-dep",
        `  HostName ${hosts.inner.address}`,
        "  User deployer",
        "  Port 2222",
        "  ProxyJump lab-gate",
        `  IdentityFile ${lab.privateKeyPath}`,
        "Host lab-gate",
        `  HostName ${hosts.gate.address}`,
        `  IdentityFile ${lab.privateKeyPath}`,
        "Host lab-*",
        "  User root",
        "  IdentityFile /nonexistent/first-match-wins-so-this-is-second",
        "Host lab-inner",
        `  HostName ${hosts.inner.address}`,
        "  ProxyJump lab-gate",
        `  IdentityFile ${lab.privateKeyPath}`,
        "",
      ].join("\n"));
      fs.writeFileSync(cfg(), `Include ${home}/.ssh/conf.d/*.conf\n`);
    });
    after(async () => {
      await closeAllSessions();
      await lab?.down();
      fs.rmSync(kh(), { force: true });
    });

    test("an alias with ProxyJump and IdentityFile from ~/.ssh/config: no key or proxy given; explicit inputs win", async () => {
      const s = await SshSession.connect(normalizeConnection({ host: "lab-inner" }));
      try {
        assert.equal((await s.exec("hostname")).stdout.trim(), "inner");
        assert.deepEqual(s.proxyHostKeys, [hosts.gate.hostPublicKey], "through the ProxyJump host");
        assert.match(s.label, new RegExp(`root@${hosts.inner.address.replace(/\./g, "\\.")}:22 via root@${hosts.gate.address.replace(/\./g, "\\.")}:22`));
      } finally { s.close(); }
      const d = await SshSession.connect(normalizeConnection({ host: "lab-inner", user: "deployer" }));
      try { assert.equal((await d.exec("whoami")).stdout.trim(), "deployer", "explicit user wins over the config's User"); } finally { d.close(); }
      // Unset port and user take the config's; given, even as 22 and root (the defaults), they win.
      const dep = applySshConfig(normalizeConnection({ host: "lab-dep" }));
      assert.deepEqual([dep.host, dep.port, dep.user], [hosts.inner.address, 2222, "deployer"]);
      const asRoot = await SshSession.connect(normalizeConnection({ host: "lab-dep", user: "root", port: 22 }));
      try { assert.equal((await asRoot.exec("whoami")).stdout.trim(), "root", "explicit root and 22 win over User deployer and Port 2222"); } finally { asRoot.close(); }
      const asDep = await SshSession.connect(normalizeConnection({ host: "lab-dep", port: 22 }));
      try { assert.equal((await asDep.exec("whoami")).stdout.trim(), "deployer", "unset user: the config's"); } finally { asDep.close(); }
      // sshConfig: false leaves the connection as given (no lookup of the alias is attempted here: it would go to DNS).
      assert.equal(applySshConfig(normalizeConnection({ host: "lab-inner", sshConfig: false })).host, "lab-inner");
      assert.equal(applySshConfig(normalizeConnection({ host: "lab-inner" })).host, hosts.inner.address);
    });

    test("known_hosts: a hashed entry is required to match; strict refuses unlisted hosts; tofu trusts them", async () => {
      fs.writeFileSync(kh(), `${hashed(hosts.gate.address)} ${hosts.gate.hostPublicKey}\n`);
      const strict = (host: string) => normalizeConnection({ host, privateKey: fs.readFileSync(lab.privateKeyPath, "utf8"), hostKeyPolicy: "strict", sshConfig: false, dialErrorLimit: 1 });
      const s = await SshSession.connect(strict(hosts.gate.address));
      s.close();
      // inner (through lab-gate) is in no known_hosts: strict refuses it, tofu takes it.
      await assert.rejects(SshSession.connect(normalizeConnection({ host: "lab-inner", hostKeyPolicy: "strict" })), /host key of root@[\d.]+:22 via .* is not in known_hosts .* hostKeyPolicy is strict/);
      const t = await SshSession.connect(normalizeConnection({ host: "lab-inner" }));
      t.close();
      // A wrong key listed for the bastion: refused, whatever the policy.
      fs.writeFileSync(kh(), `${hashed(hosts.gate.address)} ${hosts.inner.hostPublicKey}\n`);
      await assert.rejects(SshSession.connect(normalizeConnection({ host: "lab-inner" })), /host key of root@[\d.]+:22 does not match known_hosts: it lists SHA256:.*known_hosts:1\)/);
      fs.rmSync(kh());
    });

    test("deploy to an alias (ProxyJump from the config); a known_hosts mismatch is refused before any command runs", async () => {
      const st = writeStack(path.join(tmp, "p1"), "t", { inner: { targetHost: "lab-inner", config: nixConfig("inner") } },
        { "pulumi-nixos:sshPrivateKeyFile": lab.privateKeyPath });
      fs.writeFileSync(kh(), `${hosts.inner.address} ${hosts.gate.hostPublicKey}\n`);
      const profile = async () => (await lab.exec("inner", ["sh", "-c", "readlink /nix/var/nix/profiles/system; ls /run/pulumi-nixos 2>/dev/null || true"])).stdout;
      const before = await profile();
      const bad = await engine("up", st);
      expectExit(bad, 1, "up with a known_hosts mismatch");
      assert.match(bad.stdout, /does not match known_hosts/);
      assert.equal(await profile(), before, "nothing ran on the host (no lock taken, no profile changed)");
      fs.writeFileSync(kh(), `${hashed(hosts.inner.address)} ${hosts.inner.hostPublicKey}\n`);
      const ok = await engine("up", st);
      expectExit(ok, 0, "up through the config's ProxyJump");
      const out = stateResources(st.state).inner.outputs;
      assert.equal(out.connection.host, "lab-inner", "the alias is what state records");
      assert.equal(out.hostPublicKey, hosts.inner.hostPublicKey);
      assert.equal((await lab.exec("inner", ["readlink", "/run/current-system"])).stdout.trim(), out.systemPath);
      assert.ok(!fs.readFileSync(st.state, "utf8").includes(fs.readFileSync(lab.privateKeyPath, "utf8").split("\n")[1]), "no key material in clear text in state");
      // The ProxyJump bastion (in no known_hosts): its key recorded at first contact, then required.
      assert.deepEqual(out.connection.jumpHostKeys, { [`${hosts.gate.address}:22`]: hosts.gate.hostPublicKey });
      assert.equal(out.connection.proxy, undefined, "the config's ProxyJump is not turned into an explicit proxy");
      expectExit(await engine("refresh", st), 0, "refresh with the recorded bastion key");
      // The fleet CLI dials where ssh would: check reaches the alias through its ProxyJump.
      const check = await run([process.execPath, path.join(ROOT, "bin/pulumi-nixos.js"), "check", "--state", st.state, "--json"], { allowFailure: true });
      assert.equal(check.code, 0, check.stdout + check.stderr);
      assert.deepEqual(JSON.parse(check.stdout).map((x: any) => [x.name, x.up, x.reachable]), [["inner", "Yes", "Yes"]]);
      // Stack config `pulumi-nixos:sshConfig`: another file, with an alias ~/.ssh/config does not know.
      const alt = path.join(tmp, "alt_ssh_config");
      fs.writeFileSync(alt, ["Host alt-inner", `  HostName ${hosts.inner.address}`, `  ProxyJump ${hosts.gate.address}`, ""].join("\n"));
      const st2 = writeStack(path.join(tmp, "p2"), "t", { inner: { targetHost: "alt-inner", config: nixConfig("inner", { role: "alt" }) } },
        { "pulumi-nixos:sshPrivateKeyFile": lab.privateKeyPath, "pulumi-nixos:sshConfig": alt });
      expectExit(await engine("up", st2), 0, "up with the stack's sshConfig file");
      assert.equal((await lab.exec("inner", ["cat", "/etc/role"])).stdout, "alt\n");
      assert.equal(stateResources(st2.state).inner.outputs.connection.sshConfig, alt);
      await lab.rekey("gate");
      const rf = await engine("refresh", st);
      expectExit(rf, 1, "refresh after the ProxyJump bastion's key changed");
      assert.match(rf.stdout, /host key of root@[\d.]+:22 changed since first contact: .*connection\.jumpHostKeys\["[\d.]+:22"\] \(ProxyJump of .*config\).*give the bastion as connection\.proxy/);
      const sh = await run([process.execPath, path.join(ROOT, "bin/pulumi-nixos.js"), "ssh", "inner", "--state", st.state, "--", "touch /tmp/ran"], { allowFailure: true });
      assert.notEqual(sh.code, 0);
      assert.match(sh.stdout + sh.stderr, /jumpHostKeys/);
      assert.equal((await lab.exec("inner", ["sh", "-c", "test -e /tmp/ran && echo ran || echo no"])).stdout.trim(), "no", "no command ran");
    });
  });
});
