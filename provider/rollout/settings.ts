/**
 * A network's `rollout`: how many machines switch at once (Ansible's `serial` and
 * `max_fail_percentage`, with a canary wave first). Counts or percentages of the network's
 * machines; what each Machine is given is resolved here, at program time.
 */
import { SchemaError, rolloutProblems } from "../schema";

/** A number of machines, or a percentage (`"20%"`) of the network's machines (rounded up, at least 1). */
export type CountOrPercent = number | string;

/** `rollout` of a Network (`network.rollout` in a description, stack config `pulumi-nixos:rollout` for networkNix). */
export interface RolloutSpec {
  /** Machines of the first wave, alone (default 0: no canary). The canary wave tolerates no failure. */
  canary?: CountOrPercent;
  /** Machines of each later wave (default: all at once, as without a rollout). */
  batchSize?: CountOrPercent;
  /** Failed machines a (non-canary) wave may have before the rollout stops (default 0); a percentage is of the wave. */
  maxFailures?: CountOrPercent;
  /** Seconds to wait between the end of a wave and the start of the next (default 0). */
  pauseSeconds?: number;
  /** Machines with the first of these tags go first, then those with the second, …, then the rest (by name). */
  order?: { tags?: string[] };
}

/** What a Machine of a rolled-out network is given (a Machine input, recorded only: never a reason to redeploy). */
export interface MachineRollout {
  /** The network's name: the coordinator's key (two networks roll out independently). */
  network: string;
  /** Machine names of the network: a wave closes at once when every one that is to change has arrived. */
  members: string[];
  canary: number;
  /** 0 = all at once. */
  batchSize: number;
  maxFailures: CountOrPercent;
  pauseSeconds: number;
  /** Position by `order.tags` (lower goes first); machines without those tags share the last rank. */
  rank: number;
}

/** `n` or `p%` of `total`: percentages round up and are at least 1 (of a non-empty network). */
export function resolveCount(v: CountOrPercent | undefined, total: number, dflt: number): number {
  if (v === undefined) return dflt;
  if (typeof v === "number") return v;
  const p = Number(v.slice(0, -1));
  return total === 0 ? 0 : Math.max(1, Math.ceil((p * total) / 100));
}

/** Throws a SchemaError naming every bad field of `spec` (at `where`, e.g. `network.rollout`). */
export function validateRollout(where: string, spec: unknown): asserts spec is RolloutSpec | undefined {
  const p = rolloutProblems(where, spec);
  if (p.length) throw new SchemaError(`invalid ${where}:\n  ${p.join("\n  ")}`);
}

/** Each machine's rollout input, or undefined for every machine when there is no rollout. */
export function machineRollouts(network: string, spec: RolloutSpec | undefined, machines: Record<string, { tags?: string[] }>): Record<string, MachineRollout> | undefined {
  if (!spec) return undefined;
  const names = Object.keys(machines);
  const order = spec.order?.tags ?? [];
  const rankOf = (tags: string[] = []) => { const r = order.findIndex((t) => tags.includes(t)); return r < 0 ? order.length : r; };
  return Object.fromEntries(names.map((m) => [m, {
    network, members: names,
    canary: resolveCount(spec.canary, names.length, 0),
    batchSize: resolveCount(spec.batchSize, names.length, 0),
    maxFailures: spec.maxFailures ?? 0,
    pauseSeconds: spec.pauseSeconds ?? 0,
    rank: rankOf(machines[m].tags),
  }]));
}
