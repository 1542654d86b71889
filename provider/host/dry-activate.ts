/**
 * Reading what switch-to-configuration says it would do (`dry-activate`) or did (`switch`/`test`)
 * to the host's units. Both implementations print the same lines to stderr:
 * - switch-to-configuration-ng (pkgs/by-name/sw/switch-to-configuration-ng/src/src/main.rs,
 *   do_system_switch, "Show dry-run actions."): would stop, would NOT stop the following changed
 *   units, would activate the configuration..., would restart systemd, would reload, would restart,
 *   would start — units sorted case-insensitively, joined by ", ";
 * - the Perl one (nixos/modules/system/activation/switch-to-configuration.pl; its later versions,
 *   with dry activation scripts, print the same order; older ones, without "would activate", printed
 *   "would restart systemd" right after the skipped units, and reload last).
 * A changed service keeps its default `stopIfChanged = true`: it is stopped before the activation
 * and started after it, so it appears under both "would stop" and "would start"; that pair is a
 * restart to the operator (`unitChangeLines`).
 */

/** What a dry-activate said it would do, as the lists it printed. */
export interface DryActivation {
  /** "would stop the following units: …" (units gone, changed units stopped before the activation, sockets). */
  wouldStop: string[];
  /** "would start the following units: …" (changed units started after the activation, their sockets). */
  wouldStart: string[];
  /** "would restart the following units: …" (`stopIfChanged = false`, non-services, mounts). */
  wouldRestart: string[];
  /** "would reload the following units: …" (`reloadIfChanged`, reload triggers, remounts). */
  wouldReload: string[];
  /** "would NOT stop the following changed units: …" (`restartIfChanged = false`, RefuseManualStop). */
  notRestarting: string[];
  /** "would restart systemd": PID 1 or its system.conf changes (daemon-reexec). */
  restartSystemd: boolean;
}

const DRY: [RegExp, Exclude<keyof DryActivation, "restartSystemd">][] = [
  [/^would stop the following units: (.*)$/, "wouldStop"],
  [/^would start the following units: (.*)$/, "wouldStart"],
  [/^would restart the following units: (.*)$/, "wouldRestart"],
  [/^would reload the following units: (.*)$/, "wouldReload"],
  // Both print "NOT stop"; "NOT restart" is the switch's wording, accepted too.
  [/^would NOT (?:stop|restart) the following changed units: (.*)$/, "notRestarting"],
];

/** Unit names of a ", "-joined list (unit names contain no comma or space). */
function unitList(s: string): string[] {
  return s.split(/[\s,]+/).filter(Boolean);
}

function addAll(to: string[], units: string[]): void {
  for (const u of units) if (!to.includes(u)) to.push(u);
}

/** Parses dry-activate's output (stderr, or stderr and stdout together); other lines are ignored. */
export function parseDryActivate(output: string): DryActivation {
  const r: DryActivation = { wouldStop: [], wouldStart: [], wouldRestart: [], wouldReload: [], notRestarting: [], restartSystemd: false };
  for (const raw of output.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === "would restart systemd") { r.restartSystemd = true; continue; }
    for (const [re, k] of DRY) {
      const m = re.exec(line);
      if (m) addAll(r[k], unitList(m[1]));
    }
  }
  return r;
}

/** What a switch did to units, from the lines it printed while doing it. */
export interface SwitchUnits {
  /** Restarted: "restarting the following units", or stopped before the activation and started after it. */
  restarted: string[];
  /** "reloading the following units: …". */
  reloaded: string[];
  /** Started and not stopped before: "starting the following units", "the following new units were started". */
  started: string[];
  /** Stopped and not started again ("stopping the following units: …"). */
  stopped: string[];
}

const SWITCH: [RegExp, "stop" | "start" | "restart" | "reload"][] = [
  [/^stopping the following units: (.*)$/, "stop"],
  [/^starting the following units: (.*)$/, "start"],
  // main.rs / Perl, after the switch: units that were not active before and are now.
  [/^the following new units were started: (.*)$/, "start"],
  [/^restarting the following units: (.*)$/, "restart"],
  [/^reloading the following units: (.*)$/, "reload"],
];

/**
 * Accumulates a switch's unit lines one at a time (as they arrive); `prefix` is stripped first
 * (the provider's log lines carry "activation: ").
 */
export class SwitchUnitLines {
  private readonly seen = { stop: [] as string[], start: [] as string[], restart: [] as string[], reload: [] as string[] };
  constructor(private readonly prefix = "") {}

  line(raw: string): void {
    const line = (this.prefix && raw.startsWith(this.prefix) ? raw.slice(this.prefix.length) : raw).trim();
    for (const [re, k] of SWITCH) {
      const m = re.exec(line);
      if (m) addAll(this.seen[k], unitList(m[1]));
    }
  }

  get units(): SwitchUnits {
    const { stop, start, restart, reload } = this.seen;
    const restarted = [...restart];
    addAll(restarted, stop.filter((u) => start.includes(u)));
    return {
      restarted,
      reloaded: [...reload],
      started: start.filter((u) => !stop.includes(u) && !restart.includes(u)),
      stopped: stop.filter((u) => !start.includes(u)),
    };
  }
}

/** One thing a dry-activate says would happen: `would restart` `bars-app.service`. */
export interface UnitChange {
  /** "would stop", "would start", "would restart", "would reload", "would NOT restart", or "would restart" for systemd. */
  action: "would stop" | "would start" | "would restart" | "would reload" | "would NOT restart";
  /** The unit; "systemd" for systemd's own re-exec. */
  unit: string;
}

/**
 * The changes an operator reads, one per unit: a unit stopped and started again is restarted;
 * systemd's re-exec first. Order: systemd, stop, restart, reload, start, not restarted; each sorted.
 */
export function unitChanges(d: DryActivation): UnitChange[] {
  const sort = (xs: string[]) => [...xs].sort((a, b) => a.toLowerCase().localeCompare(b.toLowerCase()));
  const restart = [...d.wouldRestart];
  addAll(restart, d.wouldStop.filter((u) => d.wouldStart.includes(u)));
  const out: UnitChange[] = [];
  if (d.restartSystemd) out.push({ action: "would restart", unit: "systemd" });
  for (const u of sort(d.wouldStop.filter((x) => !d.wouldStart.includes(x)))) out.push({ action: "would stop", unit: u });
  for (const u of sort(restart)) out.push({ action: "would restart", unit: u });
  for (const u of sort(d.wouldReload.filter((x) => !restart.includes(x)))) out.push({ action: "would reload", unit: u });
  for (const u of sort(d.wouldStart.filter((x) => !d.wouldStop.includes(x) && !restart.includes(x)))) out.push({ action: "would start", unit: u });
  for (const u of sort(d.notRestarting)) out.push({ action: "would NOT restart", unit: u });
  return out;
}

/** `would restart bars-app.service`, `would restart systemd`: the lines of a plan's `unitChanges`. */
export function unitChangeLines(d: DryActivation): string[] {
  return unitChanges(d).map((c) => `${c.action} ${c.unit}`);
}
