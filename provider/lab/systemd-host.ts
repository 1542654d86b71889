/**
 * Systemd lab hosts: each host is a systemd-nspawn container (run without a host systemd:
 * `--register=no --keep-unit`) in the lab's network namespace and in cgroups of its own, whose
 * PID 1 is systemd booted from a seeded stand-in NixOS generation (system profile generation 1,
 * built here from the stand-in nixpkgs). Its sshd is that system's `sshd.service` (Debian's
 * `ssh.service` is masked), so a configuration can really turn sshd off. How it was found to
 * work on this kind of machine: shared/reference/systemd-lab-host.
 */
import * as fs from "fs";
import * as path from "path";
import { spawn } from "child_process";
import { run, commandExists } from "../util/run";
import { packageRoot } from "../util/package-root";
import { exportNixpkgsLib } from "../nix/nixpkgs-lib";
import type { HostRecord } from "./lab";

/** How lab hosts boot: systemd as PID 1 (default) or no init at all. */
export type LabInit = "systemd" | "none";

/** The stand-in nixpkgs the seeded generations are built from (shipped with the package). */
export const STANDIN_NIXPKGS = path.join(packageRoot, "test/fixtures/nixpkgs");

/** cgroup hierarchies of this machine (hybrid: name=systemd v1 + cgroup2 at unified; or pure cgroup2). */
function cgroupRoots(): string[] {
  if (fs.existsSync("/sys/fs/cgroup/unified/cgroup.procs")) return ["/sys/fs/cgroup/unified", "/sys/fs/cgroup/systemd"];
  if (fs.existsSync("/sys/fs/cgroup/cgroup.controllers")) return ["/sys/fs/cgroup"];
  return ["/sys/fs/cgroup/systemd"];
}
const CGROUP_PARENT = "pulumi-nixos-lab";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function alive(pid: number | undefined): boolean {
  if (!pid) return false;
  try { return !/\) Z /.test(fs.readFileSync(`/proc/${pid}/stat`, "utf8")); } catch { return false; }
}

/** Whether pid is alive and its command line contains `what` (guards against reused pids). */
function aliveAs(pid: number | undefined, what: string): boolean {
  if (!alive(pid)) return false;
  try { return fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(what); } catch { return false; }
}

/** Checks the tools systemd hosts need. */
export async function systemdRequirements(): Promise<void> {
  if (!(await commandExists("systemd-nspawn"))) {
    throw new Error("systemd lab hosts need systemd-nspawn: apt-get install -y systemd-container (or use --init none)");
  }
  if (!fs.existsSync("/lib/systemd/systemd")) throw new Error("systemd lab hosts need systemd (/lib/systemd/systemd) on this machine");
  if (!fs.existsSync(STANDIN_NIXPKGS)) throw new Error(`systemd lab hosts are seeded from the stand-in nixpkgs, missing at ${STANDIN_NIXPKGS}`);
  // The stand-in runs on the real nixpkgs lib: found (or a clear error) before any host exists.
  exportNixpkgsLib();
}

/**
 * A store path standing in for NixOS's `${systemd}/bin`: systemd's own tools (here links to the
 * machine's), nothing else — no coreutils. NixOS's systemd has that directory as its default
 * PATH (nixpkgs: pkgs/os-specific/linux/systemd/default.nix fills the placeholder of the patch
 * "path-util.h: add placeholder for DEFAULT_PATH_NORMAL" with $out/bin), so a transient unit
 * (systemd-run) on NixOS finds systemctl but not cat; the lab sets it as DefaultEnvironment.
 */
const SYSTEMD_TOOLS = `derivation { name = "systemd-lab-tools"; system = builtins.currentSystem; builder = "/bin/sh"; PATH = "/usr/bin:/bin";
  args = [ "-c" "mkdir -p $out/bin && for t in busctl hostnamectl journalctl localectl loginctl machinectl networkctl systemctl systemd-analyze systemd-ask-password systemd-cat systemd-cgls systemd-delta systemd-escape systemd-id128 systemd-notify systemd-path systemd-run systemd-socket-activate systemd-tmpfiles systemd-tty-ask-password-agent timedatectl udevadm; do if [ -e /usr/bin/$t ]; then ln -s /usr/bin/$t $out/bin/$t; elif [ -e /bin/$t ]; then ln -s /bin/$t $out/bin/$t; fi; done" ]; }`;

/** Lab units every systemd host has, outside any NixOS generation (in the host's /etc). */
const LAB_UNITS: Record<string, string> = {
  // Tells the lab (through /run/lab = HOSTDIR/state) that the host is up (sshd started), and its
  // boot id. Not after multi-user.target: a boot can wait there for keys that only come over SSH.
  "lab-ready.service": `[Unit]
Description=pulumi-nixos lab: report boot id and power state
After=sshd.service lab-sshd.service
[Service]
Environment=PATH=/usr/bin:/bin
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'cat /proc/sys/kernel/random/boot_id > /run/lab/boot_id.tmp && mv /run/lab/boot_id.tmp /run/lab/boot_id && echo up > /run/lab/power'
ExecStop=/bin/sh -c 'echo rebooting > /run/lab/power'
[Install]
WantedBy=multi-user.target
`,
  // Keeps a host reachable when its profile is not a stand-in NixOS system (no sshd.service of
  // its own): only then, since a stand-in system's stage 2 creates /run/booted-system.
  "lab-sshd.service": `[Unit]
Description=pulumi-nixos lab: sshd for a host whose system has none
ConditionPathExists=!/run/booted-system
After=network.target
[Service]
Environment=PATH=/usr/bin:/bin
ExecStartPre=/bin/mkdir -p /run/sshd
ExecStart=/usr/sbin/sshd -D -e -f /etc/ssh/sshd_config
KillMode=process
Restart=always
[Install]
WantedBy=multi-user.target
`,
};

/** Boots, reboots and removes systemd lab hosts (the part of {@link Lab} specific to them). */
export class SystemdHosts {
  constructor(private readonly labDir: string, private readonly save: () => void) {}

  private cgroup(h: HostRecord): string { return `${CGROUP_PARENT}/${h.netns}`; }

  /**
   * Builds one stand-in NixOS system per host name (hostName = the name), and the lab's
   * {@link SYSTEMD_TOOLS} store path, in one nix-build.
   */
  async buildSeeds(names: string[]): Promise<{ seeds: string[]; systemdTools: string }> {
    const expr = `[ (${SYSTEMD_TOOLS}) ] ++ map (n: (import ${STANDIN_NIXPKGS}/nixos { configuration = { networking.hostName = n; }; }).system) (builtins.fromJSON ''${JSON.stringify(names)}'')`;
    const r = await run(["nix-build", "--no-out-link", "-E", expr], {
      env: { ...process.env, NIX_CONFIG: `${process.env.NIX_CONFIG ?? ""}\nsubstituters =` }, timeoutMs: 300_000,
    });
    const out = r.stdout.trim().split("\n").filter(Boolean);
    if (out.length !== names.length + 1) throw new Error(`building the lab's seed systems gave ${out.length} paths for ${names.length} hosts (+ systemd's tools)`);
    return { systemdTools: out[0], seeds: out.slice(1) };
  }

  /**
   * The host's root: the machine's /usr (bound read-only at boot), its own /etc (already a
   * copy), /var, /nix, /root, /home; Debian's units not enabled, ssh.service masked, the lab's
   * units; users; and the seed as system profile generation 1.
   */
  async prepare(h: HostRecord, seed: string, systemdTools: string, userSetup: string): Promise<void> {
    const fsRoot = path.join(h.dir, "fs");
    for (const d of ["boot", "usr", "etc", "var/lib", "var/log", "var/cache", "var/spool", "var/tmp", "root", "home", "nix", "tmp", "proc", "sys", "dev", "run"]) {
      fs.mkdirSync(path.join(fsRoot, d), { recursive: true });
    }
    fs.chmodSync(path.join(fsRoot, "tmp"), 0o1777);
    fs.chmodSync(path.join(fsRoot, "var/tmp"), 0o1777);
    for (const l of ["bin", "sbin", "lib", "lib64"]) if (fs.existsSync(`/usr/${l}`)) fs.symlinkSync(`usr/${l}`, path.join(fsRoot, l));
    // nspawn wants an OS tree: a real os-release (the /etc bound over it has its own).
    fs.copyFileSync("/usr/lib/os-release", path.join(fsRoot, "etc/os-release"));
    fs.copyFileSync(path.join(packageRoot, "provider/lab/stage2.sh"), path.join(fsRoot, "lab-stage2"));
    fs.chmodSync(path.join(fsRoot, "lab-stage2"), 0o755);
    fs.mkdirSync(path.join(h.dir, "state"), { mode: 0o755 });

    const units = path.join(h.dir, "etc/systemd/system");
    // Nothing the machine itself enables runs in a host; Debian's sshd is replaced by the system's.
    for (const d of fs.readdirSync(units)) {
      const p = path.join(units, d);
      if (/\.(wants|requires)$/.test(d)) fs.rmSync(p, { recursive: true, force: true });
      else if (fs.lstatSync(p).isSymbolicLink()) fs.rmSync(p); // aliases (sshd.service), default.target
    }
    fs.symlinkSync("/dev/null", path.join(units, "ssh.service"));
    fs.symlinkSync("/lib/systemd/system/multi-user.target", path.join(units, "default.target"));
    fs.mkdirSync(path.join(units, "multi-user.target.wants"));
    for (const [name, text] of Object.entries(LAB_UNITS)) {
      fs.writeFileSync(path.join(units, name), text);
      fs.symlinkSync(`../${name}`, path.join(units, "multi-user.target.wants", name));
    }
    // NixOS's unit environment: systemd's default PATH is its own bin/ (see SYSTEMD_TOOLS); units
    // NixOS generates set Environment=PATH themselves, transient ones (systemd-run) do not.
    fs.mkdirSync(path.join(h.dir, "etc/systemd/system.conf.d"), { recursive: true });
    fs.writeFileSync(path.join(h.dir, "etc/systemd/system.conf.d/nixos-default-path.conf"), `[Manager]\nDefaultEnvironment=PATH=${systemdTools}/bin\n`);
    fs.writeFileSync(path.join(h.dir, "etc/fstab"), "");
    fs.writeFileSync(path.join(h.dir, "etc/machine-id"), (await run(["systemd-id128", "new"])).stdout);

    // Users, and the seed's closure + profile, into the host's own /etc, /home and /nix
    // (a private mount namespace with them bound in place).
    const inHost = [
      'for d in etc home root nix; do mount --bind "$1/$d" "/$d"; done',
      userSetup,
      "nix-store --import >/dev/null",
      'nix-env -p /nix/var/nix/profiles/system --set "$2" >/dev/null',
    ].join("\n");
    await run(["sh", "-ec", 'nix-store --export $(nix-store -qR "$2" "$4") | unshare --mount --propagation private sh -ec "$3" sh "$1" "$2"',
      "sh", h.dir, seed, inHost, systemdTools], { timeoutMs: 120_000 });
  }

  /** The container's PID 1 (systemd, or stage 2 before it), if the host runs. */
  pid1(h: HostRecord): number | undefined {
    try {
      const nspawn = Number(fs.readFileSync(path.join(h.dir, "nspawn.pid"), "utf8"));
      if (!aliveAs(nspawn, "systemd-nspawn")) return undefined;
      const kids = fs.readFileSync(`/proc/${nspawn}/task/${nspawn}/children`, "utf8").trim();
      return kids ? Number(kids.split(/\s+/)[0]) : undefined;
    } catch { return undefined; }
  }

  /** Whether the host's supervisor runs (the host is up, booting or rebooting). */
  running(h: HostRecord): boolean { return aliveAs(h.unsharePid, "nspawn-host.sh"); }

  /** Starts the host's supervisor and waits until systemd reports the boot complete (lab-ready.service). */
  async boot(h: HostRecord, timeoutMs: number): Promise<void> {
    const state = path.join(h.dir, "state");
    fs.rmSync(path.join(h.dir, "stop"), { force: true });
    fs.writeFileSync(path.join(state, "power"), "booting\n");
    const log = fs.openSync(path.join(h.dir, "supervisor.log"), "a");
    // detached: a session of its own, so nothing the lab's caller does (Ctrl-C) reaches the host.
    const child = spawn(path.join(packageRoot, "provider/lab/nspawn-host.sh"), [h.dir, h.name, h.netns, this.cgroup(h)],
      { detached: true, stdio: ["ignore", log, log] });
    fs.closeSync(log);
    child.unref();
    await new Promise<void>((resolve, reject) => { child.once("spawn", resolve); child.once("error", reject); });
    h.unsharePid = child.pid;
    h.initPid = undefined;
    this.save();
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      let power = "";
      try { power = fs.readFileSync(path.join(state, "power"), "utf8").trim(); } catch { /* not yet */ }
      if (power === "up") break;
      if (power === "off" || Date.now() > deadline) {
        const tail = (f: string) => { try { return fs.readFileSync(path.join(h.dir, f), "utf8").split("\n").slice(-15).join("\n"); } catch { return ""; } };
        throw new Error(`lab host ${h.name} did not boot (${power || "no power state"}): ${tail("supervisor.log")}\n${tail("console.log")}`);
      }
      await sleep(50);
    }
    h.initPid = this.pid1(h);
    this.save();
  }

  /** Asks the host's systemd to reboot (what `systemctl reboot` inside does). */
  async requestReboot(h: HostRecord): Promise<void> {
    const pid = this.pid1(h);
    if (!pid) throw new Error(`lab host ${h.name} is not running`);
    await run(["nsenter", "-t", String(pid), "-m", "-u", "-i", "-n", "-p", "-r", "-w", "--", "/usr/bin/systemctl", "reboot"], { timeoutMs: 15_000 });
  }

  /**
   * Powers the host off (orderly, bounded), then kills whatever is left in its cgroups and
   * removes them. Returns problems it could not fix.
   */
  async stop(h: HostRecord): Promise<string[]> {
    const errors: string[] = [];
    fs.mkdirSync(h.dir, { recursive: true });
    fs.writeFileSync(path.join(h.dir, "stop"), "");
    let nspawn: number | undefined;
    try { nspawn = Number(fs.readFileSync(path.join(h.dir, "nspawn.pid"), "utf8")); } catch { /* not running */ }
    // SIGTERM to nspawn = orderly poweroff of the container (SIGRTMIN+3 to its systemd).
    if (aliveAs(nspawn, "systemd-nspawn")) { try { process.kill(nspawn!, "SIGTERM"); } catch { /* gone */ } }
    for (let i = 0; i < 200 && (aliveAs(nspawn, "systemd-nspawn") || this.running(h)); i++) await sleep(50);
    const groups = cgroupRoots().map((r) => path.join(r, this.cgroup(h)));
    for (let i = 0; i < 100; i++) {
      const pids = groups.flatMap((g) => procsIn(g));
      if (!pids.length) break;
      for (const g of groups) { try { fs.writeFileSync(path.join(g, "cgroup.kill"), "1"); } catch { /* v1, or gone */ } }
      for (const p of pids) { try { process.kill(p, "SIGKILL"); } catch { /* gone */ } }
      await sleep(50);
    }
    for (const g of groups) {
      if (!removeCgroup(g)) errors.push(`cgroup ${g} (processes: ${procsIn(g).join(" ") || "none"})`);
    }
    try { fs.rmdirSync(`/run/systemd/nspawn/propagate/${h.netns}`); } catch { /* absent */ }
    return errors;
  }

  /** Removes the shared parents (cgroups, nspawn's state dirs) once no host of any lab uses them. */
  removeShared(): void {
    for (const r of cgroupRoots()) { try { fs.rmdirSync(path.join(r, CGROUP_PARENT)); } catch { /* another lab's hosts */ } }
    for (const d of ["/run/systemd/nspawn/propagate", "/run/systemd/nspawn/locks", "/run/systemd/nspawn"]) {
      try { fs.rmdirSync(d); } catch { /* in use, or absent */ }
    }
  }
}

/** Every process in a cgroup and its descendants. */
function procsIn(group: string): number[] {
  if (!fs.existsSync(group)) return [];
  const out: number[] = [];
  const walk = (g: string) => {
    try { out.push(...fs.readFileSync(path.join(g, "cgroup.procs"), "utf8").split("\n").filter(Boolean).map(Number)); } catch { /* gone */ }
    try { for (const e of fs.readdirSync(g, { withFileTypes: true })) if (e.isDirectory()) walk(path.join(g, e.name)); } catch { /* gone */ }
  };
  walk(group);
  return out;
}

/** rmdir a cgroup depth-first; true when it is gone. */
function removeCgroup(group: string): boolean {
  if (!fs.existsSync(group)) return true;
  const walk = (g: string) => {
    try { for (const e of fs.readdirSync(g, { withFileTypes: true })) if (e.isDirectory()) walk(path.join(g, e.name)); } catch { /* gone */ }
    try { fs.rmdirSync(g); } catch { /* busy */ }
  };
  walk(group);
  return !fs.existsSync(group);
}
