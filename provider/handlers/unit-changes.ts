/**
 * Machine's Check with `previewDryActivate`: in a preview, the units the host would stop, restart,
 * reload or start (`unitChanges`, beside `closureChanges` in the plan). The planned system is
 * built (previewDryActivate implies previewBuild), its closure copied to the host and
 * `switch-to-configuration dry-activate` run there under the host lock (host/dry-activate-host.ts):
 * the one case where a preview contacts a host. Never a reason to update by itself (Diff ignores
 * it, as closureChanges); never fails the preview (a line says why there is no list).
 */
import { isValidLocally, realise } from "../nix/closure";
import { normalizeConnection } from "../connection";
import { withHost } from "../ssh/pool";
import { dryActivateOnHost } from "../host/dry-activate-host";
import { resourceLogger } from "../util/log";
import { urnOf } from "../util/engine-log";
import { isUnknown } from "./validate";
import type { MachineInputs } from "./machine";

/** Check's `unitChanges` for `news` (old inputs `olds`); nothing unless a preview with previewDryActivate. */
export async function unitCheck(olds: Partial<MachineInputs>, news: MachineInputs, dryRun: boolean): Promise<{ unitChanges?: string[] }> {
  const sys = news.systemPath;
  if (!dryRun || news.previewDryActivate !== true || !sys || isUnknown(sys) || isUnknown(news.drvPath) || isUnknown(news.connection)) return {};
  // A new machine (nothing deployed yet) or an unchanged system: nothing to compare, no host contacted.
  if (!olds.systemPath || olds.systemPath === sys) return {};
  const log = resourceLogger(news.name ?? "machine", urnOf(news));
  try {
    if (!(await isValidLocally(sys))) {
      if (!news.drvPath) throw new Error(`${sys} is not in the local store and there is no derivation to build it`);
      log(`previewDryActivate: building ${news.drvPath}`);
      await realise(news.drvPath, log);
    }
    const conn = normalizeConnection(news.connection);
    const r = await withHost(conn, { pin: conn.hostPublicKey || undefined, connectTimeoutMs: (news.connectTimeout ?? 15) * 1000 },
      (s) => dryActivateOnHost(s, news.name, sys, { compress: news.compress, log }));
    // The plan's value may be shortened by the display: the lines are also logged in full.
    for (const l of r.lines) log(`units: ${l}`);
    return { unitChanges: r.lines.length ? r.lines : ["no unit would change"] };
  } catch (e) {
    const line = `unit changes unavailable: ${(e as Error).message.split("\n")[0]}`;
    log(line);
    return { unitChanges: [line] };
  }
}
