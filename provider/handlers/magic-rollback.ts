/**
 * The deployer's side of magic rollback and of recovery after a lost connection, for
 * handlers/machine.ts: confirm over a new connection or report the rollback the host made, and,
 * when the connection dropped mid-activation, read on the host what happened. Every error names
 * its machine and phase; a rollback is always an error.
 */
import { Connection } from "../connection";
import { ActivationResult, ActivationStep, SWITCH_UNIT } from "../host/activate";
import { HealthCheck } from "../host/health";
import { AttemptOutcome, RollbackOutcome, awaitHostRollback, confirm, connectFresh, readAttempt, rollbackNow, rollbackUnit } from "../host/rollback";
import { CommandTimeoutError, ConnectionLostError, SshSession } from "../ssh/session";
import { Logger } from "../util/log";
import { LOCK_FILE, readLock } from "../host/lock";
import * as os from "os";

/** Defaults (deploy-rs's): magic rollback on, 30 s to confirm. */
export const DEFAULT_CONFIRM_TIMEOUT = 30;

/** The Machine inputs this module reads. */
export interface MagicInputs {
  name: string;
  systemPath: string;
  action: string;
  connectTimeout: number;
  activationTimeout: number;
  magicRollback?: boolean;
  confirmTimeout?: number;
  healthChecks?: HealthCheck[];
}

/** The activation option arming the rollback (undefined when off, and for `boot`). */
export function magicOption(i: MagicInputs): { deadlineSec: number; confirmSec: number } | undefined {
  if (i.magicRollback === false || i.action === "boot") return undefined;
  const confirmSec = i.confirmTimeout ?? DEFAULT_CONFIRM_TIMEOUT;
  return { deadlineSec: i.activationTimeout + confirmSec, confirmSec };
}

/** A connection failure (dropped, or a command that never answered): the host may have gone on. */
export const isLost = (e: unknown): boolean => e instanceof ConnectionLostError || e instanceof CommandTimeoutError;

const rolledBack = (rb: RollbackOutcome | undefined): string => !rb ? "the host's rollback left no result: refresh shows what it runs"
  : rb.rc === 0 ? `the host rolled back to generation ${rb.generation} (${rb.system})`
    : `the host rolled back to generation ${rb.generation} but re-activating ${rb.system} exited ${rb.rc}`;

/**
 * Confirms an armed switch: a new SSH connection (never the pool's), the health checks, the timer
 * cancelled. Not confirmed: rolls back at once when a connection still works (the new one after a
 * failed check, else the deploy's own), else waits for the host's own rollback; then throws.
 */
export async function confirmOrRollBack(i: MagicInputs, conn: Connection, pin: string, s: SshSession, step: ActivationStep, log: Logger): Promise<void> {
  const confirmSec = i.confirmTimeout ?? DEFAULT_CONFIRM_TIMEOUT;
  const t0 = Date.now();
  log(`confirming over a new SSH connection (magic rollback armed: ${rollbackUnit(step.nonce)}, ${confirmSec} s)`);
  const c = await confirm(conn, step.nonce, { pin, confirmTimeoutSec: confirmSec, connectTimeoutSec: i.connectTimeout, healthChecks: i.healthChecks ?? [], log });
  if (c.confirmed) { log(`confirmed in ${((Date.now() - t0) / 1000).toFixed(2)} s`); return; }
  let rb: RollbackOutcome | undefined = c.reason === "unreachable" ? undefined : c.rollback;
  if (!rb && s.alive) {
    // The deploy's own connection still works (e.g. sshd stopped, its sessions kept): roll back now.
    log("not confirmed: rolling back now over the deploy's own connection");
    rb = await rollbackNow(s, step.nonce).catch(() => undefined);
  }
  if (!rb) {
    const deadline = (step.armedAtMs() ?? t0) + magicOption(i)!.deadlineSec * 1000 + 2000;
    const o = await awaitHostRollback(conn, step.nonce, SWITCH_UNIT, deadline, { pin, connectTimeoutSec: i.connectTimeout, log });
    if (!o) {
      throw new Error(`Machine ${i.name}: confirmation: not confirmed within ${confirmSec} s (${c.reason === "unreachable" ? c.error : c.reason}); ` +
        `the host should have rolled back by itself (${rollbackUnit(step.nonce)}.timer) but could not be reached since: refresh once it answers`);
    }
    rb = o.rollback;
  }
  const why = c.reason === "health" ? `health check failed: ${c.error}`
    : c.reason === "unreachable" ? `not confirmed within ${confirmSec} s (no new SSH connection: ${c.error})`
      : `not confirmed within the deadline (the host's rollback timer fired first)`;
  throw new Error(`Machine ${i.name}: confirmation: ${why}; ${rolledBack(rb)}. The state keeps the old system.`);
}

/**
 * The connection dropped while the host activated: reconnect (bounded retries within the
 * deadline), read the outcome there and return it as the activation's result when the switch
 * ended with 0 or 4 (still armed: the caller confirms), else throw what the host says.
 */
export async function recoverAfterDrop(i: MagicInputs, conn: Connection, pin: string, step: ActivationStep, lost: unknown, log: Logger): Promise<ActivationResult> {
  const previousSystemPath = step.previous();
  const armedAt = step.armedAtMs();
  const magic = magicOption(i);
  const until = armedAt && magic ? armedAt + magic.deadlineSec * 1000 + 60_000 : Date.now() + Math.max(60, i.activationTimeout) * 1000;
  log(`activation: ${(lost as Error).message}; reconnecting to read the outcome on the host`);
  let o: AttemptOutcome | undefined;
  let s: SshSession | undefined;
  try {
    s = await connectFresh(conn, pin, until, i.connectTimeout);
    for (;;) {
      o = await readAttempt(s, step.nonce, SWITCH_UNIT);
      // Still switching: with a rollback armed the host settles it by the deadline, so wait; without, say so now.
      if (!(o.switchState === "active" || o.switchState === "activating" || o.rollingBack) || !armedAt || Date.now() > until) break;
      await new Promise((r) => setTimeout(r, 1000));
    }
    if (!(o.switchState === "active" || o.switchState === "activating")) await releaseOwnLock(s, i.name);
  } catch (e) {
    throw new Error(`Machine ${i.name}: activation: the connection was lost (${(lost as Error).message}) and the host could not be reached again ` +
      `(${(e as Error).message}); ${armedAt ? `a rollback was armed (${rollbackUnit(step.nonce)}.timer): the host goes back by itself unless the switch was confirmed. ` : ""}` +
      "Refresh once it answers: it reports what the host runs.");
  } finally { s?.close(); }
  const runs = `the host runs ${o.currentSystem || "no system"} (profile generation ${o.generation})`;
  if (o.rollback) throw new Error(`Machine ${i.name}: activation: the connection was lost; ${rolledBack(o.rollback)}. The state keeps the old system.`);
  if (o.switchState === "active" || o.switchState === "activating") {
    throw new Error(`Machine ${i.name}: activation: the connection was lost while switch-to-configuration ran; it still runs on the host (unit ${SWITCH_UNIT}.service); ` +
      `${runs}. The state keeps the old system: refresh once it has finished.`);
  }
  const rc = o.switchRc ?? (o.currentSystem === i.systemPath ? 0 : undefined);
  if (rc === 0 || rc === 4) {
    log(`activation: reconnected: switch-to-configuration exited ${rc}${o.switchRc === undefined ? " (inferred: the host runs the new system)" : ""}; ${runs}`);
    return {
      missing: [], exitCode: rc, previousSystemPath, generation: o.generation, failedUnits: rc === 4 ? ["(see the host's journal)"] : [], tail: [],
      armed: o.timerState === "active" ? rollbackUnit(step.nonce) : undefined,
    };
  }
  throw new Error(`Machine ${i.name}: activation: the connection was lost; switch-to-configuration ${rc === undefined ? "left no exit code" : `exited ${rc}`} on the host; ` +
    `${runs}. ${o.currentSystem === i.systemPath ? "Refresh records it." : "The state keeps the old system."}`);
}

/**
 * The host lock this process took for the deploy, left behind when the connection dropped before
 * the activation's script could remove it: removed over the new connection once the switch is
 * over (only that very lock: its nonce), so the next deploy need not wait for it to expire.
 */
async function releaseOwnLock(s: SshSession, machine: string): Promise<void> {
  const { holder } = await readLock(s);
  if (!holder || holder.pid !== process.pid || holder.machine !== machine || !holder.user.endsWith(`@${os.hostname()}`)) return;
  await s.exec(`if grep -q '"nonce":"${holder.nonce}"' ${LOCK_FILE}; then rm -f ${LOCK_FILE}; fi`, { privileged: true, raw: true, what: "host lock release", timeoutMs: 15_000 });
}
