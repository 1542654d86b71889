/**
 * One host, one Machine: two Machines of one program that reach the same host would each deploy
 * their own system to it, one after the other, and the state would record both while the host ran
 * whichever finished last. Checked at program time, before anything runs: the target as ssh would
 * dial it (the ssh config applied: HostName, Port, ProxyJump; no DNS lookup) and the bastions
 * before it, so one private address behind two different bastions is two hosts.
 */
import * as pulumi from "@pulumi/pulumi";
import { chainKey, ConnectionArgs, ConnectionLike, normalizeConnection } from "../connection";
import { applySshConfig } from "../ssh/ssh-config";
import { SchemaError } from "../schema";

/** Host identity (chain of `host:port`) → the Machine that claimed it, for this program run. */
const claims = new Map<string, string>();

/** Where a connection dials, as `host:port` hops (the ssh config applied when it can be). */
function dialKey(c: ConnectionLike): string {
  const n = normalizeConnection(c);
  try { return chainKey(applySshConfig(n)); } catch { return chainKey(n); } // an unsupported config entry fails at connect, naming it
}

/** Registers `machine`'s host; the error when another Machine of this program has it. */
function claim(machine: string, c: ConnectionLike): SchemaError | undefined {
  if (!c?.host || typeof c.host !== "string") return undefined;
  const key = dialKey(c);
  const other = claims.get(key);
  if (other !== undefined && other !== machine) {
    const where = key.split(">").reverse().join(" via ");
    return new SchemaError(`Machine ${machine}: reaches the same host as Machine ${other} (${where}): a host runs one system, so the two would overwrite ` +
      `each other and the state would record both. Give each machine its own host (targetHost), or remove one of them.`);
  }
  claims.set(key, machine);
  return undefined;
}

/** The first duplicate found in this program run: every Machine's gate rejects with it. */
let duplicate: SchemaError | undefined;
/** Settles once the program's synchronous construction is over (every plain claim is in). */
let settled: Promise<void> | undefined;

/** Whether every field `claim` reads is known now (plain values, bastions too). */
function plain(c: unknown): c is ConnectionLike {
  if (!c || typeof c !== "object" || pulumi.Output.isInstance(c) || c instanceof Promise) return false;
  const x = c as Record<string, unknown>;
  const scalar = (v: unknown) => v === undefined || typeof v === "string" || typeof v === "number";
  return scalar(x.host) && scalar(x.port) && scalar(x.user) && (x.sshConfig === undefined || typeof x.sshConfig !== "object") && (x.proxy === undefined || plain(x.proxy));
}

/**
 * Claims the host `connection` reaches for `machine` and returns a gate the Machine's inputs wait
 * for. Plain addresses (YAML and NixOps networks, most programs) are claimed at once: a duplicate
 * fails the constructor, and every Machine's gate rejects, so none registers (nothing runs on any
 * host). An Output connection is claimed when it resolves (never while it is unknown, in a
 * preview): a duplicate then fails the program from that apply. The gate never waits for an
 * Output, which may stay unknown.
 */
export function claimHost(machine: string, connection: pulumi.Input<ConnectionArgs>): pulumi.Output<void> {
  const check = (c: ConnectionLike) => {
    const e = claim(machine, c);
    if (e) { duplicate ??= e; throw e; }
  };
  if (plain(connection)) check(connection);
  else pulumi.output(connection).apply((c) => { check(c as unknown as ConnectionLike); return c; });
  // After the rest of the program's synchronous code has constructed its Machines.
  settled ??= new Promise((r) => setImmediate(r));
  return pulumi.output(settled.then(() => {
    // Every Machine's input fails: none registers.
    if (duplicate) throw duplicate;
  }));
}
