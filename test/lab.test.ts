import "./helpers/env";
import { after, test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "fs";
import * as net from "net";
import * as path from "path";
import { Lab } from "../provider/lab/lab";
import { run } from "../provider/util/run";
import { canRunLab, tempDir, ROOT } from "./helpers/env";

/** A lab dir inside a fresh temp dir; the temp dirs go when the file's tests end (lab down removes only the lab). */
const madeDirs: string[] = [];
function labDir(prefix: string): string {
  const t = tempDir(prefix);
  madeDirs.push(t);
  return path.join(t, "lab");
}
after(() => { for (const d of madeDirs) fs.rmSync(d, { recursive: true, force: true }); });

const skip = canRunLab ? false : "the lab needs root on Linux";

function sshArgs(lab: Lab, user: string, address: string): string[] {
  return ["ssh", "-i", lab.privateKeyPath, "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
    "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=3", `${user}@${address}`];
}

function tcpOpen(address: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: address, port, timeout: timeoutMs });
    s.once("connect", () => { s.destroy(); resolve(true); });
    s.once("error", () => resolve(false));
    s.once("timeout", () => { s.destroy(); resolve(false); });
  });
}

/** A pid that exists and is not a zombie awaiting its parent's wait(). */
function running(pid: number): boolean {
  try { return !/\) Z /.test(fs.readFileSync(`/proc/${pid}/stat`, "utf8")); } catch { return false; }
}

async function leftovers(dir: string, netns: string[], pids: number[]): Promise<string[]> {
  const found: string[] = [];
  const nsList = (await run(["ip", "netns", "list"])).stdout;
  for (const n of netns) if (new RegExp(`^${n}\\b`, "m").test(nsList)) found.push(`netns ${n}`);
  const links = (await run(["ip", "-o", "link"])).stdout;
  for (const n of netns) if (links.includes(`${n}o`)) found.push(`veth ${n}o`);
  for (const p of pids) if (running(p)) found.push(`pid ${p}`);
  if (fs.readFileSync("/proc/self/mountinfo", "utf8").includes(dir)) found.push("mount under lab dir");
  if (fs.existsSync(dir)) found.push(`dir ${dir}`);
  return found;
}

test("lab: 3 hosts come up as separate real targets and go down leaving nothing", { skip }, async () => {
  const dir = labDir("lab");
  const lab = await Lab.up({ dir, hosts: 3 });
  const record = JSON.parse(fs.readFileSync(path.join(dir, "lab.json"), "utf8"));
  const netns: string[] = record.hosts.map((h: any) => h.netns);
  const pids: number[] = record.hosts.flatMap((h: any) => [h.initPid, h.unsharePid]);
  try {
    const st = await lab.status();
    assert.equal(st.length, 3);
    assert.deepEqual(st.map((h) => h.state), ["up", "up", "up"]);
    assert.equal(new Set(st.map((h) => h.address)).size, 3, "each host has its own address");
    for (const h of st) {
      assert.match(h.hostPublicKey, /^ssh-ed25519 /);
      // sshd answers with the recorded host key, root logs in by key.
      const scan = await run(["ssh-keyscan", "-t", "ed25519", h.address]);
      assert.ok(scan.stdout.includes(h.hostPublicKey.split(" ")[1]), "host key matches status");
      const who = await run([...sshArgs(lab, "root", h.address), "hostname; id -u"]);
      assert.equal(who.stdout, `${h.name}\n0\n`);
    }
    // Root login by password is refused (key only), deployer gets root through sudo -n.
    const pw = await run(["ssh", "-o", "BatchMode=yes", "-o", "PubkeyAuthentication=no", "-o", "StrictHostKeyChecking=no",
      "-o", "UserKnownHostsFile=/dev/null", `root@${st[0].address}`, "true"], { allowFailure: true });
    assert.notEqual(pw.code, 0);
    assert.match(pw.stderr, /Permission denied \(publickey\)/);
    const sudo = await run([...sshArgs(lab, "deployer", st[0].address), "id -un; sudo -n id -u"]);
    assert.equal(sudo.stdout, "deployer\n0\n");

    // Separate stores: a path added on host1 is absent on host2 and on the machine.
    const added = (await lab.exec("host1", ["sh", "-c", "echo lab-$$ > /tmp/f && nix-store --add /tmp/f"])).stdout.trim();
    assert.match(added, /^\/nix\/store\/[a-z0-9]{32}-f$/);
    assert.equal((await lab.exec("host1", ["test", "-e", added], { allowFailure: true })).code, 0);
    assert.notEqual((await lab.exec("host2", ["test", "-e", added], { allowFailure: true })).code, 0);
    assert.equal(fs.existsSync(added), false, "the machine's own store does not get it");
    // Private /etc and /run/keys: changes inside stay inside.
    await lab.exec("host1", ["sh", "-c", "echo in-lab > /run/keys/probe && echo x > /etc/pnx-probe"]);
    assert.equal(fs.existsSync("/etc/pnx-probe"), false);
    assert.equal(fs.existsSync("/run/keys/probe"), false);
    assert.equal((await lab.exec("host2", ["test", "-e", "/run/keys/probe"], { allowFailure: true })).code, 1);
  } finally {
    await lab.down();
  }
  assert.deepEqual(await leftovers(dir, netns, pids), []);
});

test("lab: cut takes a host off the network, restore brings it back", { skip }, async () => {
  const dir = labDir("lab");
  const lab = await Lab.up({ dir, hosts: 2 });
  try {
    const [h1, h2] = await lab.status();
    await lab.cut("host1");
    assert.equal((await lab.status())[0].state, "cut");
    assert.equal(await tcpOpen(h1.address, 22, 1500), false, "cut host unreachable");
    assert.equal(await tcpOpen(h2.address, 22, 1500), true, "other host unaffected");
    await lab.restore("host1");
    assert.equal(await tcpOpen(h1.address, 22, 3000), true);
    assert.equal((await lab.status())[0].state, "up");
  } finally {
    await lab.down();
  }
});

test("lab: reboot restarts one host only: /run/keys emptied, new boot id, current system reset", { skip }, async () => {
  const dir = labDir("lab");
  const lab = await Lab.up({ dir, hosts: 2 });
  const machineBootId = fs.readFileSync("/proc/sys/kernel/random/boot_id", "utf8");
  try {
    const [h1] = await lab.status();
    // Two "systems": the profile points at A, the running system is B (as after `switch-to-configuration test`).
    await lab.exec("host1", ["sh", "-ec", [
      "mkdir -p /tmp/a /tmp/b && echo a > /tmp/a/v && echo b > /tmp/b/v",
      "A=$(nix-store --add /tmp/a) && B=$(nix-store --add /tmp/b)",
      "nix-env -p /nix/var/nix/profiles/system --set $A",
      "ln -sfn $B /run/current-system",
      "echo s3cret > /run/keys/k && chmod 600 /run/keys/k",
    ].join("\n")]);
    const profileTarget = (await lab.exec("host1", ["readlink", "-f", "/nix/var/nix/profiles/system"])).stdout.trim();
    const hostBoot = (await lab.exec("host1", ["cat", "/proc/sys/kernel/random/boot_id"])).stdout.trim();
    const host2Boot = lab.bootId("host2");
    assert.notEqual(hostBoot + "\n", machineBootId, "a host sees its own boot id");
    // `reboot` typed inside the host, as an operator would over ssh.
    const r = await run([...sshArgs(lab, "root", h1.address), "reboot"], { allowFailure: true });
    if (lab.init === "none") assert.match(r.stdout, /rebooting/); // systemd's reboot says nothing
    await lab.waitForBoot("host1", hostBoot, 20_000);
    const after = await lab.exec("host1", ["sh", "-c", "cat /proc/sys/kernel/random/boot_id; ls -A /run/keys | wc -l; readlink /run/current-system; stat -c '%a %G' /run/keys"]);
    const [bootId, keyCount, current, keysDir] = after.stdout.trim().split("\n");
    assert.notEqual(bootId, hostBoot, "boot id changed");
    assert.equal(keyCount, "0", "/run/keys emptied");
    assert.equal(current, profileTarget, "/run/current-system is the profile's default again");
    assert.equal(keysDir, "750 keys");
    assert.equal(lab.bootId("host2"), host2Boot, "the other host did not reboot");
    assert.equal(fs.readFileSync("/proc/sys/kernel/random/boot_id", "utf8"), machineBootId, "the machine did not reboot");
    // lab reboot from outside works the same way.
    await lab.reboot("host2");
    assert.notEqual(lab.bootId("host2"), host2Boot);
    assert.equal((await lab.status()).every((h) => h.state === "up"), true);
  } finally {
    await lab.down();
  }
});

test("lab: down cleans up after a crash (processes killed, record left behind)", { skip }, async () => {
  const dir = labDir("lab");
  const lab = await Lab.up({ dir, hosts: 2 });
  const record = JSON.parse(fs.readFileSync(path.join(dir, "lab.json"), "utf8"));
  const pids: number[] = record.hosts.flatMap((h: any) => [h.initPid, h.unsharePid]);
  for (const p of pids) process.kill(p, "SIGKILL");
  await Lab.open(dir).down();
  assert.deepEqual(await leftovers(dir, record.hosts.map((h: any) => h.netns), pids), []);
});

test("lab CLI: up, status --json, exec, down", { skip }, async () => {
  const dir = labDir("labcli");
  const cli = [process.execPath, path.join(ROOT, "bin/pulumi-nixos.js"), "lab"];
  try {
    await run([...cli, "up", "--hosts", "2", "--dir", dir]);
    const st = JSON.parse((await run([...cli, "status", "--json", "--dir", dir])).stdout);
    assert.equal(st.length, 2);
    for (const k of ["name", "address", "port", "user", "privateKeyPath", "hostPublicKey", "state"]) assert.ok(k in st[0], k);
    const ls = await run([...cli, "exec", "host1", "--dir", dir, "--", "ls", "/nix"]);
    assert.match(ls.stdout, /store|var|^$/);
    const bad = await run([...cli, "exec", "nohost", "--dir", dir, "--", "true"], { allowFailure: true });
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /no lab host 'nohost'/);
  } finally {
    await run([...cli, "down", "--dir", dir], { allowFailure: true });
  }
  assert.equal(fs.existsSync(dir), false);
});

test("lab --init none: init-less hosts (sshd under a shell PID 1) still come up, reboot and go down", { skip }, async () => {
  const dir = labDir("labnone");
  const lab = await Lab.up({ dir, hosts: 1, init: "none" });
  try {
    const [h] = await lab.status();
    assert.deepEqual([h.state, h.init], ["up", "none"]);
    assert.equal((await run([...sshArgs(lab, "root", h.address), "hostname; cat /proc/1/comm; stat -c '%a %G' /run/keys"])).stdout, "host1\nbash\n750 keys\n");
    const before = lab.bootId("host1");
    await lab.reboot("host1");
    assert.notEqual(lab.bootId("host1"), before);
  } finally {
    await lab.down();
  }
  assert.equal(fs.existsSync(dir), false);
});
