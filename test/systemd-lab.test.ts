import "./helpers/env";
import { describe, test, before, after } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "fs";
import * as path from "path";
import { Lab, LabHostInfo } from "../provider/lab/lab";
import { run } from "../provider/util/run";
import { canRunLab, tempDir } from "./helpers/env";
import { buildSystem, copyToHost } from "./helpers/standin";

const skip = canRunLab ? false : "the lab needs root on Linux";

function ssh(lab: Lab, address: string, cmd: string, user = "root") {
  return run(["ssh", "-i", lab.privateKeyPath, "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
    "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=3", `${user}@${address}`, cmd], { allowFailure: true, timeoutMs: 30_000 });
}

/** Every process in the cgroups the lab made for host netns `ns` (all hierarchies). */
function cgroupsOf(ns: string): string[] {
  return ["/sys/fs/cgroup/unified", "/sys/fs/cgroup/systemd", "/sys/fs/cgroup"]
    .map((r) => path.join(r, "pulumi-nixos-lab", ns)).filter((d) => fs.existsSync(d));
}

/** Processes of this lab's hosts: the supervisors, nspawn and everything in the containers. */
function cgroupProcs(ns: string): number[] {
  const out: number[] = [];
  const walk = (d: string) => {
    try { out.push(...fs.readFileSync(path.join(d, "cgroup.procs"), "utf8").split("\n").filter(Boolean).map(Number)); } catch { /* gone */ }
    try { for (const e of fs.readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) walk(path.join(d, e.name)); } catch { /* gone */ }
  };
  for (const d of cgroupsOf(ns)) walk(d);
  return out;
}

/** PSS (kB) of a set of processes. */
function pssKB(pids: number[]): number {
  let kb = 0;
  for (const p of pids) {
    try { kb += Number(/^Pss:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${p}/smaps_rollup`, "utf8"))?.[1] ?? 0); } catch { /* gone */ }
  }
  return kb;
}

describe("systemd lab hosts", { skip }, () => {
  let tmp = "";
  let lab: Lab;
  let hosts: LabHostInfo[] = [];
  let netns: string[] = [];
  let bootMs = 0;
  const ex = async (name: string, cmd: string) => (await lab.exec(name, ["sh", "-c", cmd], { allowFailure: true, timeoutMs: 60_000 })).stdout.trim();

  before(async () => {
    tmp = tempDir("sdlab");
    const t0 = Date.now();
    lab = await Lab.up({ dir: path.join(tmp, "lab"), hosts: 3 });
    bootMs = Date.now() - t0;
    hosts = await lab.status();
    netns = JSON.parse(fs.readFileSync(path.join(lab.dir, "lab.json"), "utf8")).hosts.map((h: any) => h.netns);
  });
  after(async () => {
    await lab?.down().catch(() => undefined);
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  test("each host boots systemd as PID 1 from the seeded stand-in NixOS generation 1; its sshd is the system's sshd.service", async () => {
    assert.deepEqual(hosts.map((h) => [h.state, h.init, h.generation]), hosts.map(() => ["up", "systemd", 1]));
    for (const h of hosts) {
      const r = await ssh(lab, h.address, [
        "ps -p 1 -o comm=", "systemctl is-system-running --wait", "readlink -f /run/current-system",
        "readlink -f /nix/var/nix/profiles/system", "systemctl is-active sshd.service", "systemctl is-enabled ssh.service || true",
        "stat -c '%a %U %G' /run/keys", "awk '$2 == \"/run/keys\" { print $3 }' /proc/mounts", "hostname",
        "cat $(readlink -f /run/current-system)/nixos-version",
      ].join("; "));
      const [pid1, running, current, profile, sshd, sshUnit, keys, keysFs, hostname, version] = r.stdout.trim().split("\n");
      assert.equal(pid1, "systemd");
      assert.equal(running, "running", `${h.name}: ${r.stdout}`);
      assert.equal(current, h.currentSystem ?? "");
      assert.equal(current, profile, "the running system is the profile's default generation");
      assert.match(current, new RegExp(`^/nix/store/[a-z0-9]{32}-nixos-system-${h.name}-`));
      assert.equal(sshd, "active");
      assert.equal(sshUnit, "masked", "Debian's ssh.service never runs");
      assert.equal(keys, "750 root keys");
      assert.equal(keysFs, "ramfs");
      assert.equal(hostname, h.name);
      assert.equal(version, "24.05.standin");
      // The seed is in the host's own store and nowhere it did not come from.
      assert.equal(await ex(h.name, `nix-store --verify-path ${current} && echo valid`), "valid");
    }
    // deployer: key login, passwordless sudo.
    assert.equal((await ssh(lab, hosts[0].address, "id -un; sudo -n systemctl is-system-running", "deployer")).stdout, "deployer\nrunning\n");
    const pids = netns.flatMap(cgroupProcs);
    console.log(`# ${hosts.length} systemd hosts up in ${bootMs} ms (seed build included); PSS ${Math.round(pssKB(pids) / hosts.length / 1024)} MB a host (${pids.length} processes)`);
  });

  test("a host looks like NixOS to a program: /etc/NIXOS, os-release, systemd-only unit PATH, NixOS's login PATH with sudo in /run/wrappers/bin", async () => {
    const [h1] = hosts;
    assert.equal(await ex(h1.name, "test -f /etc/NIXOS && . /etc/os-release && echo $ID $NAME"), "nixos NixOS");
    // A transient unit's environment as on NixOS: PATH is systemd's own bin/ (no coreutils there).
    const unitPath = await ex(h1.name, "systemd-run --quiet --wait --pipe --collect /bin/sh -c 'echo $PATH'");
    assert.match(unitPath, /^\/nix\/store\/[a-z0-9]{32}-systemd-lab-tools\/bin$/);
    assert.equal(await ex(h1.name, `ls ${unitPath}/systemctl ${unitPath}/systemd-run >/dev/null && ls ${unitPath} | grep -cxE 'cat|ls|sh|sed|readlink|timeout' || true`), "0", "systemd's tools only");
    const inUnit = await lab.exec(h1.name, ["systemd-run", "--quiet", "--wait", "--pipe", "--collect", "/bin/sh", "-c", "cat /etc/hostname"], { allowFailure: true });
    assert.notEqual(inUnit.code, 0, "cat is not found in a transient unit");
    assert.match(inUnit.stderr + inUnit.stdout, /cat: not found/);
    // Units NixOS generates carry their own PATH (the system's sshd.service runs).
    assert.match(await ex(h1.name, "systemctl show -p Environment --value sshd.service"), /PATH=/);
    // SSH sessions: NixOS's login PATH, sudo from the setuid wrappers' directory.
    const login = await ssh(lab, h1.address, 'echo "$PATH"; command -v sudo', "deployer");
    const [pathLine, sudo] = login.stdout.trim().split("\n");
    assert.match(pathLine, /^\/run\/wrappers\/bin:.*:\/run\/current-system\/sw\/bin:/);
    assert.equal(sudo, "/run/wrappers/bin/sudo");
    assert.equal((await ssh(lab, h1.address, "sudo -n id -u", "deployer")).stdout.trim(), "0");
  });

  test("systemctl reboot inside a host restarts that host only: new boot id, empty /run/keys, the profile's default generation", async () => {
    const [h1, h2] = hosts;
    const machineBoot = fs.readFileSync("/proc/sys/kernel/random/boot_id", "utf8");
    // The host runs another system than its profile's default (as after `switch-to-configuration test`).
    const other = await buildSystem(`{ networking.hostName = "${h1.name}"; environment.etc.probe.text = "other"; }`);
    await copyToHost(lab, h1.name, other);
    await lab.exec(h1.name, ["sh", "-c", `${other}/bin/switch-to-configuration test >/dev/null && echo k > /run/keys/k`]);
    assert.equal(await ex(h1.name, "readlink -f /run/current-system"), other);
    const before1 = lab.bootId(h1.name);
    const before2 = lab.bootId(h2.name);
    assert.equal(await ex(h1.name, "cat /proc/sys/kernel/random/boot_id"), before1, "the lab reads the host's own boot id");
    const t0 = Date.now();
    await ssh(lab, h1.address, "systemctl reboot");
    await lab.waitForBoot(h1.name, before1, 30_000);
    const rebootMs = Date.now() - t0;
    assert.notEqual(lab.bootId(h1.name), before1);
    assert.equal(await ex(h1.name, "cat /proc/sys/kernel/random/boot_id"), lab.bootId(h1.name));
    assert.equal(await ex(h1.name, "readlink -f /run/current-system"), h1.currentSystem, "booted the profile's default generation");
    assert.equal(await ex(h1.name, "ls -A /run/keys | wc -l"), "0");
    assert.equal(await ex(h1.name, "systemctl is-system-running --wait"), "running");
    assert.equal(lab.bootId(h2.name), before2, "the other host did not reboot");
    assert.equal(fs.readFileSync("/proc/sys/kernel/random/boot_id", "utf8"), machineBoot, "the machine did not reboot");
    // `reboot` (the command) and `lab reboot` work the same way.
    const b = lab.bootId(h2.name);
    await ssh(lab, h2.address, "reboot");
    await lab.waitForBoot(h2.name, b, 30_000);
    const b3 = lab.bootId(hosts[2].name);
    await lab.reboot(hosts[2].name);
    assert.notEqual(lab.bootId(hosts[2].name), b3);
    assert.deepEqual((await lab.status()).map((h) => h.state), ["up", "up", "up"]);
    console.log(`# systemctl reboot to running again: ${rebootMs} ms`);
  });

  test("a host that powers itself off is off; lab reboot boots it again", async () => {
    const h = hosts[2];
    await ssh(lab, h.address, "systemctl poweroff");
    for (let i = 0; i < 200 && (await lab.status())[2].state !== "off"; i++) await new Promise((r) => setTimeout(r, 50));
    assert.equal((await lab.status())[2].state, "off");
    await lab.reboot(h.name);
    assert.equal((await lab.status())[2].state, "up");
    assert.equal(await ex(h.name, "systemctl is-system-running --wait"), "running");
  });

  test("down leaves no process, cgroup, netns, veth, mount or file", async () => {
    const pids = netns.flatMap(cgroupProcs);
    assert.ok(pids.length > 10, "the hosts' processes are in their cgroups");
    await lab.down();
    const left: string[] = [];
    for (const p of pids) { try { if (!/\) Z /.test(fs.readFileSync(`/proc/${p}/stat`, "utf8"))) left.push(`pid ${p}`); } catch { /* gone */ } }
    for (const ns of netns) {
      left.push(...cgroupsOf(ns).map((d) => `cgroup ${d}`));
      if (fs.existsSync(`/run/netns/${ns}`)) left.push(`netns ${ns}`);
      if ((await run(["ip", "-o", "link"])).stdout.includes(`${ns}o`)) left.push(`veth ${ns}o`);
      if (fs.existsSync(`/run/systemd/nspawn/propagate/${ns}`)) left.push(`nspawn state of ${ns}`);
    }
    if (fs.readFileSync("/proc/self/mountinfo", "utf8").includes(lab.dir)) left.push("mount under the lab dir");
    if (fs.existsSync(lab.dir)) left.push(`dir ${lab.dir}`);
    assert.deepEqual(left, []);
  });
});
