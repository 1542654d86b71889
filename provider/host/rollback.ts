/**
 * Magic rollback (deploy-rs's, armed before the switch): the activation script arms a transient
 * systemd timer, unique to the attempt, that — unless the deployer cancels it in time — stops the
 * switch unit if it still runs, sets the system profile back to the previous generation and
 * activates it. The deployer cancels it only after a NEW SSH connection (a fresh handshake: sshd,
 * network and key still work) and the health checks passed. Also: reading a deploy's outcome on
 * the host after the deployer's connection dropped (truthful recovery).
 */
import { Connection, connectionLabel } from "../connection";
import { SshSession, shq } from "../ssh/session";
import { parseKeyValues } from "../util/key-values";
import { Logger } from "../util/log";
import { LOCK_DIR } from "./lock";
import { HealthCheck, healthCheckScript, parseHealthOutput } from "./health";

/** Prefix of the rollback units (`<prefix><nonce>.timer` / `.service`). */
export const ROLLBACK_PREFIX = "pulumi-nixos-rollback-";
/** Where an attempt's files live on the host (a tmpfs on NixOS). */
export const STATE_DIR = LOCK_DIR;

export const rollbackUnit = (nonce: string): string => `${ROLLBACK_PREFIX}${nonce}`;
/**
 * The confirmation window's timer (same prefix): armed by the switch unit when the switch ends
 * well, firing `confirmTimeout` (+5 s for the round trip) later, as deploy-rs counts it; the first
 * timer (activation + confirm from arming) stays as the backstop for a switch that never ends.
 */
export const confirmUnit = (nonce: string): string => `${ROLLBACK_PREFIX}${nonce}-confirm`;
/** Seconds the host adds to confirmTimeout for the deployer's round trip. */
export const CONFIRM_SLACK_SEC = 5;
/** Shell: stop both timers of an attempt (a missing one is no error). */
const stopTimers = (nonce: string): string =>
  `systemctl stop ${rollbackUnit(nonce)}.timer >/dev/null 2>&1; systemctl stop ${confirmUnit(nonce)}.timer >/dev/null 2>&1`;
/** Shell: prints `active`/`activating` when either timer's rollback service runs now, else nothing. */
const rollbackRunning = (nonce: string): string =>
  `systemctl show -p ActiveState --value ${rollbackUnit(nonce)}.service ${confirmUnit(nonce)}.service 2>/dev/null | grep -m1 -E '^(active|activating)$'`;
/** What the rollback service wrote when it ran: `gen=… system=… rc=… at=…`. */
export const rollbackResultFile = (nonce: string): string => `${STATE_DIR}/rollback-${nonce}.result`;
/** The switch unit's exit code, written by the unit itself (it outlives a dropped SSH session). */
export const switchRcFile = (nonce: string): string => `${STATE_DIR}/switch-${nonce}.rc`;
const scriptFile = (nonce: string): string => `${STATE_DIR}/rollback-${nonce}.sh`;

/**
 * Shell lines for the activation script (after the profile is set, before the switch): arm the
 * rollback timer when there is something to roll back to. Uses the script's `$out`, `$profile`,
 * `$prevgen`, `$gen` and `$prevsys`; prints `<mark> armed=<unit>` on success, exits 92 when
 * arming fails (after undoing the profile change: nothing was activated).
 */
export function armLines(mark: string, nonce: string, action: "switch" | "test", deadlineSec: number, switchUnit: string): string[] {
  const unit = rollbackUnit(nonce);
  // The rollback itself: runs as the timer's service, with nobody connected.
  const body = [
    `res=${rollbackResultFile(nonce)}`,
    // Once per attempt, whichever timer fires first (or a rollback asked for now); the other timer goes.
    `mkdir ${STATE_DIR}/rollback-${nonce}.once 2>/dev/null || exit 0`,
    `$systemctl stop ${rollbackUnit(nonce)}.timer >/dev/null 2>&1; $systemctl stop ${confirmUnit(nonce)}.timer >/dev/null 2>&1`,
    `gen_of() { readlink "$profile" 2>/dev/null | sed -n 's/.*system-\\([0-9]*\\)-link$/\\1/p'; }`,
    `echo "started at=$(date +%s)" > "$res"`,
    // A switch still running (hung, or cut off): stopped first.
    `$systemctl stop ${switchUnit}.service >/dev/null 2>&1`,
    `if [ -n "$prevgen" ] && [ "$gen" != "$prevgen" ] && [ "$(gen_of)" = "$gen" ]; then`,
    `  "$nixenv" -p "$profile" --switch-generation "$prevgen" && "$nixenv" -p "$profile" --delete-generations "$gen"`,
    `fi`,
    // switch: the profile's (previous) generation; test: the profile's current one; no profile before: what ran.
    `if [ -n "$prevgen" ]; then target=$(readlink -f "$profile"); else target=$prevsys; fi`,
    `rc=99; [ -x "$target/bin/switch-to-configuration" ] && { "$target/bin/switch-to-configuration" "$raction"; rc=$?; }`,
    `echo "gen=$(gen_of) system=$target rc=$rc at=$(date +%s)" > "$res.tmp" && mv -f "$res.tmp" "$res"`,
    `rm -f ${scriptFile(nonce)}; rmdir ${STATE_DIR}/rollback-${nonce}.once`,
  ].join("\n");
  return [
    `if [ "$(test -e /run/current-system && readlink -f /run/current-system)" != "$out" ] && [ -d /run/systemd/system ] && command -v systemd-run >/dev/null 2>&1; then`,
    `  mkdir -p -m 0755 ${STATE_DIR}`,
    // The values as they are now, then the fixed body (a file: no quoting through systemd's ExecStart).
    // PATH too: the timer's service gets NixOS's unit PATH (systemd's bin/ only, no coreutils),
    // so the script carries the session's (and systemctl/nix-env by absolute path).
    `  { printf 'export PATH=%s\\nprofile=%s\\nprevgen=%s\\ngen=%s\\nprevsys=%s\\nnixenv=%s\\nsystemctl=%s\\nraction=${action}\\n' "$PATH" "$profile" "$prevgen" "$gen" "$prevsys" "$(command -v nix-env)" "$(command -v systemctl)"`,
    `    cat <<'PNX_ROLLBACK_EOF'`,
    body,
    `PNX_ROLLBACK_EOF`,
    `  } > ${scriptFile(nonce)}`,
    `  if ! systemd-run --quiet --collect --unit=${unit} --description="pulumi-nixos magic rollback" --on-active=${deadlineSec}s --timer-property=AccuracySec=100ms -p Type=oneshot /bin/sh ${scriptFile(nonce)} >/dev/null; then`,
    `    [ "$gen" != "$prevgen" ] && [ -n "$prevgen" ] && nix-env -p "$profile" --switch-generation "$prevgen" >/dev/null 2>&1 && nix-env -p "$profile" --delete-generations "$gen" >/dev/null 2>&1`,
    `    echo "${mark} armfailed=1"; exit 0`,
    `  fi`,
    `  echo "${mark} armed=${unit}"`,
    `elif [ "$(test -e /run/current-system && readlink -f /run/current-system)" != "$out" ]; then echo "${mark} noarm=nosystemd"`,
    `fi`,
  ];
}

/**
 * Shell lines for the activation script when the switch itself failed (not 0/4/100/11) after a
 * rollback was armed: the rollback runs now (the new system may be half active) and its result
 * is printed as `<mark> reactivated=<result>`. Nothing armed (no script file): nothing happens.
 */
export const rollbackOnFailureLines = (mark: string, nonce: string): string =>
  `if [ -e ${scriptFile(nonce)} ]; then ${rollbackNowScript(nonce).split("\n").join("; ").replace(/; do;/g, "; do").replace(/; then;/g, "; then").replace(/echo "rollback=/, `echo "${mark} reactivated=`)}; fi`;

/** Shell lines: cancel the timer (an activation that failed on its own: nothing to confirm). */
export const disarmLines = (nonce: string): string =>
  `${stopTimers(nonce)}; rm -f ${scriptFile(nonce)} ${switchRcFile(nonce)}`;

/**
 * Arguments for the switch unit's wrapper (see activate.ts): what arms the confirmation window
 * when the switch ends with 0 or 4 — systemd-run's path, the rollback script, the seconds and the
 * timer's name. Nothing armed (no script file on the host): the wrapper does nothing.
 */
export const confirmWindowArgs = (nonce: string, confirmSec: number): string =>
  `"$(command -v systemd-run)" ${scriptFile(nonce)} ${confirmSec + CONFIRM_SLACK_SEC} ${confirmUnit(nonce)}`;

/**
 * The confirmation: stop the timer unless the rollback already started; prints `confirmed=1` or
 * the rollback's state. Run over the new connection after the health checks passed.
 */
function confirmScript(nonce: string): string {
  return [
    stopTimers(nonce),
    `st=$(${rollbackRunning(nonce)})`,
    `if [ -e ${rollbackResultFile(nonce)} ] || [ -n "$st" ]; then echo "confirmed=0"; echo "rollback=$(cat ${rollbackResultFile(nonce)} 2>/dev/null)"`,
    `else rm -f ${scriptFile(nonce)} ${switchRcFile(nonce)}; echo "confirmed=1"; fi`,
  ].join("\n");
}

/** Roll back now (health checks failed, or the deployer gave up confirming) and wait for it. */
function rollbackNowScript(nonce: string): string {
  const unit = rollbackUnit(nonce);
  return [
    stopTimers(nonce),
    `if [ ! -e ${rollbackResultFile(nonce)} ] && [ -e ${scriptFile(nonce)} ]; then systemctl start ${unit}.service >/dev/null 2>&1 || /bin/sh ${scriptFile(nonce)} >/dev/null 2>&1; fi`,
    // A rollback already started by the timer: wait for it to write its result.
    `for i in $(seq 600); do grep -q '^gen=' ${rollbackResultFile(nonce)} 2>/dev/null && break; sleep 0.2; done`,
    `echo "rollback=$(cat ${rollbackResultFile(nonce)} 2>/dev/null)"`,
  ].join("\n");
}

/** What the rollback service recorded (undefined: it has not run, or not finished). */
export interface RollbackOutcome { generation: number; system: string; rc: number }

export function parseRollback(line: string | undefined): RollbackOutcome | undefined {
  const m = /gen=(\d*) system=(\S*) rc=(\d+)/.exec(line ?? "");
  return m ? { generation: Number(m[1]) || 0, system: m[2], rc: Number(m[3]) } : undefined;
}

/** What a host says about one deploy attempt (read after the deployer's connection dropped). */
export interface AttemptOutcome {
  /** The switch unit's ActiveState now (`active` while it still runs; "" when gone). */
  switchState: string;
  /** The switch's exit code (undefined: it did not end, or never started). */
  switchRc?: number;
  /** The rollback timer's ActiveState (`active` = armed and waiting). */
  timerState: string;
  rollback?: RollbackOutcome;
  /** Whether the rollback service runs right now. */
  rollingBack: boolean;
  profileSystem: string;
  generation: number;
  currentSystem: string;
}

/** Reads an attempt's outcome on the host (one command). */
export async function readAttempt(s: SshSession, nonce: string, switchUnit: string): Promise<AttemptOutcome> {
  const unit = rollbackUnit(nonce);
  const r = await s.exec([
    `echo "switch=$(systemctl show -p ActiveState --value ${switchUnit}.service 2>/dev/null)"`,
    `echo "rc=$(cat ${switchRcFile(nonce)} 2>/dev/null)"`,
    `echo "timer=$(systemctl show -p ActiveState --value ${unit}.timer ${confirmUnit(nonce)}.timer 2>/dev/null | grep -m1 -x active)"`,
    `echo "rbstate=$(${rollbackRunning(nonce)})"`,
    `echo "rollback=$(cat ${rollbackResultFile(nonce)} 2>/dev/null)"`,
    `echo "profile=$(readlink -f /nix/var/nix/profiles/system 2>/dev/null)"`,
    `echo "gen=$(readlink /nix/var/nix/profiles/system 2>/dev/null | sed -n 's/.*system-\\([0-9]*\\)-link$/\\1/p')"`,
    `echo "current=$(readlink -f /run/current-system 2>/dev/null)"`,
  ].join("\n"), { privileged: true, raw: true, what: "reading the deploy's outcome", timeoutMs: 30_000 });
  const f = parseKeyValues(r.stdout);
  return {
    switchState: f.switch === "inactive" ? "" : f.switch ?? "",
    switchRc: f.rc ? Number(f.rc) : undefined,
    timerState: f.timer ?? "",
    rollback: parseRollback(f.rollback),
    rollingBack: f.rbstate === "active" || f.rbstate === "activating",
    profileSystem: f.profile ?? "",
    generation: Number(f.gen) || 0,
    currentSystem: f.current ?? "",
  };
}

/** Options of {@link confirm}. */
export interface ConfirmOptions {
  pin?: string;
  /** Seconds the deployer tries to confirm (from the switch's end). */
  confirmTimeoutSec: number;
  /** Seconds per connection attempt. */
  connectTimeoutSec: number;
  healthChecks: HealthCheck[];
  log: Logger;
}

/** How a confirmation went. */
export type ConfirmResult =
  | { confirmed: true }
  /** No new connection within confirmTimeout (the last error). */
  | { confirmed: false; reason: "unreachable"; error: string }
  /** The checks failed: the host was told to roll back at once, over the new connection. */
  | { confirmed: false; reason: "health"; error: string; rollback?: RollbackOutcome }
  /** The timer fired before the confirmation came. */
  | { confirmed: false; reason: "late"; rollback?: RollbackOutcome };

/** Opens a fresh connection (never the pool's), retried with backoff until `untilMs`. */
export async function connectFresh(conn: Connection, pin: string | undefined, untilMs: number, connectTimeoutSec: number): Promise<SshSession> {
  let delay = 250, last: unknown;
  for (;;) {
    const left = untilMs - Date.now();
    if (left <= 0) break;
    try {
      // One dial per attempt (the retries are ours, bounded by untilMs).
      return await SshSession.connect({ ...conn, dialErrorLimit: 1 } as Connection, { pin, timeoutMs: Math.max(1000, Math.min(connectTimeoutSec * 1000, left)) });
    } catch (e) {
      last = e;
      // A host key that changed is no network hiccup: no retry.
      if ((e as Error).name === "HostKeyMismatchError" || /host key/i.test((e as Error).message)) throw e;
    }
    await new Promise((r) => setTimeout(r, Math.min(delay, Math.max(0, untilMs - Date.now()))));
    delay = Math.min(delay * 2, 2000);
  }
  throw last instanceof Error ? last : new Error(`cannot connect to ${connectionLabel(conn)} in time`);
}

/**
 * After a switch that armed `nonce`: a new connection, the health checks, then the timer
 * cancelled. Costs one handshake + one command (two with health checks).
 */
export async function confirm(conn: Connection, nonce: string, opts: ConfirmOptions): Promise<ConfirmResult> {
  const until = Date.now() + opts.confirmTimeoutSec * 1000;
  let s: SshSession;
  try {
    s = await connectFresh(conn, opts.pin, until, opts.connectTimeoutSec);
  } catch (e) {
    return { confirmed: false, reason: "unreachable", error: (e as Error).message };
  }
  try {
    if (opts.healthChecks.length) {
      opts.log(`health checks: ${opts.healthChecks.length} on the host`);
      const r = await s.exec(healthCheckScript(opts.healthChecks), { privileged: true, check: false, what: "health checks", timeoutMs: healthTimeoutMs(opts.healthChecks) });
      const failed = parseHealthOutput(r.stdout, opts.healthChecks);
      if (failed.length) {
        opts.log(`health checks failed: rolling back now`);
        const rb = await s.exec(rollbackNowScript(nonce), { privileged: true, what: "magic rollback", timeoutMs: 150_000 }).catch(() => undefined);
        return { confirmed: false, reason: "health", error: failed.join("; "), rollback: parseRollback(parseKeyValues(rb?.stdout ?? "").rollback) };
      }
    }
    const r = await s.exec(confirmScript(nonce), { privileged: true, what: "confirmation", timeoutMs: Math.max(5_000, until - Date.now() + 10_000) });
    const f = parseKeyValues(r.stdout);
    if (f.confirmed === "1") return { confirmed: true };
    return { confirmed: false, reason: "late", rollback: parseRollback(f.rollback) };
  } finally {
    s.close();
  }
}

/** Deadline of the health-check command: every check's attempts, plus slack. */
function healthTimeoutMs(checks: HealthCheck[]): number {
  return checks.reduce((n, c) => n + ((c.timeout ?? 10) + 1) * ((c.retries ?? 0) + 1) * 1000, 10_000);
}

/** Roll back now over a session that still works (the old one, when no new one could be made). */
export async function rollbackNow(s: SshSession, nonce: string): Promise<RollbackOutcome | undefined> {
  const r = await s.exec(rollbackNowScript(nonce), { privileged: true, raw: true, what: "magic rollback", timeoutMs: 150_000 });
  return parseRollback(parseKeyValues(r.stdout).rollback);
}

/**
 * Waits for the host's own rollback (the timer's deadline, `deadlineAtMs`) and reads what it did,
 * over a new connection (bounded retries). Undefined when the host could not be reached.
 */
export async function awaitHostRollback(conn: Connection, nonce: string, switchUnit: string, deadlineAtMs: number, opts: { pin?: string; connectTimeoutSec: number; log: Logger })
  : Promise<AttemptOutcome | undefined> {
  const wait = deadlineAtMs - Date.now();
  if (wait > 0) {
    opts.log(`waiting ${Math.ceil(wait / 1000)} s for the host's own rollback (${rollbackUnit(nonce)}.timer)`);
    await new Promise((r) => setTimeout(r, wait));
  }
  // The rollback itself (a switch back) takes a while: up to two minutes to see it finish.
  const until = Date.now() + 120_000;
  while (Date.now() < until) {
    let s: SshSession | undefined;
    try {
      s = await connectFresh(conn, opts.pin, until, opts.connectTimeoutSec);
      const o = await readAttempt(s, nonce, switchUnit);
      if (o.rollback || (!o.rollingBack && o.timerState !== "active")) return o;
    } catch { /* not back yet */ } finally { s?.close(); }
    await new Promise((r) => setTimeout(r, 1000));
  }
  return undefined;
}
