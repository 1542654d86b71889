/**
 * Fan-out within a site: the plugin-wide coordinator of each site (all Machines of one run are
 * handled in one dynamic-provider plugin process). Each path the site lacks crosses the uplink
 * once, to the first host that needs it (the seed); every other host of the site gets it from a
 * host that has it, over the LAN (the least busy one: a tree, not a star), only what it lacks.
 * A refused or failed peer copy is taken over the uplink instead. Nothing here activates: the
 * deploy activates only once every path of the closure is on the host (activate.ts requirePaths).
 */
import { ClosurePath } from "../nix/closure";
import { SshSession } from "../ssh/session";
import { Logger, formatBytes, plural } from "../util/log";
import { copyToHost } from "../host/copy";
import { PeerEnd, copyFromPeer } from "./peer-copy";

/** Transfers one host sends at once: more wait for it, or for a host that got the paths meanwhile. */
const MAX_SENDS = 2;

/** A site host joining the fan-out: its deploy's session and how its peers reach it. */
export interface SiteMember extends Omit<PeerEnd, "session"> {
  session: SshSession;
}

/** Where a host's paths came from. */
export interface FanOutResult {
  /** Paths and bytes it got over the uplink. */
  uplink: { paths: number; bytes: number };
  /** Per peer: paths and bytes it got from that host over the LAN. */
  peers: Record<string, { paths: number; bytes: number }>;
  /** Peer copies refused or failed (then taken over the uplink), with why. */
  refused: string[];
  /** What this site's uplink carried in this run so far (all hosts). */
  siteUplinkBytes: number;
}

/** One site's state in this process. */
class Site {
  /** path → hosts that have it (verified, or had it before). */
  private readonly holders = new Map<string, Set<string>>();
  /** path → its uplink copy in progress (resolves once a host of the site has it). */
  private readonly inflight = new Map<string, Promise<boolean>>();
  private readonly members = new Map<string, SiteMember>();
  /** Transfers each host is sending now (the least busy holder is asked). */
  private readonly load = new Map<string, number>();
  uplinkBytes = 0;
  /** Resolved (and renewed) whenever a transfer ends: who has what, and who is busy, changed. */
  private waiters: (() => void)[] = [];
  private changed(): void { const w = this.waiters; this.waiters = []; for (const r of w) r(); }
  private nextChange(): Promise<void> { return new Promise((r) => this.waiters.push(r)); }

  constructor(readonly name: string) {}

  private hold(path: string, host: string): void {
    let s = this.holders.get(path);
    if (!s) this.holders.set(path, s = new Set());
    s.add(host);
  }

  /** Gets `missing` (closure order) onto `me`: over the uplink what no host of the site has or fetches, the rest from peers. */
  async obtain(me: SiteMember, closure: ClosurePath[], missing: string[], log: Logger, timeoutMs: number): Promise<FanOutResult> {
    this.members.set(me.name, me);
    const lacking = new Set(missing);
    for (const p of closure) if (!lacking.has(p.path)) this.hold(p.path, me.name);
    const wanted = closure.filter((p) => lacking.has(p.path));
    const res: FanOutResult = { uplink: { paths: 0, bytes: 0 }, peers: {}, refused: [], siteUplinkBytes: 0 };
    const viaUplink = async (paths: ClosurePath[]) => {
      if (!paths.length) return;
      let done!: (ok: boolean) => void;
      const p = new Promise<boolean>((r) => { done = r; });
      for (const x of paths) this.inflight.set(x.path, p);
      try {
        log(`site ${this.name}: ${plural(paths.length, "path")} (${formatBytes(paths.reduce((n, x) => n + x.narSize, 0))}) over the uplink`);
        const c = await copyToHost(me.session, paths, { log });
        this.uplinkBytes += c.bytes;
        res.uplink.paths += paths.length;
        res.uplink.bytes += c.bytes;
        for (const x of paths) this.hold(x.path, me.name);
        done(true);
      } catch (e) {
        done(false);
        throw e;
      } finally {
        for (const x of paths) if (this.inflight.get(x.path) === p) this.inflight.delete(x.path);
        this.changed();
      }
    };
    // In closure order, runs of consecutive paths from one source: every path's references are
    // on the host (had, or copied by an earlier run) before it is imported.
    let rest = wanted;
    const sourcesOf = (p: ClosurePath) => [...(this.holders.get(p.path) ?? [])].filter((h) => h !== me.name && this.members.has(h));
    while (rest.length) {
      const first = rest[0];
      // A path some host fetches over the uplink now: wait for it (a failed fetch leaves it to us).
      if (this.inflight.has(first.path)) { await this.inflight.get(first.path); continue; }
      const holders = sourcesOf(first);
      if (!holders.length) {
        // Nobody in the site has or fetches it: this host is its seed.
        const run = prefix(rest, (p) => !sourcesOf(p).length && !this.inflight.has(p.path));
        rest = rest.slice(run.length);
        await viaUplink(run);
        continue;
      }
      const peer = holders.sort((x, y) => (this.load.get(x) ?? 0) - (this.load.get(y) ?? 0))[0];
      // Every holder busy: wait for one to finish, or for a host that got it to become a holder (a tree, not a star).
      if ((this.load.get(peer) ?? 0) >= MAX_SENDS) { await this.nextChange(); continue; }
      const batch = prefix(rest, (p) => !!this.holders.get(p.path)?.has(peer));
      rest = rest.slice(batch.length);
      this.load.set(peer, (this.load.get(peer) ?? 0) + 1);
      try {
        log(`site ${this.name}: ${plural(batch.length, "path")} (${formatBytes(batch.reduce((n, x) => n + x.narSize, 0))}) from ${peer} over the LAN`);
        const c = await copyFromPeer(this.members.get(peer)!, me, batch, timeoutMs);
        const r = res.peers[peer] ??= { paths: 0, bytes: 0 };
        r.paths += batch.length;
        r.bytes += c.bytes;
        for (const x of batch) this.hold(x.path, me.name);
      } catch (e) {
        const why = e instanceof Error ? e.message : String(e);
        res.refused.push(why);
        // A peer that failed is asked no more for these paths; they come over the uplink.
        for (const x of batch) this.holders.get(x.path)?.delete(peer);
        log(`site ${this.name}: copy from ${peer} not taken (${why}); over the uplink instead`);
        await viaUplink(batch);
      } finally {
        this.load.set(peer, (this.load.get(peer) ?? 1) - 1);
        this.changed();
      }
    }
    res.siteUplinkBytes = this.uplinkBytes;
    return res;
  }
}

/** The longest prefix of `xs` whose elements all satisfy `ok` (at least the first). */
function prefix<T>(xs: T[], ok: (x: T) => boolean): T[] {
  let n = 1;
  while (n < xs.length && ok(xs[n])) n++;
  return xs.slice(0, n);
}

const sites = new Map<string, Site>();

/** The coordinator of site `name` in this process (made on first use). */
export function siteCoordinator(name: string): Site {
  let s = sites.get(name);
  if (!s) sites.set(name, s = new Site(name));
  return s;
}

/** One line for the host's progress: where its paths came from. */
export function describeFanOut(site: string, r: FanOutResult): string {
  const parts = [
    ...(r.uplink.paths ? [`${plural(r.uplink.paths, "path")} (${formatBytes(r.uplink.bytes)}) over the uplink`] : []),
    ...Object.entries(r.peers).map(([peer, x]) => `${plural(x.paths, "path")} (${formatBytes(x.bytes)}) from ${peer}`),
  ];
  return `site ${site}: ${parts.join(", ") || "nothing to copy"}${r.refused.length ? `; ${plural(r.refused.length, "peer copy", "peer copies")} refused` : ""}; the site's uplink carried ${formatBytes(r.siteUplinkBytes)} in this run`;
}
