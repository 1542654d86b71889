/**
 * A Machine's connection as `@pulumi/command`'s `remote.Command` takes it, ready to chain: the ssh
 * config already applied (an alias becomes its HostName, Port and User; a ProxyJump its bastion),
 * each hop's host key pinned to the one this deploy recorded, the private key only when the
 * connection gave one explicitly (an agent or ~/.ssh identity stays the operator's: absent here).
 */
import { Connection, hops, portOf, userOf } from "./connection";
import { applySshConfig } from "./ssh/ssh-config";

/** One hop of {@link CommandConnection}: `remote.ConnectionArgs` / `remote.ProxyConnectionArgs` fields. */
export interface CommandHop {
  host: string;
  port: number;
  user: string;
  /** The host key pinned for this hop (`ssh-ed25519 AAAA…`). */
  hostKey?: string;
  privateKey?: string;
  privateKeyPassword?: string;
  password?: string;
  agentSocketPath?: string;
  dialErrorLimit?: number;
  perDialTimeout?: number;
}

/**
 * `remote.ConnectionArgs` for the host, `proxy` the bastion before it. remote.Command takes one
 * bastion; behind a chain, `proxy.proxy` … hold the earlier ones, as in our own connections.
 */
export interface CommandConnection extends CommandHop { proxy?: CommandConnection }

/** The ready connection for `recorded` (a connection as outputs record it: pinned, as given). */
export function commandConnection(recorded: Connection): CommandConnection {
  let applied: Connection;
  try { applied = applySshConfig(recorded); } catch { applied = recorded; } // an unsupported ssh config entry: as given
  const chain = hops(applied);
  const given = hops(recorded);
  // Each hop as ssh dials it; secrets only those the program gave (never the agent's or ~/.ssh's).
  const one = (h: Connection, explicit: Connection | undefined): CommandHop => {
    const out: CommandHop = { host: h.host, port: portOf(h), user: userOf(h) };
    if (h.hostPublicKey) out.hostKey = h.hostPublicKey;
    if (explicit?.privateKey) out.privateKey = explicit.privateKey;
    if (explicit?.privateKeyPassword) out.privateKeyPassword = explicit.privateKeyPassword;
    if (explicit?.password) out.password = explicit.password;
    if (h.agentSocketPath) out.agentSocketPath = h.agentSocketPath;
    if (h.dialErrorLimit) out.dialErrorLimit = h.dialErrorLimit;
    if (h.perDialTimeout) out.perDialTimeout = h.perDialTimeout;
    return out;
  };
  // A bastion without a key of its own (given without one, or added by ProxyJump) logs in as we
  // dial it: with the target's explicit key.
  const explicitOf = (i: number): Connection => {
    if (i === chain.length - 1) return recorded;
    const own = given.length === chain.length ? given[i] : undefined;
    return own?.privateKey || own?.password ? own : { host: "", privateKey: recorded.privateKey, privateKeyPassword: recorded.privateKeyPassword };
  };
  let out: CommandConnection | undefined;
  chain.forEach((h, i) => { out = { ...one(h, explicitOf(i)), ...(out ? { proxy: out } : {}) }; });
  return out!;
}
