/**
 * A compact manifest of a system closure: package name → versions → short store hashes, plus the
 * closure's size. Recorded at deploy time in a Machine's outputs (and by Check in its inputs), so
 * the old side of a closure diff is known from state alone, also when the system is not in the
 * local store. Built from a local closure (exact), from a host's listing, or from the derivation
 * closure of a system not built yet (approximate: build-time inputs included, no sizes).
 */
import * as fs from "fs";
import { run } from "../util/run";
import { ClosurePath, closureOf } from "./closure";
import { parseStoreName } from "./names";
import { derivationShowCommand, nixVersion, parseDerivations, parsePathInfo, pathInfoCommand } from "./nix-json";

/** The recorded manifest (plain JSON, stored in state). */
export interface ClosureManifest {
  /** The system toplevel it describes (not itself listed in `packages`). */
  system: string;
  /** false: read from the derivation closure of an unbuilt system (a superset, no sizes). */
  exact: boolean;
  /** Store paths in the closure (with the toplevel). */
  paths: number;
  /** NAR bytes of the closure (exact manifests only). */
  bytes?: number;
  /**
   * One entry per package and version: `name version hash,hash` (`-` for no version; the first 8
   * characters of each store hash, one per output). Sorted.
   */
  packages: string[];
}

/** A manifest opened for comparison: name → version → hashes. */
export type Packages = Map<string, Map<string, Set<string>>>;

const HASH_CHARS = 8;

/** The manifest of store paths (a closure listing); `system` itself is left out of `packages`. */
export function manifestOf(system: string, paths: { path: string; narSize?: number }[], exact: boolean): ClosureManifest {
  const pk: Packages = new Map();
  for (const p of paths) {
    if (p.path === system) continue;
    const n = parseStoreName(p.path);
    const versions = pk.get(n.name) ?? new Map<string, Set<string>>();
    pk.set(n.name, versions);
    const hashes = versions.get(n.version) ?? new Set<string>();
    versions.set(n.version, hashes);
    hashes.add(n.hash.slice(0, HASH_CHARS));
  }
  const m: ClosureManifest = { system, exact, paths: paths.length, packages: serialize(pk) };
  if (exact) m.bytes = paths.reduce((n, p) => n + (p.narSize ?? 0), 0);
  return m;
}

function serialize(pk: Packages): string[] {
  const out: string[] = [];
  for (const [name, versions] of pk) {
    for (const [v, hashes] of versions) out.push(`${name} ${v === "" ? "-" : v} ${[...hashes].sort().join(",")}`);
  }
  return out.sort();
}

/** Opens a manifest's `packages` lines; malformed lines (a hand-edited state) are skipped. */
export function packagesOf(m: ClosureManifest): Packages {
  const pk: Packages = new Map();
  for (const line of m.packages ?? []) {
    const [name, v, hashes] = String(line).split(" ");
    if (!name || v === undefined) continue;
    const versions = pk.get(name) ?? new Map<string, Set<string>>();
    pk.set(name, versions);
    versions.set(v === "-" ? "" : v, new Set((hashes ?? "").split(",").filter(Boolean)));
  }
  return pk;
}

/** Whether a value from state looks like a manifest (older states have none). */
export function isManifest(v: unknown): v is ClosureManifest {
  return !!v && typeof v === "object" && typeof (v as ClosureManifest).system === "string" && Array.isArray((v as ClosureManifest).packages);
}

/** The exact manifest of a system valid in the local store (one `nix path-info --recursive`). */
export async function localManifest(system: string): Promise<ClosureManifest> {
  return manifestOf(system, await closureOf([system]), true);
}

/**
 * Exact manifests of those `systems` that are valid in the local store, in one
 * `nix path-info --json --recursive` (each closure walked from the references); a system that is
 * not valid is simply absent from the result (then each one is asked alone).
 */
export async function localManifests(systems: string[]): Promise<Map<string, ClosureManifest>> {
  const out = new Map<string, ClosureManifest>();
  // Not on disk: certainly not valid (no process spent on asking the store).
  systems = systems.filter((p) => fs.existsSync(p));
  if (!systems.length) return out;
  const r = await run(pathInfoCommand(await nixVersion(), ["--recursive", ...systems]), { allowFailure: true, timeoutMs: 120_000 });
  if (r.code !== 0) {
    if (systems.length > 1) for (const s of systems) for (const [k, v] of await localManifests([s])) out.set(k, v);
    return out;
  }
  // Any Nix's shape (a list ≤ 2.18, a map since 2.19, …): see nix-json.ts.
  const info = new Map(parsePathInfo(r.stdout).map((i) => [i.path, i]));
  for (const sys of systems.filter((s) => info.has(s))) {
    const seen = new Set([sys]);
    const todo = [sys];
    while (todo.length) for (const ref of info.get(todo.pop()!)?.references ?? []) if (!seen.has(ref)) { seen.add(ref); todo.push(ref); }
    out.set(sys, manifestOf(sys, [...seen].map((path) => ({ path, narSize: info.get(path)?.narSize ?? 0 })), true));
  }
  return out;
}

/** The exact manifest of an already read closure (the deploy has it anyway). */
export function manifestOfClosure(system: string, closure: ClosurePath[]): ClosureManifest {
  return manifestOf(system, closure, true);
}

/** An unbuilt system's manifest from its derivations, and the names of the system's direct packages. */
export interface ApproximateManifest {
  manifest: ClosureManifest;
  /** Names the toplevel (and its `system-path`, NixOS's systemPackages env) depend on directly. */
  direct: Set<string>;
}

/**
 * The approximate manifest of `system` from its derivation closure (what `nix-store -qR <drvPath>`
 * lists), read in one `nix derivation show --recursive` (`nix show-derivation` before Nix 2.15): the outputs of every derivation (their
 * paths are known before building) and the sources. A superset of the runtime closure:
 * build-time-only inputs are listed too.
 */
export async function derivationManifest(system: string, drvPath: string): Promise<ApproximateManifest> {
  const r = await run(derivationShowCommand(await nixVersion(), ["--recursive", drvPath]), { timeoutMs: 120_000 });
  // Full paths or basenames (2.32), inputs flat or nested (2.33): see nix-json.ts.
  const drvs = parseDerivations(r.stdout);
  const paths = new Set<string>();
  for (const d of drvs.values()) {
    for (const o of Object.values(d.outputs)) if (o) paths.add(o);
    for (const src of d.inputSrcs) paths.add(src);
  }
  // NixOS puts systemPackages in a `system-path` env: its inputs are what the operator selected.
  const direct = new Set<string>();
  for (const [p, d] of drvs) {
    if (p !== drvPath && parseStoreName(p).name !== "system-path") continue;
    for (const input of d.inputDrvs) direct.add(parseStoreName(input).name);
  }
  return { manifest: manifestOf(system, [...paths].map((path) => ({ path })), false), direct };
}
