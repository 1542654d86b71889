/**
 * `switch-to-configuration dry-activate` of a planned system on a host: copies the closure (the
 * only change to the host: store paths, no profile, no /run/current-system, no unit, no key), then
 * asks the planned system what it would do (nixos-rebuild dry-activate: `<system>/bin/switch-to-configuration
 * dry-activate`), under the host lock. Refused while a deploy holds the host or a deploy's magic
 * rollback timer is armed (its rollback would come while we read the host).
 */
import { SshSession, shq } from "../ssh/session";
import { withHostLock } from "./lock";
import { ROLLBACK_PREFIX } from "./rollback";
import { SWITCH_UNIT } from "./activate";
import { closureOf } from "../nix/closure";
import { pushClosure } from "./push";
import { Logger } from "../util/log";
import { parseKeyValues } from "../util/key-values";
import { DryActivation, parseDryActivate, unitChangeLines } from "./dry-activate";

/** What a host would do with a planned system. */
export interface HostDryActivation {
  /** The system the host runs now (`/run/current-system`). */
  current: string;
  /** The planned system. */
  planned: string;
  /** The host already runs the planned system: nothing was copied or asked. */
  unchanged: boolean;
  /** Paths and bytes copied to the host. */
  copied: { paths: number; bytes: number };
  /** The lists switch-to-configuration printed. */
  actions: DryActivation;
  /** One line per unit: `would restart bars-app.service` (host/dry-activate.ts unitChangeLines). */
  lines: string[];
  /** switch-to-configuration's output (stderr, then stdout). */
  output: string;
}

const DRY_ACTIVATE_MS = 120_000;

/** The host's running system, or why it may not be dry-activated now. */
function probeScript(): string {
  return [
    `echo "current=$(readlink -f /run/current-system 2>/dev/null)"`,
    `if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then`,
    // A switch still running (its deployer's session lost) or a deploy awaiting its confirmation.
    `  echo "switch=$(systemctl show -p ActiveState --value ${SWITCH_UNIT}.service 2>/dev/null)"`,
    `  echo "armed=$(systemctl list-units --all --plain --no-legend --no-pager '${ROLLBACK_PREFIX}*' 2>/dev/null | awk '$3 == "active" || $3 == "activating" { print $1; exit }')"`,
    `fi`,
  ].join("\n");
}

/**
 * Dry-activates `planned` (a system in the local store) on the host of `s`, for machine `machine`.
 * The closure's copy and the dry activation run under the host lock (op "dry-activate").
 */
export async function dryActivateOnHost(s: SshSession, machine: string, planned: string, opts: { log?: Logger; compress?: boolean | "auto"; stack?: string } = {}): Promise<HostDryActivation> {
  const log = opts.log ?? (() => undefined);
  return withHostLock(s, { machine, op: "dry-activate", ...(opts.stack ? { stack: opts.stack } : {}) }, async () => {
    const f = parseKeyValues((await s.exec(probeScript(), { privileged: true, what: "reading the host's system", timeoutMs: 30_000 })).stdout);
    if (["active", "activating", "deactivating", "reloading"].includes(f.switch ?? "")) {
      throw new Error(`${machine}: a switch is still running on ${s.label} (${SWITCH_UNIT}.service); nothing was copied, try again when it has finished`);
    }
    if (f.armed) {
      throw new Error(`${machine}: a deploy on ${s.label} awaits its confirmation (rollback timer ${f.armed} armed); nothing was copied, try again when it is confirmed or rolled back`);
    }
    const current = f.current ?? "";
    const empty = { wouldStop: [], wouldStart: [], wouldRestart: [], wouldReload: [], notRestarting: [], restartSystemd: false };
    if (current === planned) return { current, planned, unchanged: true, copied: { paths: 0, bytes: 0 }, actions: empty, lines: [], output: "" };
    const pushed = await pushClosure(s, await closureOf([planned]), { compress: opts.compress ?? "auto", log });
    // 2>&1: both implementations print their lists on stderr (eprintln!, print STDERR).
    const r = await s.exec(`${shq(`${planned}/bin/switch-to-configuration`)} dry-activate 2>&1`,
      { privileged: true, check: false, what: "switch-to-configuration dry-activate", timeoutMs: DRY_ACTIVATE_MS });
    const output = r.stdout + r.stderr;
    if (r.code !== 0) {
      throw new Error(`${machine}: switch-to-configuration dry-activate exited ${r.code ?? "without a code"} on ${s.label}: ${output.trim().split("\n").slice(-3).join(" | ")}`);
    }
    const actions = parseDryActivate(output);
    return { current, planned, unchanged: false, copied: { paths: pushed.missing, bytes: pushed.bytesCopied }, actions, lines: unitChangeLines(actions), output };
  });
}
