/**
 * The lab: NixOS-like target hosts on this machine, each in its own network namespace with its
 * own /nix, /etc, /run/keys and root home. By default (`init: "systemd"`) a host is a
 * systemd-nspawn container booting a real systemd as PID 1 from a seeded stand-in NixOS
 * generation (see systemd-host.ts); `init: "none"` keeps the init-less hosts (an sshd under a
 * shell PID 1 in its own mount and PID namespace). Everything a lab creates is recorded in
 * `<dir>/lab.json` *before* it is created, so `down` can remove it after a crash.
 */
import * as fs from "fs";
import * as net from "net";
import * as path from "path";
import { spawn } from "child_process";
import { run, commandExists } from "../util/run";
import { packageRoot } from "../util/package-root";
import { SystemdHosts, LabInit, systemdRequirements } from "./systemd-host";

/** Default lab directory (`--dir`); override with PULUMI_NIXOS_LAB_DIR. */
export const DEFAULT_LAB_DIR = process.env.PULUMI_NIXOS_LAB_DIR ?? "/var/tmp/pulumi-nixos-lab";

/** Default `init` of new labs (`--init`); override with PULUMI_NIXOS_LAB_INIT (e.g. to run tests on init-less hosts). */
export const DEFAULT_LAB_INIT = (process.env.PULUMI_NIXOS_LAB_INIT ?? "systemd") as LabInit;

/** Lab hosts take 10.231.<slot>.2/30; the machine's side of the veth is 10.231.<slot>.1. */
const SUBNET_PREFIX = "10.231";
const NETNS_PREFIX = "pnx";

/** What `lab status --json` prints for each host: enough for any program to target it. */
export interface LabHostInfo {
  name: string;
  address: string;
  port: number;
  user: string;
  privateKeyPath: string;
  /** The host's SSH public key, `ssh-ed25519 AAAA…` (pin it). */
  hostPublicKey: string;
  /** `up`, `cut` (off the network), `off` (powered off or crashed), `rebooting` (or still booting). */
  state: "up" | "cut" | "off" | "rebooting";
  /** `systemd` (PID 1 is systemd) or `none` (an init-less host). */
  init: LabInit;
  /** Store path /run/current-system points to, if any. */
  currentSystem?: string;
  /** Generation number of /nix/var/nix/profiles/system, if any. */
  generation?: number;
  /** Link shaping in effect (`lab link`). */
  link?: { rttMs?: number; rateMbit?: number };
  /** The lab host this one is reachable through (`lab up --behind`): reach it with that host as `proxy`. */
  behind?: string;
  /** The site this host is on (`lab up --site`): one LAN bridge, reached through the site's uplink. */
  site?: string;
}

/** One host's record in lab.json. */
interface HostRecord {
  name: string;
  slot: number;
  netns: string;
  vethOuter: string;
  vethInner: string;
  address: string;
  gateway: string;
  dir: string;
  /** The host's outer process: `unshare` (init none) or its nspawn supervisor (systemd). */
  unsharePid?: number;
  /** The host's PID 1 at its first boot (systemd hosts get a new one at each reboot). */
  initPid?: number;
  cut?: boolean;
  /** Set once this lab created the netns (until then the slot may belong to another lab). */
  owned?: boolean;
  /** Link shaping (`lab link`): a latency relay in front of sshd and/or a tbf rate limit. */
  link?: { relayPid?: number; relayPort?: number; rttMs?: number; rateMbit?: number };
  /** The host whose netns holds this host's veth (the only way in); absent: the machine's. */
  behind?: string;
  /** The site whose bridge holds this host's veth (`lab up --site`). */
  site?: string;
}

/**
 * A site (`lab up --site`): a namespace holding a bridge (the site's LAN, unshaped) that its hosts'
 * veths join, reached from the machine through one veth (the uplink, what `lab link --site` shapes).
 * It takes a slot like a host: the uplink is 10.231.<slot>.1 (machine) – .2 (site) /30, the LAN
 * 10.231.<slot>.128/25 (bridge .129, hosts from .130), routed by the machine through the uplink.
 */
interface SiteRecord {
  name: string;
  slot: number;
  netns: string;
  /** The uplink veth: the machine's end (count the site's traffic on its statistics) and the site's. */
  vethOuter: string;
  vethInner: string;
  owned?: boolean;
  /** Uplink shaping (`lab link --site`): tbf on both ends, and per host a latency relay in front of its sshd. */
  link?: { rttMs?: number; rateMbit?: number; relays?: Record<string, { pid: number; port: number }> };
}

interface LabRecord {
  dir: string;
  /** Absent in labs recorded before systemd hosts existed: those are init-less. */
  init?: LabInit;
  hosts: HostRecord[];
  sites?: SiteRecord[];
}
export type { HostRecord, SiteRecord };

/** Options for {@link Lab.up}. */
export interface LabUpOptions {
  /** Lab directory (default {@link DEFAULT_LAB_DIR}). */
  dir?: string;
  /** Number of hosts (ignored when `names` is given). */
  hosts?: number;
  /** Host names; default host1…hostN. */
  names?: string[];
  /**
   * `systemd` (default): each host boots systemd as PID 1 (systemd-nspawn) from a seeded stand-in
   * NixOS generation. `none`: an sshd under a shell PID 1, no systemd.
   */
  init?: LabInit;
  /**
   * Hosts on a network reachable only through another lab host (host → that host, which may
   * itself be behind one): their veth ends in the bastion's netns, and the machine routes their
   * addresses nowhere. Outbound they reach the lab network through the bastion's NAT.
   */
  behind?: Record<string, string>;
  /**
   * Sites: site name → its hosts. Those hosts share one bridge (the LAN) in the site's namespace,
   * reached from the machine through one veth (the uplink; shape it with {@link Lab.linkSite}).
   */
  sites?: Record<string, string[]>;
}

/** Users of every host: `deployer` (key login, passwordless sudo) and the `keys` group. */
const USER_SETUP = [
  "groupadd -f keys",
  "id deployer >/dev/null 2>&1 || useradd -m -s /bin/bash deployer",
  "usermod -p '*' deployer", // unlocked for key login (no password exists)
  "install -d -m 700 -o deployer -g deployer /home/deployer/.ssh",
  "install -m 600 -o deployer -g deployer /root/.ssh/authorized_keys /home/deployer/.ssh/authorized_keys",
  "echo 'deployer ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/deployer && chmod 440 /etc/sudoers.d/deployer",
].join("\n");

const HOST_ENV = ["HOME=/root", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"];

/**
 * The PATH of an SSH session on a lab host: NixOS's login PATH (nixos/modules/config/shells-environment.nix
 * and nixos/modules/security/wrappers: /run/wrappers/bin first, where `sudo` lives; then the
 * profiles and /run/current-system/sw/bin), then the machine's directories — a stand-in system's
 * `sw` has no bin/ of its own, its tools are the machine's.
 */
export const LOGIN_PATH = "/run/wrappers/bin:/root/.nix-profile/bin:/nix/var/nix/profiles/default/bin:/run/current-system/sw/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/**
 * What makes a host NixOS to a program: /etc/NIXOS and os-release's ID=nixos (what both
 * switch-to-configuration implementations check, switch-to-configuration.pl and ng's
 * do_system_switch), and a /boot of its own for the boot loader's record.
 */
function nixosLook(hostDir: string): void {
  fs.writeFileSync(path.join(hostDir, "etc/NIXOS"), "");
  fs.rmSync(path.join(hostDir, "etc/os-release"), { force: true });
  fs.writeFileSync(path.join(hostDir, "etc/os-release"), [
    'ANSI_COLOR="1;34"', 'BUG_REPORT_URL="https://github.com/NixOS/nixpkgs/issues"', 'HOME_URL="https://nixos.org/"',
    "ID=nixos", 'LOGO="nix-snowflake"', "NAME=NixOS", 'PRETTY_NAME="NixOS 24.05 (Uakari) (pulumi-nixos lab)"',
    'VERSION="24.05 (Uakari)"', "VERSION_CODENAME=uakari", 'VERSION_ID="24.05"', "",
  ].join("\n"));
  for (const f of ["etc/lsb-release", "etc/debian_version"]) fs.rmSync(path.join(hostDir, f), { force: true });
  fs.mkdirSync(path.join(hostDir, "boot"), { recursive: true, mode: 0o755 });
}

/** Checks that this process can build a lab: root, and the tools it drives. */
export async function checkLabRequirements(init: LabInit = "systemd"): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error("the lab needs root (network and mount namespaces): run as root");
  const missing: string[] = [];
  for (const cmd of ["unshare", "nsenter", "ip", "tc", "/usr/sbin/sshd", "ssh-keygen", "nix-store", "useradd", "sudo"]) {
    if (!(await commandExists(cmd))) missing.push(cmd);
  }
  if (missing.length) {
    throw new Error(`the lab needs ${missing.join(", ")}: apt-get install -y nix-bin openssh-server iproute2 sudo`);
  }
  if (init === "systemd") await systemdRequirements();
}

/** Checks the tools a lab with hosts behind a bastion needs beyond {@link checkLabRequirements}. */
async function checkBehindRequirements(): Promise<void> {
  if (!(await commandExists("nft"))) throw new Error("lab --behind: hosts behind a bastion reach out through its NAT, which needs nft: apt-get install -y nftables");
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Resolves when a TCP connect to address:port succeeds, or rejects after timeoutMs. */
export async function waitForPort(address: string, port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ host: address, port, timeout: 500 });
      s.once("connect", () => { s.destroy(); resolve(true); });
      s.once("error", () => resolve(false));
      s.once("timeout", () => { s.destroy(); resolve(false); });
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`${address}:${port} did not come up within ${timeoutMs} ms`);
    await sleep(100);
  }
}

function pidAlive(pid: number | undefined): boolean {
  if (!pid) return false;
  try { process.kill(pid, 0); } catch { return false; }
  // A zombie still answers kill 0; it is not alive for us.
  try { return !/\) Z /.test(fs.readFileSync(`/proc/${pid}/stat`, "utf8")); } catch { return false; }
}

/** A running (or recorded) lab. */
export class Lab {
  private readonly systemd: SystemdHosts;
  private constructor(readonly dir: string, private record: LabRecord) {
    this.systemd = new SystemdHosts(dir, () => this.save());
  }

  /** How this lab's hosts boot (`none` for labs recorded before systemd hosts). */
  get init(): LabInit { return this.record.init ?? "none"; }

  /** The host's current PID 1 (systemd hosts: the container's systemd, renewed at each boot). */
  private pid1(h: HostRecord): number | undefined {
    return this.init === "systemd" ? this.systemd.pid1(h) : h.initPid;
  }

  /** Where the host's boot id and power state are kept. */
  private stateDir(h: HostRecord): string {
    return this.init === "systemd" ? path.join(h.dir, "state") : h.dir;
  }

  /** Path of the client private key that every lab host accepts for root and deployer. */
  get privateKeyPath(): string { return path.join(this.dir, "id_ed25519"); }

  /** Opens the lab recorded in dir. */
  static open(dir = DEFAULT_LAB_DIR): Lab {
    const file = path.join(dir, "lab.json");
    if (!fs.existsSync(file)) throw new Error(`no lab in ${dir} (run: pulumi-nixos lab up --dir ${dir})`);
    return new Lab(dir, JSON.parse(fs.readFileSync(file, "utf8")));
  }

  /** Brings up a lab of hosts in parallel. */
  static async up(opts: LabUpOptions = {}): Promise<Lab> {
    const init = opts.init ?? DEFAULT_LAB_INIT;
    if (init !== "systemd" && init !== "none") throw new Error(`lab init '${init}': use systemd or none`);
    await checkLabRequirements(init);
    const dir = path.resolve(opts.dir ?? DEFAULT_LAB_DIR);
    if (fs.existsSync(path.join(dir, "lab.json"))) {
      throw new Error(`a lab is already recorded in ${dir}: run 'pulumi-nixos lab down --dir ${dir}' first`);
    }
    const names = opts.names ?? Array.from({ length: opts.hosts ?? 3 }, (_, i) => `host${i + 1}`);
    for (const n of names) {
      if (!/^[a-z][a-z0-9-]{0,30}$/.test(n)) throw new Error(`lab host name '${n}': use lowercase letters, digits and '-'`);
    }
    if (new Set(names).size !== names.length) throw new Error("lab host names must be distinct");
    const behind = opts.behind ?? {};
    for (const [n, b] of Object.entries(behind)) {
      if (!names.includes(n) || !names.includes(b)) throw new Error(`lab --behind ${n}=${b}: both must be hosts of this lab (${names.join(", ")})`);
      for (let x: string | undefined = b, i = 0; x; x = behind[x], i++) if (x === n || i > names.length) throw new Error(`lab --behind: ${n} is behind itself`);
    }
    if (Object.keys(behind).length) await checkBehindRequirements();
    const siteOf: Record<string, string> = {};
    for (const [site, members] of Object.entries(opts.sites ?? {})) {
      if (!/^[a-z][a-z0-9-]{0,30}$/.test(site)) throw new Error(`lab --site '${site}': use lowercase letters, digits and '-'`);
      if (!members.length || members.length > 120) throw new Error(`lab --site ${site}: give it 1 to 120 hosts`);
      for (const n of members) {
        if (!names.includes(n)) throw new Error(`lab --site ${site}: '${n}' is not a host of this lab (${names.join(", ")})`);
        if (siteOf[n]) throw new Error(`lab --site: ${n} is on two sites (${siteOf[n]}, ${site})`);
        if (behind[n]) throw new Error(`lab --site ${site}: ${n} is also behind ${behind[n]}; a host is either on a site or behind a bastion`);
        siteOf[n] = site;
      }
    }
    fs.mkdirSync(path.join(dir, "hosts"), { recursive: true, mode: 0o700 });
    const lab = new Lab(dir, { dir, init, hosts: [] });
    lab.save();
    try {
      // The seeded generations build while the keys and slots are made.
      const seeds = init === "systemd" ? lab.systemd.buildSeeds(names) : Promise.resolve(undefined);
      seeds.catch(() => undefined);
      await run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "pulumi-nixos-lab", "-f", lab.privateKeyPath]);
      const slots = await freeSlots(names.length);
      const records = names.map((name, i) => lab.recordHost(name, slots[i]));
      for (const h of records) if (behind[h.name]) h.behind = behind[h.name];
      const siteNames = Object.keys(opts.sites ?? {});
      if (siteNames.length) {
        const taken = new Set(records.map((h) => h.slot));
        const siteSlots = (await freeSlots(taken.size + siteNames.length)).filter((x) => !taken.has(x));
        lab.record.sites = siteNames.map((name, i) => ({ name, ...siteSlotFields(siteSlots[i]) }));
        for (const site of lab.record.sites) {
          opts.sites![site.name].forEach((n, i) => Object.assign(records.find((h) => h.name === n)!, siteHostFields(site, i)));
        }
      }
      lab.save(); // recorded before anything exists, so a crash below is still cleaned by down
      for (const site of lab.record.sites ?? []) await lab.createSite(site);
      const seeded = await seeds;
      // Bastions first: a host's veth goes into its bastion's netns.
      const made = new Set<string>();
      while (made.size < records.length) {
        const wave = records.filter((h) => !made.has(h.name) && (!h.behind || made.has(h.behind)));
        await Promise.all(wave.map((h) => lab.createHost(h, seeded && { seed: seeded.seeds[records.indexOf(h)], systemdTools: seeded.systemdTools })));
        for (const h of wave) made.add(h.name);
      }
    } catch (e) {
      if (!process.env.PULUMI_NIXOS_LAB_KEEP_FAILED) await lab.down().catch(() => undefined);
      throw e;
    }
    return lab;
  }

  private recordHost(name: string, slot: number): HostRecord {
    const h: HostRecord = { name, ...this.slotFields(slot), dir: path.join(this.dir, "hosts", name) };
    this.record.hosts.push(h);
    return h;
  }

  private slotFields(slot: number) {
    return {
      slot,
      netns: `${NETNS_PREFIX}${slot}`,
      vethOuter: `${NETNS_PREFIX}${slot}o`,
      vethInner: `${NETNS_PREFIX}${slot}i`,
      address: `${SUBNET_PREFIX}.${slot}.2`,
      gateway: `${SUBNET_PREFIX}.${slot}.1`,
    };
  }

  private save(): void {
    const file = path.join(this.dir, "lab.json");
    fs.writeFileSync(file + ".tmp", JSON.stringify(this.record, null, 2));
    fs.renameSync(file + ".tmp", file);
  }

  private host(name: string): HostRecord {
    const h = this.record.hosts.find((x) => x.name === name);
    if (!h) throw new Error(`no lab host '${name}' (hosts: ${this.record.hosts.map((x) => x.name).join(", ")})`);
    return h;
  }

  /** Host names in creation order. */
  get names(): string[] { return this.record.hosts.map((h) => h.name); }

  private async createHost(h: HostRecord, seed?: { seed: string; systemdTools: string }): Promise<void> {
    // The netns name is the slot's reservation: `ip netns add` fails if another lab took it meanwhile.
    for (let attempt = 0; ; attempt++) {
      const r = await run(["ip", "netns", "add", h.netns], { allowFailure: true });
      if (r.code === 0) { h.owned = true; this.save(); break; }
      if (attempt > 20 || !/exists/i.test(r.stderr)) throw new Error(`ip netns add ${h.netns}: ${r.stderr.trim()}`);
      const taken = new Set(this.record.hosts.map((x) => x.slot));
      const [slot] = (await freeSlots(taken.size + 1)).filter((x) => !taken.has(x));
      Object.assign(h, this.slotFields(slot));
      this.save();
    }
    await this.prepareHostDir(h);
    if (this.init === "systemd") await this.systemd.prepare(h, seed!.seed, seed!.systemdTools, USER_SETUP);
    await run(["ip", "link", "add", h.vethOuter, "type", "veth", "peer", "name", h.vethInner]);
    await run(["ip", "link", "set", h.vethInner, "netns", h.netns]);
    const outer = this.outerNs(h);
    if (h.site) {
      // The host's veth joins the site's bridge: the site LAN carries host-to-host traffic unshaped.
      const site = this.site(h.site);
      await run(["ip", "link", "set", h.vethOuter, "netns", site.netns]);
      await run(["ip", "netns", "exec", site.netns, "ip", "link", "set", h.vethOuter, "master", "br0", "up"]);
    } else if (h.behind) {
      await run(["ip", "link", "set", h.vethOuter, "netns", this.host(h.behind).netns]);
      // Nothing on the machine routes there (nor leaks it to a default route): only the bastion reaches it.
      await run(["ip", "route", "add", "unreachable", `${h.gateway.replace(/\.1$/, ".0")}/30`]);
    }
    if (!h.site) {
      await run([...outer, "ip", "addr", "add", `${h.gateway}/30`, "dev", h.vethOuter]);
      await run([...outer, "ip", "link", "set", h.vethOuter, "up"]);
    }
    const inNs = (...a: string[]) => run(["ip", "netns", "exec", h.netns, ...a]);
    await inNs("ip", "addr", "add", `${h.address}/${h.site ? 25 : 30}`, "dev", h.vethInner);
    await inNs("ip", "link", "set", h.vethInner, "up");
    await inNs("ip", "link", "set", "lo", "up");
    // Only the lab subnet is routed: a lab host can reach the machine and other lab hosts, nothing else.
    await inNs("ip", "route", "add", `${SUBNET_PREFIX}.0.0/16`, "via", h.gateway);
    if (h.behind) await this.natThroughBastion(h);
    await this.boot(h);
    // Users and groups go into the host's own copy of /etc (systemd hosts: before their boot).
    if (this.init !== "systemd") await this.exec(h.name, ["sh", "-ec", USER_SETUP]);
  }

  private site(name: string): SiteRecord {
    const s = this.record.sites?.find((x) => x.name === name);
    if (!s) throw new Error(`no lab site '${name}' (sites: ${(this.record.sites ?? []).map((x) => x.name).join(", ") || "none"})`);
    return s;
  }

  /** Site names, in creation order. */
  get sites(): string[] { return (this.record.sites ?? []).map((s) => s.name); }

  /** The machine's end of a site's uplink veth: what crosses the uplink is counted on it (/sys/class/net/NAME/statistics). */
  uplinkDevice(site: string): string { return this.site(site).vethOuter; }

  /** The site's namespace: a bridge (the LAN), the uplink's inner end, forwarding between them. */
  private async createSite(site: SiteRecord): Promise<void> {
    const r = await run(["ip", "netns", "add", site.netns], { allowFailure: true });
    if (r.code !== 0) throw new Error(`ip netns add ${site.netns}: ${r.stderr.trim()}`);
    site.owned = true;
    this.save();
    const inNs = (...a: string[]) => run(["ip", "netns", "exec", site.netns, ...a]);
    const base = `${SUBNET_PREFIX}.${site.slot}`;
    await run(["ip", "link", "add", site.vethOuter, "type", "veth", "peer", "name", site.vethInner]);
    await run(["ip", "link", "set", site.vethInner, "netns", site.netns]);
    await run(["ip", "addr", "add", `${base}.1/30`, "dev", site.vethOuter]);
    await run(["ip", "link", "set", site.vethOuter, "up"]);
    // The machine reaches the site's LAN only through the uplink.
    await run(["ip", "route", "add", `${base}.128/25`, "via", `${base}.2`, "dev", site.vethOuter]);
    await inNs("ip", "link", "set", "lo", "up");
    await inNs("ip", "addr", "add", `${base}.2/30`, "dev", site.vethInner);
    await inNs("ip", "link", "set", site.vethInner, "up");
    await inNs("ip", "link", "add", "br0", "type", "bridge");
    await inNs("ip", "addr", "add", `${base}.129/25`, "dev", "br0");
    await inNs("ip", "link", "set", "br0", "up");
    await inNs("ip", "route", "add", `${SUBNET_PREFIX}.0.0/16`, "via", `${base}.1`);
    await inNs("sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward");
  }

  /**
   * Shapes a site's uplink: `rateMbit` with tbf on both ends of its veth; `rttMs` through one
   * user-space relay per host on the machine's end of the uplink (this kernel has no sch_netem:
   * `tc qdisc add … netem` answers "Specified qdisc kind is unknown"), so status gives each host
   * of the site as that relay's address and port. The LAN between the site's hosts stays unshaped.
   */
  async linkSite(name: string, o: { rttMs?: number; rateMbit?: number }): Promise<void> {
    await this.clearSiteLink(name);
    const site = this.site(name);
    site.link = {};
    if (o.rateMbit) {
      await shapeRate(site, o.rateMbit);
      site.link.rateMbit = o.rateMbit;
    }
    if (o.rttMs) {
      site.link.relays = {};
      for (const h of this.record.hosts.filter((x) => x.site === name)) {
        site.link.relays[h.name] = await startRelay(`${SUBNET_PREFIX}.${site.slot}.1`, h.address, o.rttMs, (pid) => { site.link!.relays![h.name] = { pid, port: 0 }; this.save(); });
      }
      site.link.rttMs = o.rttMs;
    }
    this.save();
  }

  /** Removes a site's uplink shaping. */
  async clearSiteLink(name: string): Promise<void> {
    const site = this.site(name);
    for (const r of Object.values(site.link?.relays ?? {})) if (pidAlive(r.pid)) process.kill(r.pid, "SIGTERM");
    if (site.link?.rateMbit) {
      await run(["tc", "qdisc", "del", "dev", site.vethOuter, "root"], { allowFailure: true });
      await run(["ip", "netns", "exec", site.netns, "tc", "qdisc", "del", "dev", site.vethInner, "root"], { allowFailure: true });
    }
    site.link = undefined;
    this.save();
  }

  /** argv prefix running a command where the host's outer veth lives (the machine, or its bastion's netns). */
  private outerNs(h: HostRecord): string[] {
    return h.behind ? ["ip", "netns", "exec", this.host(h.behind).netns] : [];
  }

  /**
   * Outbound through the bastion, as a private network's NAT gateway gives it: the bastion forwards
   * and masquerades what the hidden host sends to the lab network (a channel mirror on the machine,
   * say), so answers come back through it; nothing outside reaches in. Rules live in the bastion's
   * netns (gone with it), never in the machine's.
   */
  private async natThroughBastion(h: HostRecord): Promise<void> {
    const outer = this.outerNs(h);
    await run([...outer, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"]);
    const rules = [
      "add table ip pulumi_nixos_lab",
      "add chain ip pulumi_nixos_lab postrouting { type nat hook postrouting priority srcnat; policy accept; }",
      `add rule ip pulumi_nixos_lab postrouting ip saddr ${h.gateway.replace(/\.1$/, ".0")}/30 oifname != ${JSON.stringify(h.vethOuter)} masquerade`,
    ].join("\n");
    await run([...outer, "nft", "-f", "-"], { input: rules + "\n" });
  }

  /** Waits for the host's sshd from where its veth ends (a host behind a bastion: from the bastion's netns). */
  private async waitForSshd(h: HostRecord, timeoutMs: number): Promise<void> {
    if (!h.behind) return waitForPort(h.address, 22, timeoutMs);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = await run([...this.outerNs(h), "timeout", "1", "bash", "-c", `exec 3<>/dev/tcp/${h.address}/22`], { allowFailure: true });
      if (r.code === 0) return;
      if (Date.now() > deadline) throw new Error(`${h.address}:22 (behind ${h.behind}) did not come up within ${timeoutMs} ms`);
      await sleep(100);
    }
  }

  private async prepareHostDir(h: HostRecord): Promise<void> {
    for (const d of ["nix", "root/.ssh", "home", "etc"]) fs.mkdirSync(path.join(h.dir, d), { recursive: true, mode: 0o700 });
    for (const d of ["nix", "home"]) fs.chmodSync(path.join(h.dir, d), 0o755);
    // A private copy of /etc without the machine's own SSH host keys.
    await run(["cp", "-a", "/etc/.", path.join(h.dir, "etc")]);
    for (const f of fs.readdirSync(path.join(h.dir, "etc/ssh"))) {
      if (f.startsWith("ssh_host_")) fs.rmSync(path.join(h.dir, "etc/ssh", f));
    }
    fs.rmSync(path.join(h.dir, "etc/ssh/sshd_config.d"), { recursive: true, force: true });
    await run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", `root@${h.name}`, "-f", path.join(h.dir, "etc/ssh/ssh_host_ed25519_key")]);
    fs.writeFileSync(path.join(h.dir, "etc/ssh/sshd_config"), [
      `ListenAddress ${h.address}`,
      "Port 22",
      "HostKey /etc/ssh/ssh_host_ed25519_key",
      "PermitRootLogin prohibit-password",
      "PasswordAuthentication no",
      "KbdInteractiveAuthentication no",
      "UsePAM no",
      "PidFile /run/sshd.pid",
      "MaxStartups 200:30:400",
      "MaxSessions 100",
      "Subsystem sftp /usr/lib/openssh/sftp-server",
      `SetEnv PATH=${LOGIN_PATH}`,
      "",
    ].join("\n"));
    nixosLook(h.dir);
    fs.writeFileSync(path.join(h.dir, "etc/hostname"), `${h.name}\n`);
    fs.writeFileSync(path.join(h.dir, "etc/hosts"), `127.0.0.1 localhost\n${h.address} ${h.name}\n`);
    fs.mkdirSync(path.join(h.dir, "etc/nix"), { recursive: true });
    fs.writeFileSync(path.join(h.dir, "etc/nix/nix.conf"), "sandbox = false\nsubstituters =\nbuild-users-group =\n");
    fs.copyFileSync(this.privateKeyPath + ".pub", path.join(h.dir, "root/.ssh/authorized_keys"));
    fs.chmodSync(path.join(h.dir, "root/.ssh/authorized_keys"), 0o600);
    fs.writeFileSync(path.join(h.dir, "boot_id"), "");
  }

  /** Starts the host's PID 1 (host-init.sh, or systemd in a container) and waits for sshd. */
  private async boot(h: HostRecord): Promise<void> {
    if (this.init === "systemd") {
      await this.systemd.boot(h, 30_000);
      await this.waitForSshd(h, 15_000);
      return;
    }
    const labBin = path.join(packageRoot, "provider", "lab");
    const log = fs.openSync(path.join(h.dir, "init.log"), "a");
    const child = spawn("ip", ["netns", "exec", h.netns, "unshare", "--mount", "--uts", "--propagation", "private", "--pid",
      "--fork", "--mount-proc", "bash", path.join(labBin, "host-init.sh"), h.dir, labBin],
    { detached: true, stdio: ["ignore", log, log] });
    fs.closeSync(log);
    child.unref();
    h.unsharePid = child.pid;
    h.initPid = undefined;
    this.save();
    // `ip netns exec` execs unshare in place; unshare forks the namespace's PID 1.
    const deadline = Date.now() + 10_000;
    while (!h.initPid) {
      try {
        const kids = fs.readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, "utf8").trim();
        if (kids) h.initPid = Number(kids.split(/\s+/)[0]);
      } catch { /* not yet */ }
      if (!h.initPid) {
        if (Date.now() > deadline || !pidAlive(child.pid)) {
          throw new Error(`lab host ${h.name} did not start: ${fs.readFileSync(path.join(h.dir, "init.log"), "utf8")}`);
        }
        await sleep(20);
      }
    }
    this.save();
    await this.waitForSshd(h, 15_000);
  }

  /**
   * Runs argv inside host `name` as its root (its namespaces, a clean environment).
   * Rejects on a non-zero exit unless allowFailure.
   */
  exec(name: string, argv: string[], opts: { input?: string | Buffer; allowFailure?: boolean; timeoutMs?: number } = {}) {
    const h = this.host(name);
    const pid = this.pid1(h);
    if (!pidAlive(pid)) throw new Error(`lab host ${name} is not running`);
    // systemd hosts: also their UTS and IPC namespaces, and the container's root and cwd (a
    // --wd path would be opened outside the container's root).
    const ns = this.init === "systemd" ? ["-m", "-n", "-p", "-u", "-i", "-r", "-w"] : ["-m", "-n", "-p", "--wd=/"];
    return run(["nsenter", "-t", String(pid), ...ns, "--", "env", "-i", ...HOST_ENV, ...argv], opts);
  }

  /** A path inside host `name`'s filesystem view, readable from the machine (via /proc/PID/root). */
  hostPath(name: string, p: string): string {
    return path.join(`/proc/${this.pid1(this.host(name))}/root`, p);
  }

  /** Status of every host. */
  async status(): Promise<LabHostInfo[]> {
    const pub = fs.existsSync(this.privateKeyPath) ? this.privateKeyPath : "";
    return this.record.hosts.map((h) => {
      const alive = pidAlive(this.pid1(h));
      let power = "off";
      try { power = fs.readFileSync(path.join(this.stateDir(h), "power"), "utf8").trim(); } catch { /* never booted */ }
      // Between two boots (nspawn restarting, or shutting down) the supervisor still runs: not off yet.
      const between = !alive && this.init === "systemd" && this.systemd.running(h) && power !== "off";
      const state: LabHostInfo["state"] = between ? "rebooting" : !alive ? "off" : power !== "up" ? "rebooting" : h.cut ? "cut" : "up";
      let currentSystem: string | undefined;
      let generation: number | undefined;
      if (alive) {
        try { currentSystem = fs.readlinkSync(this.hostPath(h.name, "/run/current-system")); } catch { /* none yet */ }
      }
      try {
        const link = fs.readlinkSync(path.join(h.dir, "nix/var/nix/profiles/system"));
        generation = Number(/system-(\d+)-link/.exec(link)?.[1]);
      } catch { /* no profile yet */ }
      let hostPublicKey = "";
      try {
        hostPublicKey = fs.readFileSync(path.join(h.dir, "etc/ssh/ssh_host_ed25519_key.pub"), "utf8").trim().split(/\s+/).slice(0, 2).join(" ");
      } catch { /* not created */ }
      // With a latency relay, the host is reached through it (the machine's side of the veth).
      const viaRelay = h.link?.relayPort && pidAlive(h.link.relayPid);
      const siteRelay = h.site ? this.site(h.site).link?.relays?.[h.name] : undefined;
      const relayed = siteRelay?.port && pidAlive(siteRelay.pid) ? { address: `${SUBNET_PREFIX}.${this.site(h.site!).slot}.1`, port: siteRelay.port }
        : viaRelay ? { address: h.gateway, port: h.link!.relayPort! } : { address: h.address, port: 22 };
      return { ...(h.behind ? { behind: h.behind } : {}), ...(h.site ? { site: h.site } : {}), name: h.name, address: relayed.address, port: relayed.port, user: "root", privateKeyPath: pub, hostPublicKey, state, init: this.init, currentSystem, generation, link: h.link?.rttMs || h.link?.rateMbit ? { rttMs: h.link.rttMs, rateMbit: h.link.rateMbit } : undefined };
    });
  }

  /**
   * Gives host `name` a new SSH host key, as a reinstall (or someone in the middle) would, and
   * has its sshd serve it; returns the new key (`type base64`).
   */
  async rekey(name: string): Promise<string> {
    const h = this.host(name);
    await this.exec(name, ["sh", "-ec", "ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/k2; mv /etc/ssh/k2 /etc/ssh/ssh_host_ed25519_key; mv /etc/ssh/k2.pub /etc/ssh/ssh_host_ed25519_key.pub; kill -HUP $(cat /run/sshd.pid)"]);
    // sshd re-executes on SIGHUP: wait until it listens again.
    await sleep(100);
    await this.waitForSshd(h, 10_000);
    return (await this.exec(name, ["cat", "/etc/ssh/ssh_host_ed25519_key.pub"])).stdout.trim().split(/\s+/).slice(0, 2).join(" ");
  }

  /** Takes a host off the network: established connections stall, new ones fail. */
  async cut(name: string): Promise<void> {
    const h = this.host(name);
    await run(["ip", "netns", "exec", h.netns, "ip", "link", "set", h.vethInner, "down"]);
    h.cut = true;
    this.save();
  }

  /** Puts a cut host back on the network. */
  async restore(name: string): Promise<void> {
    const h = this.host(name);
    await run(["ip", "netns", "exec", h.netns, "ip", "link", "set", h.vethInner, "up"]);
    await run(["ip", "netns", "exec", h.netns, "ip", "route", "replace", `${SUBNET_PREFIX}.0.0/16`, "via", h.gateway]);
    h.cut = false;
    this.save();
  }

  /**
   * Shapes a host's link: `rttMs` adds latency through a user-space relay in front of its sshd
   * (status then gives the relay's address and port), `rateMbit` limits bandwidth both ways with tbf.
   */
  async link(name: string, o: { rttMs?: number; rateMbit?: number }): Promise<void> {
    if (this.host(name).behind) throw new Error(`lab link ${name}: not for a host behind a bastion (shape the bastion's link instead)`);
    if (this.host(name).site) throw new Error(`lab link ${name}: the host is on site ${this.host(name).site}; shape the site's uplink (lab link --site ${this.host(name).site})`);
    await this.clearLink(name);
    const h = this.host(name);
    h.link = {};
    if (o.rateMbit) {
      await shapeRate(h, o.rateMbit);
      h.link.rateMbit = o.rateMbit;
    }
    if (o.rttMs) {
      const child = spawn(process.execPath, [path.join(packageRoot, "dist/provider/lab/delay-relay.js"), h.gateway, "0", h.address, "22", String(o.rttMs)],
        { detached: true, stdio: ["ignore", "pipe", "inherit"] });
      h.link.relayPid = child.pid;
      this.save();
      const port = await new Promise<number>((resolve, reject) => {
        child.stdout!.once("data", (d: Buffer) => resolve(Number(d.toString().trim())));
        child.once("exit", (c) => reject(new Error(`delay relay exited with ${c}`)));
      });
      child.stdout!.destroy();
      child.unref();
      h.link.relayPort = port;
      h.link.rttMs = o.rttMs;
    }
    this.save();
  }

  /** Removes link shaping from a host. */
  async clearLink(name: string): Promise<void> {
    const h = this.host(name);
    if (h.link?.relayPid && pidAlive(h.link.relayPid)) process.kill(h.link.relayPid, "SIGTERM");
    if (h.link?.rateMbit) {
      await run(["tc", "qdisc", "del", "dev", h.vethOuter, "root"], { allowFailure: true });
      await run(["ip", "netns", "exec", h.netns, "tc", "qdisc", "del", "dev", h.vethInner, "root"], { allowFailure: true });
    }
    h.link = undefined;
    this.save();
  }

  /**
   * The system host `name` boots next: the boot-default record its switch-to-configuration's
   * boot loader step wrote (/boot/nixos-default), else its system profile's default; "" if none.
   */
  bootDefault(name: string): string {
    const h = this.host(name);
    try { const p = fs.readFileSync(path.join(h.dir, "boot/nixos-default"), "utf8").trim(); if (p) return p; } catch { /* never written */ }
    try { return path.join("/nix/store", path.basename(fs.readlinkSync(path.join(h.dir, "nix/var/nix/profiles", fs.readlinkSync(path.join(h.dir, "nix/var/nix/profiles/system")))))); } catch { return ""; }
  }

  /** Current boot id of a host (what its /proc/sys/kernel/random/boot_id says). */
  bootId(name: string): string {
    try { return fs.readFileSync(path.join(this.stateDir(this.host(name)), "boot_id"), "utf8").trim(); } catch { return ""; }
  }

  /**
   * Reboots one host (or boots it when powered off): its processes end, /run/keys is emptied,
   * the boot id changes and /run/current-system becomes the system profile's default.
   * Resolves when sshd answers again.
   */
  async reboot(name: string): Promise<void> {
    const h = this.host(name);
    // No PID 1 but a supervisor: either nspawn is restarting the host (a PID 1 comes) or the
    // host powered off and the supervisor is ending (it exits): wait for which one it is.
    if (this.init === "systemd") {
      for (let end = Date.now() + 10_000; this.systemd.running(h) && !this.pid1(h) && Date.now() < end;) await sleep(50);
    }
    if (this.init === "systemd" ? !this.systemd.running(h) : !pidAlive(h.initPid)) {
      await this.boot(h);
      return;
    }
    const before = this.bootId(name);
    // A systemd host between two boots (its nspawn restarting) just gets waited for.
    if (this.init === "systemd") { if (this.pid1(h)) await this.systemd.requestReboot(h); }
    else process.kill(h.initPid!, "SIGUSR1");
    await this.waitForBoot(name, before, 30_000);
  }

  /** Waits until a host has a boot id other than `before` and sshd accepts connections. */
  async waitForBoot(name: string, before: string, timeoutMs: number): Promise<void> {
    const h = this.host(name);
    const deadline = Date.now() + timeoutMs;
    const power = () => { try { return fs.readFileSync(path.join(this.stateDir(h), "power"), "utf8").trim(); } catch { return ""; } };
    while (this.bootId(name) === before || power() !== "up") {
      if (Date.now() > deadline) throw new Error(`lab host ${name} did not come back within ${timeoutMs} ms`);
      await sleep(50);
    }
    await this.waitForSshd(h, Math.max(1000, deadline - Date.now()));
  }

  /** Removes every process, namespace, veth, mount and file the lab created. Idempotent. */
  async down(): Promise<void> {
    const errors: string[] = [];
    await Promise.all(this.record.hosts.map(async (h) => {
      if (this.init === "systemd") {
        if (!h.owned) return; // the slot (and so its cgroup name) may be another lab's
        // Powered off, then everything left in the host's cgroups killed (pids are not trusted: they may be reused).
        if (h.link?.relayPid && pidAlive(h.link.relayPid)) { try { process.kill(h.link.relayPid, "SIGKILL"); } catch { /* gone */ } }
        errors.push(...await this.systemd.stop(h));
      } else {
        // Killing a PID namespace's PID 1 makes the kernel kill every process in it.
        for (const pid of [h.initPid, h.unsharePid, h.link?.relayPid]) {
          if (pid && pidAlive(pid)) { try { process.kill(pid, "SIGKILL"); } catch { /* gone */ } }
        }
        for (let i = 0; i < 100 && (pidAlive(h.initPid) || pidAlive(h.unsharePid) || pidAlive(h.link?.relayPid)); i++) await sleep(20);
      }
      if (!h.owned) return;
      await run(["ip", "link", "del", h.vethOuter], { allowFailure: true });
      if (h.behind) await run(["ip", "route", "del", "unreachable", `${h.gateway.replace(/\.1$/, ".0")}/30`], { allowFailure: true });
      if (fs.existsSync(`/run/netns/${h.netns}`)) {
        const r = await run(["ip", "netns", "del", h.netns], { allowFailure: true });
        if (r.code !== 0) errors.push(`netns ${h.netns}: ${r.stderr.trim()}`);
      }
    }));
    for (const site of this.record.sites ?? []) {
      for (const r of Object.values(site.link?.relays ?? {})) if (pidAlive(r.pid)) { try { process.kill(r.pid, "SIGKILL"); } catch { /* gone */ } }
      if (!site.owned) continue;
      // Deleting the uplink's machine end takes its route with it.
      await run(["ip", "link", "del", site.vethOuter], { allowFailure: true });
      if (fs.existsSync(`/run/netns/${site.netns}`)) {
        const r = await run(["ip", "netns", "del", site.netns], { allowFailure: true });
        if (r.code !== 0) errors.push(`netns ${site.netns}: ${r.stderr.trim()}`);
      }
    }
    if (this.init === "systemd") this.systemd.removeShared();
    if (errors.length) throw new Error(`lab down: ${errors.join("; ")}`);
    // Store paths are read-only: make the tree writable before removing it.
    if (fs.existsSync(this.dir)) {
      await run(["chmod", "-R", "u+w", this.dir], { allowFailure: true });
      fs.rmSync(this.dir, { recursive: true, force: true });
    }
  }
}

function siteSlotFields(slot: number) {
  return { slot, netns: `${NETNS_PREFIX}${slot}`, vethOuter: `${NETNS_PREFIX}${slot}o`, vethInner: `${NETNS_PREFIX}${slot}i` };
}

/** A site host's address on the site's LAN (10.231.<site slot>.130 + i), its gateway the bridge. */
function siteHostFields(site: SiteRecord, i: number) {
  return { site: site.name, address: `${SUBNET_PREFIX}.${site.slot}.${130 + i}`, gateway: `${SUBNET_PREFIX}.${site.slot}.129` };
}

/** Starts a delay relay listening on `listen` (a free port) to target:22; resolves with its pid and port. */
async function startRelay(listen: string, target: string, rttMs: number, started: (pid: number) => void): Promise<{ pid: number; port: number }> {
  const child = spawn(process.execPath, [path.join(packageRoot, "dist/provider/lab/delay-relay.js"), listen, "0", target, "22", String(rttMs)],
    { detached: true, stdio: ["ignore", "pipe", "inherit"] });
  started(child.pid!);
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout!.once("data", (d: Buffer) => resolve(Number(d.toString().trim())));
    child.once("exit", (c) => reject(new Error(`delay relay exited with ${c}`)));
  });
  child.stdout!.destroy();
  child.unref();
  return { pid: child.pid!, port };
}

/**
 * Limits a veth pair to `rateMbit` each way (tbf on both ends; the burst is 10 ms of the rate, at
 * least 32 KiB): a host's own link or a site's uplink.
 */
async function shapeRate(link: { vethOuter: string; vethInner: string; netns: string }, rateMbit: number): Promise<void> {
  const burst = Math.max(32 * 1024, Math.round((rateMbit * 1e6) / 8 / 100));
  for (const [pre, dev] of [[[], link.vethOuter], [["ip", "netns", "exec", link.netns], link.vethInner]] as const) {
    await run([...pre, "tc", "qdisc", "replace", "dev", dev, "root", "tbf", "rate", `${rateMbit}mbit`, "burst", String(burst), "latency", "100ms"]);
  }
}

/** Slots (10.231.<slot>.0/30) not used by any existing netns of ours. */
async function freeSlots(n: number): Promise<number[]> {
  const used = new Set<number>();
  if (fs.existsSync("/run/netns")) {
    for (const f of fs.readdirSync("/run/netns")) {
      const m = new RegExp(`^${NETNS_PREFIX}(\\d+)$`).exec(f);
      if (m) used.add(Number(m[1]));
    }
  }
  const out: number[] = [];
  for (let s = 1; s < 255 && out.length < n; s++) if (!used.has(s)) out.push(s);
  if (out.length < n) throw new Error("no free lab address slots (10.231.1-254.0/30)");
  return out;
}
