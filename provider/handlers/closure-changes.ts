/**
 * Machine's Check: what changes inside the machine (`closureChanges`, lines the plan shows) and
 * the manifest of the system it will run (`closureManifest`).
 *
 * Check sees the old *inputs* only (never the outputs), and the engine shows what Check returns
 * next to the old inputs, which hold what the previous run's Check returned. So:
 * - an unchanged system carries both properties over unchanged: a previous run's lines never
 *   appear as a change, and a no-op stays a no-op (Diff ignores both in any case);
 * - the deployed side is the old system's closure when it is in the local store, else the manifest
 *   a previous Check recorded in the inputs (another operator's deploy), exact or approximate.
 * Nothing here contacts a host; nothing fails the preview (a line says why there is no list).
 */
import { isValidLocally, realise } from "../nix/closure";
import { ClosureManifest, derivationManifest, isManifest, localManifest, packagesOf } from "../nix/manifest";
import { diffManifests, formatDiff } from "../nix/closure-diff";
import { resourceLogger } from "../util/log";
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
  closureChanges?: string[];
  closureManifest?: ClosureManifest;
}

export const APPROXIMATE = "approximate: not built yet — set previewBuild for the exact list";
const APPROXIMATE_OLD = "approximate: the deployed system was recorded before it was built (removals may be missing)";

/** Check's closure properties for `news`, given the old inputs `olds`. */
export async function closureCheck(olds: Side, news: Side): Promise<ClosureCheck> {
  const sys = news.systemPath;
  if (!sys || isUnknown(sys) || isUnknown(news.drvPath)) return {};
  if (olds.systemPath === sys) return carry(olds);
  try {
    return await compare(olds, news, sys);
  } catch (e) {
    const line = `closure changes unavailable: ${(e as Error).message.split("\n")[0]}`;
    resourceLogger(news.name ?? "machine")(line);
    return { closureChanges: [line] };
  }
}

function carry(olds: Side): ClosureCheck {
  const r: ClosureCheck = {};
  if (olds.closureChanges !== undefined) r.closureChanges = olds.closureChanges;
  if (olds.closureManifest !== undefined) r.closureManifest = olds.closureManifest;
  return r;
}

async function newSide(news: Side, sys: string): Promise<{ manifest: ClosureManifest; direct?: Set<string> }> {
  if (!(await isValidLocally(sys)) && news.drvPath && news.previewBuild) {
    resourceLogger(news.name ?? "machine")(`previewBuild: building ${news.drvPath}`);
    await realise(news.drvPath);
  }
  if (await isValidLocally(sys)) return { manifest: await localManifest(sys) };
  if (!news.drvPath) throw new Error(`${sys} is not in the local store and there is no derivation to read`);
  return derivationManifest(sys, news.drvPath);
}

async function oldSide(olds: Side): Promise<ClosureManifest | undefined> {
  const sys = olds.systemPath;
  if (!sys) return undefined;
  if (await isValidLocally(sys)) return localManifest(sys);
  return isManifest(olds.closureManifest) && olds.closureManifest.system === sys ? olds.closureManifest : undefined;
}

async function compare(olds: Side, news: Side, sys: string): Promise<ClosureCheck> {
  const [{ manifest, direct }, old] = await Promise.all([newSide(news, sys), oldSide(olds)]);
  if (!olds.systemPath) return { closureManifest: manifest };
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
  const log = resourceLogger(news.name ?? "machine");
  for (const l of lines) log(`closure: ${l}`);
  return { closureChanges: lines, closureManifest: manifest };
}
