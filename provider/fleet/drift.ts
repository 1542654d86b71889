/**
 * `pulumi-nixos diff`: what each host runs now against what the stack recorded, as package,
 * version and size lines (the same lines as the plan's `closureChanges`).
 */
import { FleetMachine } from "./state";
import { withReadSession } from "./ops";
import { readRemoteClosure } from "../host/remote-closure";
import { ClosureManifest, isManifest, manifestOf } from "../nix/manifest";
import { diffManifests, formatDiff } from "../nix/closure-diff";

/** One machine's drift. */
export interface DriftRow {
  name: string;
  /** The system the stack recorded. */
  recorded: string;
  /** What `/run/current-system` points at on the host. */
  running: string;
  /** Whether the host runs the recorded system. */
  same: boolean;
  /** `nginx 1.24.0 → 1.26.1`, … and the size line: recorded → running (empty when the same). */
  changes: string[];
}

/**
 * Reads the host's current system and its closure (names and sizes) over SSH and compares it
 * with the manifest recorded at deploy time. A state without a manifest (deployed before they
 * were recorded) reads the recorded system's closure on the host instead, when it is still there.
 */
export async function drift(m: FleetMachine): Promise<DriftRow> {
  return withReadSession(m, async (s) => {
    const running = await readRemoteClosure(s);
    const system = running.system ?? "";
    const row: DriftRow = { name: m.name, recorded: m.systemPath, running: system, same: system === m.systemPath, changes: [] };
    if (row.same) return row;
    let recorded: ClosureManifest | undefined = isManifest(m.closureManifest) && m.closureManifest.system === m.systemPath ? m.closureManifest : undefined;
    if (!recorded) {
      const closure = await readRemoteClosure(s, m.systemPath).catch(() => undefined);
      if (!closure) throw new Error(`${m.name}: the state records no closure manifest and the host no longer has ${m.systemPath}`);
      recorded = manifestOf(m.systemPath, closure, true);
    }
    row.changes = formatDiff(diffManifests(recorded, manifestOf(system, running, true)), { cap: 1000 });
    return row;
  });
}
