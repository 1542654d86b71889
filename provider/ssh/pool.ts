/**
 * One SSH connection per host per provider process, shared by every step and resource on that
 * host, and one operation at a time per host (two machines on one host, a machine and its keys).
 * Across processes, operations that change a host also hold the lock on the host (`lock`).
 */
import * as crypto from "crypto";
import { Connection, chainKey, connectionLabel, hops } from "../connection";
import { SshSession } from "./session";
import { LockRequest, withHostLock } from "../host/lock";

const sessions = new Map<string, Promise<SshSession>>();
const hostQueues = new Map<string, Promise<unknown>>();
const idleTimers = new Map<string, NodeJS.Timeout>();
const IDLE_MS = 30_000;

/** Options of {@link withHost}. */
export interface HostAccess {
  /** Pinned host key; absent = accept and report the key seen. */
  pin?: string;
  /** Connect timeout in ms. */
  connectTimeoutMs?: number;
  /**
   * Hold the lock on the host itself (provider/host/lock.ts) for the whole operation: for
   * anything that changes the host. Reads (refresh) take none.
   */
  lock?: LockRequest;
  /** waitForSsh in ms: keep dialing a host that is still coming up (0/absent: no waiting). */
  waitForSshMs?: number;
  /** Where "waiting for SSH on …" is said (once). */
  onWait?: (line: string) => void;
}

/** Whole chain (every hop's user, address, credentials and pin): one session per distinct way in. */
function sessionKey(c: Connection, pin?: string): string {
  const auth = crypto.createHash("sha256").update(JSON.stringify(hops(c).map((h) =>
    [h.privateKey ?? "", h.privateKeyPassword ?? "", h.password ?? "", h.agentSocketPath ?? "", h.hostPublicKey ?? ""]))).digest("hex").slice(0, 16);
  return `${connectionLabel(c)}/${auth}/${pin ?? ""}`;
}

/**
 * Serializes operations on one host, whatever the user: keyed by the whole chain (one private
 * address behind two bastions is two hosts).
 */
export async function lockHost<T>(c: Connection, fn: () => Promise<T>): Promise<T> {
  const key = chainKey(c);
  const prev = hostQueues.get(key) ?? Promise.resolve();
  const mine = prev.catch(() => undefined).then(fn);
  hostQueues.set(key, mine);
  try {
    return await mine;
  } finally {
    if (hostQueues.get(key) === mine) hostQueues.delete(key);
  }
}

/** A live session for c (reused when one is open), verified against the pin. */
export async function getSession(c: Connection, access: HostAccess = {}): Promise<SshSession> {
  const key = sessionKey(c, access.pin);
  clearTimeout(idleTimers.get(key));
  const existing = sessions.get(key);
  if (existing) {
    const s = await existing.catch(() => undefined);
    if (s?.alive) return s;
    sessions.delete(key);
  }
  const p = SshSession.connect(c, { pin: access.pin, timeoutMs: access.connectTimeoutMs, waitMs: access.waitForSshMs, onWait: access.onWait });
  sessions.set(key, p);
  p.catch(() => sessions.delete(key));
  return p;
}

/** Runs fn with the host locked and a session open; the session stays open for reuse a while. */
export function withHost<T>(c: Connection, access: HostAccess, fn: (s: SshSession) => Promise<T>): Promise<T> {
  return lockHost(c, async () => {
    const s = await getSession(c, access);
    try {
      return await (access.lock ? withHostLock(s, access.lock, () => fn(s)) : fn(s));
    } finally {
      const key = sessionKey(c, access.pin);
      const t = setTimeout(() => closeSession(key), IDLE_MS);
      t.unref();
      idleTimers.set(key, t);
    }
  });
}

async function closeSession(key: string): Promise<void> {
  const p = sessions.get(key);
  sessions.delete(key);
  (await p?.catch(() => undefined))?.close();
}

/** Closes every pooled session (tests, CLI exit). */
export async function closeAllSessions(): Promise<void> {
  await Promise.all([...sessions.keys()].map(closeSession));
}
