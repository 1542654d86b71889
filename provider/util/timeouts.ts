/**
 * Deadlines of every network call, in one place: defaults, and the environment variable that
 * overrides each (seconds). Machine's `connectTimeout` / `activationTimeout` inputs override
 * their two per machine. The README's "Timeouts" table lists the same names and defaults.
 */

/** Names of the deadlines (each also `PULUMI_NIXOS_<NAME>_TIMEOUT` in the environment, seconds). */
export type TimeoutName = "connect" | "command" | "stall" | "fetch" | "vault" | "eval" | "lock" | "fleet";

/** Defaults in seconds. */
export const TIMEOUT_DEFAULTS: Record<TimeoutName, number> = {
  /** SSH connect + handshake + authentication. */
  connect: 15,
  /** Each remote command other than the activation (own: activationTimeout) and the closure import. */
  command: 300,
  /** The closure import: fails when the host takes no data for this long (the copy itself has no total limit). */
  stall: 60,
  /** nix-prefetch-url of a pin (program time, on this machine) and of a channel (on the host). */
  fetch: 300,
  /** Each Vault request. */
  vault: 10,
  /** Program-time `nix-instantiate` of the fleet. */
  eval: 600,
  /** Lifetime of a host lock: its holder renews it every third of this; after it, the lock is expired. */
  lock: 60,
  /** A read-only fleet command (info, check, list-generations, diff) on one host, dials and reads together. */
  fleet: 10,
};

/** The environment variable that overrides a deadline. */
export const timeoutEnv = (name: TimeoutName): string => `PULUMI_NIXOS_${name.toUpperCase()}_TIMEOUT`;

/**
 * A deadline in milliseconds: the environment's value when set (a positive number of seconds;
 * anything else is an error naming the variable), else the default.
 */
export function timeoutMs(name: TimeoutName): number {
  const env = timeoutEnv(name);
  const raw = process.env[env];
  if (raw === undefined || raw === "") return TIMEOUT_DEFAULTS[name] * 1000;
  const n = Number(raw);
  if (!(n > 0) || !Number.isFinite(n)) throw new Error(`${env} must be a positive number of seconds, got '${raw}'`);
  return n * 1000;
}

/** `N s (NAME)` for error messages: the deadline and how to change it. */
export const describeTimeout = (name: TimeoutName, ms = timeoutMs(name)): string => `${fmtSecs(ms)} s (${timeoutEnv(name)})`;

const fmtSecs = (ms: number): string => String(Math.round(ms / 100) / 10);
