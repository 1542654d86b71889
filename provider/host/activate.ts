/**
 * Setting the system profile and running switch-to-configuration, in one remote script (one round
 * trip). Where the host runs systemd the activation runs in a transient unit
 * (`systemd-run … --wait`), so a dropped SSH session cannot kill it half-way (nixpkgs#39118).
 */
import { SshSession, shq } from "../ssh/session";
import { PRINT_MISSING_PATHS } from "./copy";
import { Logger } from "../util/log";
import { ROLLBACK_PREFIX, STATE_DIR, armLines, confirmWindowArgs, disarmLines, parseRollback, rollbackOnFailureLines, rollbackResultFile, switchRcFile } from "./rollback";
import * as crypto from "crypto";

/** What switch-to-configuration should do (nixos-rebuild's verbs). */
export type Action = "switch" | "boot" | "test" | "dry-activate";

export const SYSTEM_PROFILE = "/nix/var/nix/profiles/system";

/** Outcome of an activation. */
export interface ActivationResult {
  /** Store paths the host lacked (with `requirePaths`): when any, nothing was activated. */
  missing: string[];
  /** switch-to-configuration's exit code: 0 ok, 4 some units failed, other = failure. */
  exitCode: number;
  /** Whether the switch got as far as running `activate` (it printed "activating the configuration..."). */
  activated?: boolean;
  /** The system that ran before. */
  previousSystemPath: string;
  /** Generation of the system profile after the step. */
  generation: number;
  /** Units reported failed (exit 4). */
  failedUnits: string[];
  /** On failure the profile was set back to this generation. */
  rolledBackTo?: number;
  /** On failure with magic rollback armed: the previous generation was re-activated (its switch's exit code). */
  reactivated?: { generation: number; system: string; rc: number };
  /** Last lines of the activation's output. */
  tail: string[];
  /** The magic-rollback unit armed before the switch (to be confirmed); absent: nothing armed. */
  armed?: string;
}

const MARK = "@@pulumi-nixos";
/** The transient unit activations run in on systemd hosts (one at a time per host). */
export const SWITCH_UNIT = "pulumi-nixos-switch-to-configuration";
/** The line both switch-to-configuration implementations print (stderr) right before running `activate`. */
export const ACTIVATING_LINE = "activating the configuration...";

/**
 * Magic rollback of one attempt: its nonce, the backstop timer's deadline (activation + confirm,
 * from arming) and the confirmation window after the switch ends.
 */
export interface ArmOptions { nonce: string; deadlineSec: number; confirmSec: number }

/**
 * What runs inside the switch unit: `/bin/sh -c WRAPPER wrapper SWITCH ACTION RCFILE ACTFILE
 * [SYSTEMD_RUN SCRIPT SECS UNIT]`. On NixOS a transient unit's PATH is systemd's own bin/ only
 * (nixpkgs's systemd: the patch "path-util.h: add placeholder for DEFAULT_PATH_NORMAL", filled in
 * by pkgs/os-specific/linux/systemd/default.nix; transient units get no Environment=PATH), so
 * it uses shell builtins and absolute paths only: no cat, no coreutils. The switch's output
 * (stderr included) passes through a `read` loop that marks the activation as started when the
 * switch prints {@link ACTIVATING_LINE} and, once our session is gone, drains to nowhere: the switch
 * never writes into a dead pipe (switch-to-configuration-ng panics on that: main.rs ignores
 * SIGPIPE, eprintln! aborts). Its exit code goes to RCFILE (read after a dropped connection).
 * Ended with 0 or 4 and a rollback armed: the confirmation window opens from inside the unit (a
 * deployer cut off mid-switch still gets the host back confirmTimeout after it).
 */
const WRAPPER = [
  `trap '' PIPE`,
  `{ "$1" "$2"; echo $? > "$3"; } 2>&1 | { o=1; while IFS= read -r l || [ -n "$l" ]; do ` +
    `case $l in "${ACTIVATING_LINE}"*) : > "$4" ;; esac; ` +
    `if [ $o = 1 ]; then printf '%s\\n' "$l" 2>/dev/null || o=0; fi; done; }`,
  `rc=; read -r rc < "$3"; rc=\${rc:-99}`,
  `if [ -n "$5" ] && [ -e "$6" ] && { [ "$rc" = 0 ] || [ "$rc" = 4 ]; }; then "$5" --quiet --collect --unit="$8" --description="pulumi-nixos magic rollback (confirmation window)" --on-active="$7"s --timer-property=AccuracySec=100ms -p Type=oneshot /bin/sh "$6" >/dev/null 2>&1; fi`,
  `exit $rc`,
].join("\n");

/**
 * Shell: defines `run_switch SYSTEM ACTION TAG [SYSTEMD_RUN SCRIPT SECS UNIT]`, which runs
 * SYSTEM's switch-to-configuration ACTION — where the host runs systemd, in the transient unit
 * {@link SWITCH_UNIT} (`systemd-run --wait --pipe`, as nixos-rebuild does: a dropped SSH session or
 * an sshd restarted by the switch cannot kill it half-way, nixpkgs#39118) — within timeoutSec,
 * and sets `$rc` (124: timed out, the unit stopped) and `$activated` (1 when the switch got to
 * running `activate`). Files: STATE_DIR/switch-TAG.rc and .activating.
 */
export function switchFunction(timeoutSec: number): string {
  return [
    `run_switch() {`,
    `  rs_sys=$1 rs_act=$2 rs_rc=${STATE_DIR}/switch-$3.rc rs_on=${STATE_DIR}/switch-$3.activating; shift 3`,
    `  mkdir -p -m 0755 ${STATE_DIR}; rm -f "$rs_rc" "$rs_on"`,
    `  if [ -d /run/systemd/system ] && command -v systemd-run >/dev/null 2>&1; then`,
    `    timeout ${timeoutSec} systemd-run -E LOCALE_ARCHIVE -E NIXOS_INSTALL_BOOTLOADER --collect --no-ask-password --pipe --quiet --same-dir --service-type=exec --unit=${SWITCH_UNIT} --wait \\`,
    `      /bin/sh -c ${shq(WRAPPER)} wrapper "$rs_sys/bin/switch-to-configuration" "$rs_act" "$rs_rc" "$rs_on" "$@" 2>&1; rc=$?`,
    // Timed out: systemd-run is gone but the switch runs on in its unit (holding our output open).
    `    if [ $rc -eq 124 ]; then systemctl stop ${SWITCH_UNIT}.service >/dev/null 2>&1; fi`,
    `  else`,
    `    timeout ${timeoutSec} /bin/sh -c ${shq(WRAPPER)} wrapper "$rs_sys/bin/switch-to-configuration" "$rs_act" "$rs_rc" "$rs_on" "$@" 2>&1; rc=$?`,
    `  fi`,
    `  activated=; if [ -e "$rs_on" ]; then activated=1; fi; rm -f "$rs_on"`,
    `}`,
  ].join("\n");
}

/** The remote script; exported for tests of its shape. */
export function activationScript(systemPath: string, action: Action, timeoutSec: number, rollbackOnFailure: boolean, checkStdinPaths = false,
  arm?: ArmOptions, nonce = arm?.nonce ?? crypto.randomBytes(8).toString("hex")): string {
  const setProfile = action === "switch" || action === "boot";
  // `boot` activates nothing now: no magic rollback (as deploy-rs).
  const armed = arm && (action === "switch" || action === "test") ? arm : undefined;
  const reactivate = rollbackOnFailure && (action === "switch" || action === "test");
  return [
    // The paths on stdin must all be valid, else report them and change nothing.
    ...(checkStdinPaths ? [
      `missing=$(${PRINT_MISSING_PATHS}) || exit 91`,
      `if [ -n "$missing" ]; then printf '%s\n' "$missing" | sed 's|^|${MARK} missing=|'; exit 0; fi`,
    ] : []),
    // A switch still running (its deployer's SSH session was lost): refuse before touching the profile.
    `if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then`,
    `  st=$(systemctl show -p ActiveState --value ${SWITCH_UNIT}.service 2>/dev/null)`,
    `  case "$st" in active|activating|deactivating|reloading) echo "${MARK} busy=$(systemctl show -p ExecMainStartTimestamp --value ${SWITCH_UNIT}.service)"; exit 0 ;; esac`,
    // Another deploy awaits its confirmation (or rolls back): its rollback must not hit our switch.
    `  rb=$(systemctl list-units --all --plain --no-legend --no-pager '${ROLLBACK_PREFIX}*' 2>/dev/null | awk '$3 == "active" || $3 == "activating" { print $1; exit }')`,
    // Until when: the earliest of its timers (list-timers' JSON gives realtime µs; empty while it rolls back).
    `  if [ -n "$rb" ]; then echo "${MARK} armedbusy=$rb until=$(systemctl list-timers --all -o json '${ROLLBACK_PREFIX}*' 2>/dev/null | grep -o '"next":[0-9]*' | cut -d: -f2 | grep -v '^0$' | sort -n | head -1)"; exit 0; fi`,
    `fi`,
    switchFunction(timeoutSec),
    `out=${shq(systemPath)}; action=${action}; profile=${SYSTEM_PROFILE}`,
    `gen_of() { readlink "$profile" 2>/dev/null | sed -n 's/.*system-\\([0-9]*\\)-link$/\\1/p'; }`,
    `prevsys=$(test -e /run/current-system && readlink -f /run/current-system); echo "${MARK} prev=$prevsys"`,
    `prevgen=$(gen_of)`,
    setProfile ? `if [ "$(readlink -f "$profile" 2>/dev/null)" != "$out" ]; then nix-env -p "$profile" --set "$out" || exit 90; fi` : ":",
    `gen=$(gen_of); echo "${MARK} gen=$gen"`,
    // Armed before the switch: whatever happens to it or to us, the host can go back by itself.
    ...(armed ? armLines(MARK, armed.nonce, action as "switch" | "test", armed.deadlineSec, SWITCH_UNIT) : []),
    `run_switch "$out" "$action" ${nonce} ${armed ? confirmWindowArgs(armed.nonce, armed.confirmSec) : ""}`,
    `echo "${MARK} rc=$rc"; echo "${MARK} activated=$activated"`,
    armed ? ":" : `rm -f ${switchRcFile(nonce)}`,
    // After a failed switch the host and the record must agree: as deploy-rs's `deactivate`
    // (src/bin/activate.rs: nix-env --rollback, delete the generation, re-activate), the
    // previous system is activated again with the same action when this switch got as far as
    // running `activate` (whatever its exit code: ng exits 1 for internal errors after it),
    // which also re-installs its boot loader entry. 100 (reboot needed) keeps the new generation
    // as the boot default, by design. With a rollback armed, its own script does that.
    `case $rc in`,
    `  0|4|100) ;;`,
    ...(reactivate ? [
      `  *) if [ -n "$activated" ]; then`,
      ...(armed ? [`    ${rollbackOnFailureLines(MARK, nonce)}`] : []),
      `    if [ ! -e ${rollbackResultFile(nonce)} ]; then`,
      `      if [ -n "$prevgen" ] && [ "$gen" != "$prevgen" ] && [ "$(gen_of)" = "$gen" ]; then nix-env -p "$profile" --switch-generation "$prevgen" >/dev/null 2>&1 && nix-env -p "$profile" --delete-generations "$gen" >/dev/null 2>&1; fi`,
      `      if [ "$action" = switch ] && [ -n "$prevgen" ]; then target=$(readlink -f "$profile"); else target=$prevsys; fi`,
      `      failrc=$rc; rrc=99; if [ -x "$target/bin/switch-to-configuration" ]; then run_switch "$target" "$action" ${nonce}-back; rrc=$rc; rm -f ${STATE_DIR}/switch-${nonce}-back.rc; fi; rc=$failrc`,
      `      echo "${MARK} reactivated=gen=$(gen_of) system=$target rc=$rrc"`,
      `    fi`,
      `  fi ;;`,
    ] : [`  *) ;;`]),
    `esac`,
    // Nothing to confirm unless the switch ended with 0 or 4: the timers go.
    armed ? `case $rc in 0|4) ;; *) ${disarmLines(nonce)} ;; esac` : ":",
    // Exit 4: the failed units as systemd reports them (besides what switch-to-configuration
    // printed); not the switch's own unit, failed by that very exit code until it is collected.
    `if [ $rc -eq 4 ] && [ -d /run/systemd/system ]; then systemctl list-units --state=failed --plain --no-legend --no-pager 2>/dev/null | awk '$1 != "${SWITCH_UNIT}.service" { print "${MARK} failed=" $1 }'; fi`,
    // Failed before activating anything (usage, not NixOS, lock busy, boot loader): this deploy's
    // own profile change is undone and, but for 11 (lock taken before the boot loader step in
    // ng's do_system_switch), the previous generation's boot loader entry is installed again.
    rollbackOnFailure && setProfile
      ? `if [ $rc -ne 0 ] && [ $rc -ne 4 ] && [ $rc -ne 100 ] && [ -n "$prevgen" ] && [ "$gen" != "$prevgen" ] && [ "$(gen_of)" = "$gen" ]; then ` +
        `nix-env -p "$profile" --switch-generation "$prevgen" >/dev/null 2>&1 && nix-env -p "$profile" --delete-generations "$gen" >/dev/null 2>&1; echo "${MARK} rolledback=$prevgen"; ` +
        `t=$(readlink -f "$profile"); if [ $rc -ne 11 ] && [ -x "$t/bin/switch-to-configuration" ]; then "$t/bin/switch-to-configuration" boot 2>&1; fi; fi`
      : ":",
    `exit 0`,
  ].join("\n");
}

/** Options of {@link activate}. */
export interface ActivateOptions {
  timeoutSec: number;
  log?: Logger;
  /**
   * Activate only if the host has all these store paths (the closure), checked in the same
   * command: a redeploy of what the host already has costs one command. When some are missing
   * the result lists them and nothing was changed.
   */
  requirePaths?: string[];
  /**
   * Magic rollback: arm a timer on the host before the switch, firing after `deadlineSec`
   * (activation + confirm), and once the switch ended well another one `confirmSec` (+5 s) after
   * that, unless confirmed (see rollback.ts). Only for switch/test, only when
   * the host does not already run the system.
   */
  magicRollback?: { deadlineSec: number; confirmSec: number };
}

/** An activation as a script and the reader of its output: run alone, or after a closure import in the same command. */
export interface ActivationStep {
  script: string;
  /** This attempt's nonce (names its rollback timer and files on the host). */
  nonce: string;
  /** Whether the host reached the activation (its first line came): a drop after it is mid-activation. */
  started(): boolean;
  /** When the rollback timer was armed (Date.now() as its line arrived), if it was. */
  armedAtMs(): number | undefined;
  /** The system the host ran before (once the activation started). */
  previous(): string;
  /** Data for the script's stdin (the paths to check, with `requirePaths`). */
  stdin?: string;
  what: string;
  timeoutMs: number;
  /** Feed every output line here. */
  onLine(line: string): void;
  /** What the output said; throws when it ended without a result. */
  result(label: string): ActivationResult;
}

/** The activation of systemPath as a step (see {@link activate}). */
export function activationStep(systemPath: string, action: Action, opts: ActivateOptions): ActivationStep {
  const tail: string[] = [];
  const fields: Record<string, string> = {};
  const failedUnits: string[] = [];
  const missing: string[] = [];
  const check = opts.requirePaths !== undefined;
  const nonce = crypto.randomBytes(8).toString("hex");
  const arm = opts.magicRollback ? { nonce, ...opts.magicRollback } : undefined;
  let armedAt: number | undefined;
  return {
    nonce,
    started: () => fields.prev !== undefined,
    armedAtMs: () => armedAt,
    previous: () => fields.prev ?? "",
    script: activationScript(systemPath, action, opts.timeoutSec, true, check, arm, nonce),
    stdin: check ? opts.requirePaths!.join("\n") + "\n" : undefined,
    what: `switch-to-configuration ${action}`,
    // A failed switch is followed by the previous system's own switch.
    timeoutMs: (opts.timeoutSec * 2 + 30) * 1000,
    onLine: (line) => {
      const m = new RegExp(`^${MARK} (\\w+)=(.*)$`).exec(line);
      if (m?.[1] === "missing") { missing.push(m[2]); return; }
      if (m?.[1] === "failed") { if (!failedUnits.includes(m[2])) failedUnits.push(m[2]); return; }
      if (m?.[1] === "armed") armedAt = Date.now();
      if (m?.[1] === "noarm") opts.log?.("activation: magic rollback unavailable: the host does not run systemd (nothing armed)");
      if (m) { fields[m[1]] = m[2]; return; }
      const units = /the following units failed: (.*)$/.exec(line);
      if (units) for (const u of units[1].split(/[\s,]+/).filter(Boolean)) if (!failedUnits.includes(u)) failedUnits.push(u);
      tail.push(line);
      if (tail.length > 20) tail.shift();
      opts.log?.(`activation: ${line}`);
    },
    result: (label) => {
      if (missing.length) return { missing, exitCode: 0, previousSystemPath: "", generation: 0, failedUnits: [], tail: [] };
      if (fields.busy !== undefined) {
        throw new Error(`${label}: another activation is still running there (unit ${SWITCH_UNIT}.service, started ${fields.busy || "at an unknown time"}), ` +
          "e.g. one whose deployer lost its SSH session; nothing was changed. Wait for it to finish " +
          `(systemctl status ${SWITCH_UNIT}), then run again: refresh shows what the host runs.`);
      }
      if (fields.armedbusy !== undefined) {
        const [unit, until] = fields.armedbusy.split(" until=");
        const at = Number(until) > 0 ? new Date(Number(until) / 1000) : undefined;
        const when = at ? ` until ${at.toISOString().slice(11, 19)} UTC (${Math.max(0, Math.round((at.getTime() - Date.now()) / 1000))} s from now), then it rolls back unless confirmed` : ": it is rolling back now";
        throw new Error(`${label}: another deploy there awaits its confirmation${when} (${unit}); nothing was changed. ` +
          `Run again ${at ? `after ${at.toISOString().slice(11, 19)} UTC` : "in a few seconds"}: refresh shows what the host runs.`);
      }
      if (fields.armfailed !== undefined) throw new Error(`${label}: could not arm the magic rollback (systemd-run --on-active failed); nothing was activated`);
      if (fields.rc === undefined) throw new Error(`activation on ${label} ended without a result`);
      return {
        missing,
        exitCode: Number(fields.rc),
        activated: fields.activated === "1",
        previousSystemPath: fields.prev ?? "",
        generation: Number(fields.gen) || 0,
        failedUnits,
        rolledBackTo: fields.rolledback ? Number(fields.rolledback) : parseRollback(fields.reactivated)?.generation,
        reactivated: parseRollback(fields.reactivated),
        tail,
        // Still armed only when the switch ended in a state to confirm (0 or 4).
        armed: fields.armed && (fields.rc === "0" || fields.rc === "4") ? fields.armed : undefined,
      };
    },
  };
}

/** Sets the profile (switch/boot) and activates. Never throws for the activation's own exit code. */
export async function activate(s: SshSession, systemPath: string, action: Action, opts: ActivateOptions): Promise<ActivationResult> {
  const step = activationStep(systemPath, action, opts);
  await s.exec(step.script, { stdin: step.stdin, privileged: true, what: step.what, timeoutMs: step.timeoutMs, onLine: step.onLine });
  return step.result(s.label);
}
