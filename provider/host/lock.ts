/**
 * A lock on the host itself, so that two deployers (two processes, two stacks, two operators)
 * never change one host at once. The in-process queue of provider/ssh/pool.ts only orders the
 * operations of one process; this lock lives on the host: `/run/pulumi-nixos/lock`, a JSON file
 * naming its holder, created atomically (written aside, then hard-linked into place: `ln` fails
 * when the lock exists), renewed by its holder while it works, removed at the end.
 *
 * Round trips: none of its own on the way in. While an operation holds the lock, every privileged
 * script it sends is prefixed with a short prologue (take the lock, or renew it when it is ours;
 * exit 75 with the holder when another has it), and the command that ends the operation (e.g. the
 * activation) removes it in the same script. Only an operation that ends otherwise sends one
 * release command; a renewal runs every third of the lock's lifetime while a long step runs.
 *
 * NixOS's own `/run/nixos/switch-to-configuration.lock` is probed (`flock -n`, released at once)
 * once ours is taken (then given back): a switch someone runs by hand makes us fail at once, and a
 * deploy by another deployer is named by our own lock first. It is never held
 * around our own switch (switch-to-configuration takes it itself).
 */
import * as crypto from "crypto";
import * as os from "os";
import { ExecResult, ScriptHook, SshSession, shq, CommandTimeoutError, ConnectionLostError } from "../ssh/session";
import { timeoutMs } from "../util/timeouts";
import { writeLogLine } from "../util/log";

/** Directory of the lock on the host (a tmpfs on NixOS: a reboot clears it). */
export const LOCK_DIR = "/run/pulumi-nixos";
export const LOCK_FILE = `${LOCK_DIR}/lock`;
/** NixOS's lock around switch-to-configuration. */
export const NIXOS_SWITCH_LOCK = "/run/nixos/switch-to-configuration.lock";
/** Exit code of a script whose prologue found the host locked (EX_TEMPFAIL). */
const BUSY_EXIT = 75;
const MARK = "@@pulumi-nixos-lock";

/** What the lock file says (times in seconds since the epoch, by the host's clock). */
export interface LockHolder {
  /** The machine (or key, pin) being changed. */
  machine: string;
  /** What the holder does: deploy, key upload, channel pin, rollback, reboot, send-keys. */
  op: string;
  /** user@machine of the deployer. */
  user: string;
  stack: string;
  pid: number;
  nonce: string;
  since: number;
  expires: number;
}

/** The host is locked by another deployer (or NixOS's switch-to-configuration runs). */
export class HostLockedError extends Error {
  constructor(message: string, readonly holder?: LockHolder, readonly expired = false) { super(message); }
}

/** Who takes a lock. */
export interface LockRequest {
  /** The machine (resource) being changed, shown to other deployers. */
  machine: string;
  /** What is done (default "deploy"). */
  op?: string;
  /** Stack name (default: PULUMI_NODEJS_STACK, set by Pulumi in the provider process). */
  stack?: string;
  /**
   * Which command ends the operation: its script also removes the lock (no release round trip).
   * Default: none (one release command at the end).
   */
  releaseWith?: (script: string) => boolean;
}

const clock = (epochSec: number): string => new Date(epochSec * 1000).toTimeString().slice(0, 8);

/** The deployer's identity for the lock file. */
function identity(): { user: string; pid: number } {
  let user = "unknown";
  try { user = os.userInfo().username; } catch { /* no passwd entry */ }
  return { user: `${user}@${os.hostname()}`, pid: process.pid };
}

/** "heron is being deployed by alice@laptop (stack prod, since 12:03:11, pid 4242)" (or: its lock expired). */
export function describeHolder(h: LockHolder, hostNow: number, where: string): { message: string; expired: boolean } {
  const who = `${h.user} (stack ${h.stack}, since ${clock(h.since)}, pid ${h.pid}${h.op && h.op !== "deploy" ? `, ${h.op}` : ""})`;
  if (hostNow >= h.expires) {
    return {
      expired: true,
      message: `${h.machine}: the lock on ${where} held by ${who} expired at ${clock(h.expires)} (${hostNow - h.expires} s ago): its holder is gone or stuck. ` +
        `Break it with \`pulumi-nixos unlock ${h.machine} --stack ${h.stack}\` (or --state FILE) once you are sure no deploy runs`,
    };
  }
  // A holder from this very machine whose process is gone: say so (the host may still be running
  // what it started, e.g. an activation, so the lock is not broken by itself).
  const gone = h.user === identity().user && !pidAlive(h.pid)
    ? `; pid ${h.pid} no longer runs on this machine: the lock expires at ${clock(h.expires)} (${h.expires - hostNow} s; what it started, e.g. an activation, may still run on ${where}), ` +
      `then run again; or, once you know nothing runs there for it, \`pulumi-nixos unlock ${h.machine} --stack ${h.stack} --force\``
    : "";
  return { expired: false, message: `${h.machine} is being deployed by ${who}; ${where} is locked until it finishes${gone}` };
}

function pidAlive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch (e) { return (e as NodeJS.ErrnoException).code === "EPERM"; }
}

/** Parses the lock file's JSON (undefined when unreadable). */
export function parseHolder(text: string): LockHolder | undefined {
  try {
    const h = JSON.parse(text);
    return typeof h?.nonce === "string" && typeof h?.expires === "number" ? h as LockHolder : undefined;
  } catch { return undefined; }
}

/** One operation's hold on a host. */
class HeldLock implements ScriptHook {
  /** Whether the lock may be on the host now (taken by a command, not yet released). */
  held = false;
  /** A command's fate is unknown (timed out, connection lost): leave the lock to expire. */
  unknown = false;
  /** A command has run with the lock taken (so a renewal that finds it gone means it was broken). */
  private confirmed = false;
  readonly nonce = crypto.randomBytes(12).toString("hex");
  private readonly head: string;
  private readonly ttlSec: number;

  constructor(private readonly s: SshSession, private readonly req: LockRequest) {
    const id = identity();
    this.ttlSec = Math.max(1, Math.round(timeoutMs("lock") / 1000));
    // The fixed part of the JSON; since/expires are the host's clock, appended by the script.
    const fixed = { machine: req.machine, op: req.op ?? "deploy", user: id.user, stack: req.stack ?? process.env.PULUMI_NODEJS_STACK ?? "unknown", pid: id.pid, nonce: this.nonce };
    this.head = JSON.stringify(fixed).slice(0, -1);
  }

  /** Take the lock, or renew it when it is ours; exit 75 naming the holder otherwise. */
  private prologue(): string {
    const write = (since: string) => `printf '%s,"since":%s,"expires":%s}\\n' ${shq(this.head)} ${since} $((__pnx_now + ${this.ttlSec})) > "$__pnx_l.$$"`;
    return [
      `__pnx_l=${LOCK_FILE}; __pnx_now=$(date +%s)`,
      `if grep -q '"nonce":"${this.nonce}"' "$__pnx_l" 2>/dev/null; then`,
      `  __pnx_since=$(sed -n 's/.*"since":\\([0-9]*\\).*/\\1/p' "$__pnx_l")`,
      `  ${write(`"\${__pnx_since:-$__pnx_now}"`)} && mv -f "$__pnx_l.$$" "$__pnx_l"`,
      `else`,
      `  mkdir -p -m 0755 ${LOCK_DIR} && ${write("$__pnx_now")} || exit ${BUSY_EXIT}`,
      // `ln` creates the name only if it does not exist: atomic, and the content is complete.
      // Ours first: another deployer's switch holds NixOS's lock too, and the refusal names it.
      `  if ! ln "$__pnx_l.$$" "$__pnx_l" 2>/dev/null; then rm -f "$__pnx_l.$$"; echo "${MARK} busy now=$__pnx_now $(head -c 4096 "$__pnx_l" 2>/dev/null | tr -d '\\n')" >&2; exit ${BUSY_EXIT}; fi`,
      `  rm -f "$__pnx_l.$$"`,
      // NixOS's own switch lock (a switch run by hand): probed, never kept (flock -n takes and
      // drops it at once); held, our lock is given back at once.
      `  if [ -e ${NIXOS_SWITCH_LOCK} ] && command -v flock >/dev/null 2>&1 && ! flock -n ${NIXOS_SWITCH_LOCK} true; then rm -f "$__pnx_l"; echo "${MARK} switch" >&2; exit ${BUSY_EXIT}; fi`,
      `fi`,
    ].join("\n");
  }

  private releaseScript(): string {
    return `if grep -q '"nonce":"${this.nonce}"' ${LOCK_FILE} 2>/dev/null; then rm -f ${LOCK_FILE}; fi`;
  }

  wrap(script: string): string {
    // From now on the lock may be ours: renewals (which never create it) keep it alive meanwhile.
    this.held = true;
    if (!this.req.releaseWith?.(script)) return `${this.prologue()}\n${script}`;
    // The script runs in a subshell so that its own `exit` still lets the release run.
    return `${this.prologue()}\n(\n${script}\n)\n__pnx_rc=$?\n${this.releaseScript()}\nexit $__pnx_rc`;
  }

  /** The prologue's refusal lines: read from stderr by {@link settled}, never shown as the step's output. */
  ownsLine(line: string): boolean { return line.startsWith(MARK); }

  settled(r: ExecResult, script: string): void {
    if (r.code === BUSY_EXIT) {
      const line = r.stderr.split("\n").find((l) => l.startsWith(MARK));
      if (line) {
        this.held = this.confirmed;
        if (line.startsWith(`${MARK} switch`)) {
          throw new HostLockedError(`${this.req.machine}: switch-to-configuration is already running on ${this.s.label} (${NIXOS_SWITCH_LOCK} is held); nothing was changed, try again when it has finished`);
        }
        const m = /^\S+ busy now=(\d+) (.*)$/.exec(line);
        const holder = m ? parseHolder(m[2]) : undefined;
        if (!holder) throw new HostLockedError(`${this.req.machine}: ${this.s.label} is locked (${LOCK_FILE}: ${m?.[2] || "unreadable"}); nothing was changed`);
        const d = describeHolder(holder, Number(m![1]), this.s.label);
        throw new HostLockedError(d.message, holder, d.expired);
      }
    }
    this.confirmed = true;
    this.held = !this.req.releaseWith?.(script);
  }

  /** A command failed without a result: whether the host ran it is unknown. */
  lost(e: unknown): void {
    // After a stall the import was cut off: a resumed `nix-store --import` sees a truncated
    // stream and fails, so nothing follows on the host and the lock can go.
    if (e instanceof CommandTimeoutError || e instanceof ConnectionLostError) this.unknown = true;
  }

  /** Pushes the expiry on (when the lock is ours); a lost lock is reported on stderr. */
  async renew(): Promise<void> {
    if (!this.held || this.unknown || !this.s.alive) return;
    const r = await this.s.exec([
      `__pnx_l=${LOCK_FILE}; __pnx_now=$(date +%s)`,
      `if grep -q '"nonce":"${this.nonce}"' "$__pnx_l" 2>/dev/null; then`,
      `  __pnx_since=$(sed -n 's/.*"since":\\([0-9]*\\).*/\\1/p' "$__pnx_l")`,
      `  printf '%s,"since":%s,"expires":%s}\\n' ${shq(this.head)} "\${__pnx_since:-$__pnx_now}" $((__pnx_now + ${this.ttlSec})) > "$__pnx_l.$$" && mv -f "$__pnx_l.$$" "$__pnx_l" && echo renewed`,
      `else echo lost; fi`,
    ].join("\n"), { privileged: true, raw: true, what: "host lock renewal", timeoutMs: Math.max(5_000, timeoutMs("lock") / 3) });
    if (r.stdout.trim() === "lost" && this.held && this.confirmed) {
      writeLogLine(`${this.req.machine}: the lock on ${this.s.label} was broken by someone else while this operation ran\n`);
    }
  }

  async release(): Promise<void> {
    if (!this.held || this.unknown || !this.s.alive) return;
    await this.s.exec(this.releaseScript(), { privileged: true, raw: true, what: "host lock release", timeoutMs: 15_000 });
    this.held = false;
  }

  get renewEveryMs(): number { return Math.max(1000, timeoutMs("lock") / 3); }
}

/**
 * Runs fn with the host locked for `req.machine`: the lock is taken by fn's first privileged
 * command, renewed while fn runs, and released when fn ends (also when it fails). Throws
 * {@link HostLockedError} (from that first command) when another deployer holds the host.
 */
export async function withHostLock<T>(s: SshSession, req: LockRequest, fn: () => Promise<T>): Promise<T> {
  if (s.hook) return fn(); // nested: the outer operation holds the lock already
  const lock = new HeldLock(s, req);
  s.hook = lock;
  const renewal = setInterval(() => { lock.renew().catch((e) => lock.lost(e)); }, lock.renewEveryMs);
  try {
    return await fn().catch((e) => { lock.lost(e); throw e; });
  } finally {
    clearInterval(renewal);
    if (s.hook === lock) s.hook = undefined;
    await lock.release().catch(() => undefined); // unreachable host: the lock expires by itself
  }
}

/** The lock on a host as found now. */
export interface LockState {
  holder?: LockHolder;
  /** The raw file when it is not a lock this version wrote. */
  raw?: string;
  hostNow: number;
  expired: boolean;
}

/** Reads the host's lock (no change). */
export async function readLock(s: SshSession): Promise<LockState> {
  const r = await s.exec(`date +%s; cat ${LOCK_FILE} 2>/dev/null || true`, { privileged: true, raw: true, what: "reading the host lock" });
  const [now, ...rest] = r.stdout.split("\n");
  const text = rest.join("\n").trim();
  const hostNow = Number(now);
  const holder = text ? parseHolder(text) : undefined;
  return { holder, raw: text && !holder ? text : undefined, hostNow, expired: !!holder && hostNow >= holder.expires };
}

/**
 * Breaks the host's lock (`pulumi-nixos unlock`): only an expired one unless `force`, and only the
 * lock that was read (a holder that renewed, or a new one, in between is left alone).
 */
export async function breakLock(s: SshSession, opts: { force?: boolean } = {}): Promise<{ broken: boolean; state: LockState }> {
  const state = await readLock(s);
  if (!state.holder && !state.raw) return { broken: false, state };
  if (state.holder && !state.expired && !opts.force) return { broken: false, state };
  // Only the lock that was read: a holder that renewed since (new expiry) keeps it.
  const match = state.holder ? `grep -q '"nonce":"${state.holder.nonce}".*"expires":${state.holder.expires}}' ${LOCK_FILE}` : "true";
  await s.exec(`if ${match}; then rm -f ${LOCK_FILE}; fi`, { privileged: true, raw: true, what: "breaking the host lock" });
  return { broken: true, state };
}

/** A Machine deploy: held from the first command to the activation, whose script releases it. */
export const deployLock = (machine: string, stack?: string): LockRequest => ({ machine, op: "deploy", ...(stack ? { stack } : {}), releaseWith: (script) => script.includes("/bin/switch-to-configuration") });
/** A one-command change (a key upload or removal, a channel restore): that command releases it. */
export const oneCommandLock = (machine: string, op: string, stack?: string): LockRequest => ({ machine, op, ...(stack ? { stack } : {}), releaseWith: () => true });
