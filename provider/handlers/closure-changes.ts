/**
 * Machine's Check: what changes inside the machine (`closureChanges`, lines the plan shows) and
 * the manifest of the system it will run (`closureManifest`).
 *
 * Check sees the old *inputs* only (never the outputs), and the engine shows what Check returns
 * next to the old inputs, which hold what the last `up`'s Check returned. So the program tells
 * Check whether the run is a preview (`dryRun`, removed from the inputs again):
 * - a preview returns the lines and keeps the recorded manifest: the plan shows `closureChanges`
 *   as new (never a previous run's lines as the old side) and no manifest noise;
 * - an `up` returns no lines and records the new system's manifest in the inputs, the old side of
 *   the next preview when that system is not in the local store (another operator deployed it).
 *   The deployed side is the old system's own closure when it is in the local store.
 * An unchanged system keeps the recorded manifest and shows nothing (Diff ignores both anyway).
 * Nothing here contacts a host; nothing fails the preview (a line says why there is no list).
 */
import { isValidLocally, realise } from "../nix/closure";
import { ClosureManifest, derivationManifest, isManifest, localManifest, localManifests, packagesOf } from "../nix/manifest";
import { diffManifests, formatDiff } from "../nix/closure-diff";
import { resourceLogger } from "../util/log";
import { urnOf } from "../util/engine-log";
import { isUnknown } from "./validate";

/** What Check adds to a Machine's inputs. */
export interface ClosureCheck {
  closureChanges?: string[];
  closureManifest?: ClosureManifest;
}

/** The machine inputs this needs. */
interface Side {
  name?: string;
  systemPath?: string;
  drvPath?: string;
  previewBuild?: boolean;
  closureManifest?: ClosureManifest;
  /** The program's module arguments (unknown markers inside in a preview). */
  specialArgs?: unknown;
}

export const APPROXIMATE = "approximate: not built yet — set previewBuild for the exact list";
const APPROXIMATE_OLD = "approximate: the deployed system was recorded before it was built (removals may be missing)";

/** Check's closure properties for `news`, given the old inputs `olds`; `dryRun`: a preview. */
export async function closureCheck(olds: Side, news: Side, dryRun: boolean): Promise<ClosureCheck> {
  const sys = news.systemPath;
  const kept: ClosureCheck = olds.closureManifest !== undefined ? { closureManifest: olds.closureManifest } : {};
  if (!sys || isUnknown(sys) || isUnknown(news.drvPath)) {
    // Evaluated once the program's arguments are known: the plan says which it waits for.
    const pending = dryRun ? unknownPaths(news.specialArgs, "specialArgs") : [];
    const lines = pending.map((p) => `known after ${p} is known`);
    for (const l of lines) resourceLogger(news.name ?? "machine", urnOf(news))(`closure: ${l}`);
    return lines.length ? { ...kept, closureChanges: lines } : kept;
  }
  if (olds.systemPath === sys) {
    // A state from before manifests were recorded: an up records the deployed one when it is here.
    if (dryRun || isManifest(olds.closureManifest)) return kept;
    const local = (await localManifests([sys]).catch(() => undefined))?.get(sys);
    return local ? { closureManifest: local } : kept;
  }
  try {
    if (!dryRun) return { closureManifest: (await newSide(news, sys, (await localManifests([sys])).get(sys))).manifest };
    // A new machine has nothing to compare with: no closureChanges (an undefined value would not
    // serialize: the SDK's Struct conversion rejects it, failing the preview).
    const changes = await compare(olds, news, sys);
    return changes === undefined ? kept : { ...kept, closureChanges: changes };
  } catch (e) {
    const line = `closure changes unavailable: ${(e as Error).message.split("\n")[0]}`;
    resourceLogger(news.name ?? "machine", urnOf(news))(line);
    return dryRun ? { ...kept, closureChanges: [line] } : {};
  }
}

/** Paths of the values a preview does not know yet inside `v` (the engine's unknown marker). */
function unknownPaths(v: unknown, at: string): string[] {
  if (isUnknown(v)) return [at];
  if (Array.isArray(v)) return v.flatMap((x, i) => unknownPaths(x, `${at}.${i}`));
  if (v && typeof v === "object") return Object.entries(v).flatMap(([k, x]) => unknownPaths(x, `${at}.${k}`));
  return [];
}

/**
 * The new system's manifest: exact when it is in the local store (`local`, read with the old
 * side) or previewBuild builds it, else from its derivations.
 */
async function newSide(news: Side, sys: string, local?: ClosureManifest): Promise<{ manifest: ClosureManifest; direct?: Set<string> }> {
  if (local) return { manifest: local };
  if (news.drvPath && news.previewBuild && !(await isValidLocally(sys))) {
    resourceLogger(news.name ?? "machine", urnOf(news))(`previewBuild: building ${news.drvPath}`);
    await realise(news.drvPath);
    return { manifest: await localManifest(sys) };
  }
  if (!news.drvPath) {
    if (await isValidLocally(sys)) return { manifest: await localManifest(sys) };
    throw new Error(`${sys} is not in the local store and there is no derivation to read`);
  }
  return derivationManifest(sys, news.drvPath);
}

/** The deployed side: its closure when in the local store, else the manifest the inputs recorded. */
function oldSide(olds: Side, local?: ClosureManifest): ClosureManifest | undefined {
  if (local) return local;
  return isManifest(olds.closureManifest) && olds.closureManifest.system === olds.systemPath ? olds.closureManifest : undefined;
}

async function compare(olds: Side, news: Side, sys: string): Promise<string[] | undefined> {
  if (!olds.systemPath) return undefined;
  // Both sides at once: each closure read where it is (the new one falls back to its derivations).
  const oldPath = olds.systemPath;
  const [{ manifest, direct }, old] = await Promise.all([
    localManifests([sys]).then((m) => newSide(news, sys, m.get(sys))),
    localManifests([oldPath]).then((m) => oldSide(olds, m.get(oldPath))),
  ]);
  let lines: string[];
  if (!old) {
    lines = [`no manifest of the deployed system ${olds.systemPath} (not in the local store, not recorded): the next deploy records one`];
  } else if (!manifest.exact) {
    // Unbuilt: its derivation closure, restricted to names the deployed system has plus the direct packages.
    const names = new Set([...packagesOf(old).keys(), ...(direct ?? [])]);
    lines = formatDiff(diffManifests(old, manifest, { newNames: names }), { header: APPROXIMATE });
  } else if (!old.exact) {
    lines = formatDiff(diffManifests(old, manifest, { oldNames: new Set(packagesOf(manifest).keys()) }), { header: APPROXIMATE_OLD });
  } else {
    lines = formatDiff(diffManifests(old, manifest));
  }
  // The plan's value may be shortened by the display: the lines are also logged in full.
  const log = resourceLogger(news.name ?? "machine", urnOf(news));
  for (const l of lines) log(`closure: ${l}`);
  return lines;
}
