/**
 * What changes between two closure manifests, as lines for a plan or a terminal: version changes,
 * added and removed packages, packages rebuilt at the same version, then the size. Ordered as
 * nvd orders its sections, each by name (deterministic), as `nix store diff-closures` does.
 */
import { formatBytes } from "../util/log";
import { ClosureManifest, Packages, packagesOf } from "./manifest";
import { compareVersions } from "./names";

/** One package whose versions changed. */
export interface VersionChange { name: string; from: string[]; to: string[]; upgrade: boolean }

/** The difference of two manifests. */
export interface ClosureDiff {
  changed: VersionChange[];
  added: { name: string; versions: string[] }[];
  removed: { name: string; versions: string[] }[];
  /** Same version on both sides, no store path in common: rebuilt (new inputs or build). */
  rebuilt: { name: string; version: string }[];
  /** Unversioned paths that changed (configuration files, units, …): names only. */
  otherChanged: string[];
  /** NAR bytes of each side, when that side is exact. */
  fromBytes?: number;
  toBytes?: number;
  fromPaths: number;
  toPaths: number;
}

/** Which names to compare when a side is approximate (see {@link diffManifests}). */
export interface DiffScope {
  /** Compare only these names of the new side (an approximate new side: known names + direct packages). */
  newNames?: Set<string>;
  /** Compare only these names of the old side (an approximate old side: names the new side has). */
  oldNames?: Set<string>;
}

const sortVersions = (vs: Iterable<string>) => [...vs].sort((a, b) => compareVersions(a, b) || a.localeCompare(b));
const restrict = (pk: Packages, names?: Set<string>): Packages => names ? new Map([...pk].filter(([n]) => names.has(n))) : pk;

/** Compares the recorded (old) manifest with the new one. */
export function diffManifests(oldM: ClosureManifest, newM: ClosureManifest, scope: DiffScope = {}): ClosureDiff {
  const a = restrict(packagesOf(oldM), scope.oldNames);
  const b = restrict(packagesOf(newM), scope.newNames);
  const d: ClosureDiff = { changed: [], added: [], removed: [], rebuilt: [], otherChanged: [], fromPaths: oldM.paths, toPaths: newM.paths };
  const names = [...new Set([...a.keys(), ...b.keys()])].sort();
  for (const name of names) {
    const va = a.get(name), vb = b.get(name);
    if (!va) { d.added.push({ name, versions: sortVersions(vb!.keys()) }); continue; }
    if (!vb) { d.removed.push({ name, versions: sortVersions(va.keys()) }); continue; }
    const from = sortVersions(va.keys()), to = sortVersions(vb.keys());
    if (from.join(" ") !== to.join(" ")) {
      // Up when the newest version went up, else when the oldest did (Nix's version order).
      const upgrade = (compareVersions(to[to.length - 1], from[from.length - 1]) || compareVersions(to[0], from[0])) >= 0;
      d.changed.push({ name, from, to, upgrade });
      continue;
    }
    for (const v of from) {
      const ha = va.get(v)!, hb = vb.get(v)!;
      if ([...hb].some((h) => ha.has(h))) continue;
      if (v === "") d.otherChanged.push(name);
      else d.rebuilt.push({ name, version: v });
    }
  }
  if (oldM.exact && oldM.bytes !== undefined) d.fromBytes = oldM.bytes;
  if (newM.exact && newM.bytes !== undefined) d.toBytes = newM.bytes;
  return d;
}

/** `1,204` */
const count = (n: number) => n.toLocaleString("en-US");
const versions = (vs: string[]) => vs.map((v) => v || "ε").join(", ");
/** Versionless additions and removals are shown by name alone. */
const named = (name: string, vs: string[]) => vs.length === 1 && vs[0] === "" ? name : `${name} ${versions(vs)}`;

/** Options of {@link formatDiff}. */
export interface FormatOptions {
  /** Most package lines before `… and N more` (default 30). */
  cap?: number;
  /** A first line (e.g. why the list is approximate). */
  header?: string;
}

/**
 * Lines such as `nginx 1.24.0 → 1.26.1`, `+ redis 7.2.4`, `- memcached 1.6.21`,
 * `openssl 3.0.13 (rebuilt)`, then `closure +14.2 MiB (1,204 → 1,219 paths)`.
 */
export function formatDiff(d: ClosureDiff, opts: FormatOptions = {}): string[] {
  const cap = opts.cap ?? 30;
  const body = [
    ...d.changed.map((c) => `${c.name} ${versions(c.from)} → ${versions(c.to)}`),
    ...d.added.map((x) => `+ ${named(x.name, x.versions)}`),
    ...d.removed.map((x) => `- ${named(x.name, x.versions)}`),
    ...d.rebuilt.map((x) => `${x.name} ${x.version} (rebuilt)`),
  ];
  const lines = opts.header ? [opts.header] : [];
  lines.push(...body.slice(0, cap));
  if (body.length > cap) lines.push(`… and ${count(body.length - cap)} more`);
  if (d.otherChanged.length) {
    const shown = d.otherChanged.slice(0, 5).join(", ");
    lines.push(`${count(d.otherChanged.length)} unversioned path${d.otherChanged.length === 1 ? "" : "s"} changed: ${shown}${d.otherChanged.length > 5 ? ", …" : ""}`);
  }
  if (d.fromBytes !== undefined && d.toBytes !== undefined) {
    const delta = d.toBytes - d.fromBytes;
    lines.push(`closure ${delta < 0 ? "-" : "+"}${formatBytes(Math.abs(delta))} (${count(d.fromPaths)} → ${count(d.toPaths)} paths)`);
  } else if (d.toBytes !== undefined) {
    lines.push(`closure ${formatBytes(d.toBytes)} (${count(d.toPaths)} paths; the deployed size was not recorded)`);
  } else if (d.fromBytes !== undefined) {
    lines.push(`closure size: known once built (deployed: ${formatBytes(d.fromBytes)}, ${count(d.fromPaths)} paths)`);
  } else {
    lines.push("closure size: known once built");
  }
  return lines;
}

/** `2 upgraded, 1 downgraded, 3 added, 1 removed, 1 rebuilt` (the parts that are not zero). */
export function summarizeDiff(d: ClosureDiff): string {
  const up = d.changed.filter((c) => c.upgrade).length;
  const parts: [number, string][] = [[up, "upgraded"], [d.changed.length - up, "downgraded"], [d.added.length, "added"], [d.removed.length, "removed"], [d.rebuilt.length, "rebuilt"]];
  return parts.filter(([n]) => n > 0).map(([n, w]) => `${n} ${w}`).join(", ") || "no package changes";
}
