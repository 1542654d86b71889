import type * as pulumi from "@pulumi/pulumi";

/**
 * How to reach a hop on the way to a host (a bastion): `@pulumi/command`'s `remote.ProxyConnection`
 * plus `proxy` for chains (the bastion's own bastion).
 */
export interface ProxyConnectionArgs {
  /** Host name or address of the bastion, as the previous hop (or this machine) reaches it. */
  host: pulumi.Input<string>;
  /** SSH port (default 22). */
  port?: pulumi.Input<number>;
  /** Login user (default "root"); it needs no privileges, only TCP forwarding. */
  user?: pulumi.Input<string>;
  /** Password (a secret). Prefer keys. */
  password?: pulumi.Input<string>;
  /** Private key (OpenSSH PEM text, a secret). Absent: the ssh-agent. */
  privateKey?: pulumi.Input<string>;
  /** Passphrase of an encrypted `privateKey` (a secret). */
  privateKeyPassword?: pulumi.Input<string>;
  /** ssh-agent socket (default SSH_AUTH_SOCK). */
  agentSocketPath?: pulumi.Input<string>;
  /** Dial attempts before giving up (default 10; -1 = unlimited). Auth and host-key errors are never retried. */
  dialErrorLimit?: pulumi.Input<number>;
  /** Seconds each dial (TCP + handshake + authentication) may take (default 15). */
  perDialTimeout?: pulumi.Input<number>;
  /** Pin of this hop's host key (`ssh-ed25519 AAAA…`). Absent: recorded at first contact, then required. */
  hostKey?: pulumi.Input<string>;
  /** The hop before this one (chains of bastions). */
  proxy?: pulumi.Input<ProxyConnectionArgs>;
}

/**
 * How to reach a host over SSH. Shared by every resource of this package and shaped like
 * `@pulumi/command`'s `remote.ConnectionArgs`, so a Machine's `connection` output can feed a
 * `remote.Command` (it carries `hostKey`, so the command pins the same key).
 */
export interface ConnectionArgs extends Omit<ProxyConnectionArgs, "hostKey" | "proxy"> {
  /** Host name or address of the target (as the last bastion reaches it, with `proxy`). */
  host: pulumi.Input<string>;
  /** Login user (default "root"). Another user runs privileged steps through `sudo -n`. */
  user?: pulumi.Input<string>;
  /**
   * Private key (OpenSSH PEM text). Pass it as a Pulumi secret (`config.requireSecret`).
   * Absent: the ssh-agent at `agentSocketPath` / SSH_AUTH_SOCK is used.
   */
  privateKey?: pulumi.Input<string>;
  /**
   * Pin of the host's public key (`ssh-ed25519 AAAA…`, as in known_hosts). Absent: the key seen at
   * first contact is recorded in state and required from then on.
   */
  hostPublicKey?: pulumi.Input<string>;
  /** `@pulumi/command`'s name for {@link hostPublicKey} (either may be given; outputs carry both). */
  hostKey?: pulumi.Input<string>;
  /** Bastion to reach the host through (`remote.ProxyConnection`; `proxy.proxy` for chains). */
  proxy?: pulumi.Input<ProxyConnectionArgs>;
  /**
   * How a host key is checked when none is pinned (here or recorded): the key must be the one
   * `~/.ssh/known_hosts` lists for the host; a host it does not list is trusted on first use
   * (`tofu`, default, the key recorded) or refused (`strict`). Applies to the bastions too.
   */
  hostKeyPolicy?: pulumi.Input<"strict" | "tofu">;
  /**
   * The OpenSSH client config to apply for `host` (HostName, User, Port, IdentityFile, ProxyJump,
   * IdentityAgent, UserKnownHostsFile): default the user's `~/.ssh/config`; a path; `false` for none.
   * Explicit inputs win over it.
   */
  sshConfig?: pulumi.Input<boolean | string>;
  /**
   * argv that runs a command as root for a non-root `user` (NixOps's
   * `deployment.privilegeEscalationCommand`), e.g. `["doas"]`; default `["sudo"]`. `sudo` and
   * `doas` get `-n` (never a password prompt); the script follows as `sh -c SCRIPT`.
   */
  privilegeEscalationCommand?: pulumi.Input<string[]>;
}

/** Resolved connection (one hop), as stored in state and returned in outputs. */
export interface Connection {
  host: string;
  /** Absent: the ssh config's Port, else 22 ({@link portOf}). */
  port?: number;
  /** Absent: the ssh config's User, else root ({@link userOf}). */
  user?: string;
  password?: string;
  privateKey?: string;
  privateKeyPassword?: string;
  agentSocketPath?: string;
  /** Absent: 10. */
  dialErrorLimit?: number;
  /** Seconds; absent: the Machine's connectTimeout, else 15. */
  perDialTimeout?: number;
  hostPublicKey?: string;
  /** Same as hostPublicKey (both are written; the pin is whichever is set). */
  hostKey?: string;
  proxy?: Connection;
  /** Without a pin: `tofu` (default) trusts a host known_hosts does not list; `strict` refuses it. Bastions inherit it. */
  hostKeyPolicy?: "strict" | "tofu";
  /** `~/.ssh/config` use: absent/true = the user's, a path = that file, false = none. */
  sshConfig?: boolean | string;
  /** argv that runs a command as root for a non-root user (default `["sudo"]`; see ConnectionArgs). */
  privilegeEscalationCommand?: string[];
  /** known_hosts files to check (UserKnownHostsFile of the ssh config); absent: ~/.ssh/known_hosts{,2}. Never stored. */
  knownHostsFiles?: string[];
  /**
   * Host keys of the bastions the ssh config's `ProxyJump` adds, by `host:port` as dialled:
   * recorded at first contact (outputs), required from then on, as `proxy.hostKey` is for a
   * bastion given in the connection.
   */
  jumpHostKeys?: Record<string, string>;
  /** Set on hops `ProxyJump` added at connect time (never stored): where their pin comes from. */
  fromSshConfig?: boolean;
  /**
   * The ssh config's IdentityFile(s) for this hop, resolved at connect time (never stored; the
   * files are read when dialling). Absent: OpenSSH's default identity files.
   */
  identityFiles?: string[];
}

/** Default dial attempts (`@pulumi/command`'s). */
export const DIAL_ERROR_LIMIT = 10;

/** A connection as found in inputs or state: any field may be missing or empty, bastions too. */
export type ConnectionLike = Partial<Omit<Connection, "proxy">> & { host: string; proxy?: ConnectionLike };

/** The port a hop connects to: its own, else 22 (after the ssh config had its say). */
export const portOf = (c: { port?: number }): number => c.port || 22;
/** The user a hop logs in as: its own, else root (after the ssh config had its say). */
export const userOf = (c: { user?: string }): string => c.user || "root";

/**
 * Empty fields dropped, recursively for the bastions; `hostKey` and `hostPublicKey` made equal.
 * `port` and `user` stay absent when not given: an explicit `root` or `22` wins over the ssh
 * config, an absent one takes the config's value ({@link portOf}/{@link userOf} give the default).
 */
export function normalizeConnection(c: ConnectionLike): Connection {
  // "" / 0 mean absent (lifted Outputs carry empty values for missing fields).
  const pin = c.hostPublicKey || c.hostKey || undefined;
  // No field is ever present with an undefined value: results go through Struct.fromJavaScript.
  const out: Connection = { host: c.host };
  if (c.privateKey) out.privateKey = c.privateKey;
  if (pin) { out.hostPublicKey = pin; out.hostKey = pin; }
  if (c.port) out.port = c.port;
  if (c.user) out.user = c.user;
  if (c.password) out.password = c.password;
  if (c.privateKeyPassword) out.privateKeyPassword = c.privateKeyPassword;
  if (c.agentSocketPath) out.agentSocketPath = c.agentSocketPath;
  if (c.dialErrorLimit) out.dialErrorLimit = c.dialErrorLimit;
  if (c.perDialTimeout) out.perDialTimeout = c.perDialTimeout;
  if (c.proxy && c.proxy.host) out.proxy = normalizeConnection(c.proxy);
  if (c.hostKeyPolicy) out.hostKeyPolicy = c.hostKeyPolicy;
  if (c.sshConfig === false || (typeof c.sshConfig === "string" && c.sshConfig)) out.sshConfig = c.sshConfig;
  if (c.knownHostsFiles?.length) out.knownHostsFiles = c.knownHostsFiles;
  if (c.privilegeEscalationCommand?.length) out.privilegeEscalationCommand = [...c.privilegeEscalationCommand];
  if (c.jumpHostKeys && Object.keys(c.jumpHostKeys).length) out.jumpHostKeys = { ...c.jumpHostKeys };
  if (c.identityFiles?.length) out.identityFiles = c.identityFiles;
  return out;
}

/** The hops from this machine to the target: bastions first, the target last. */
export function hops(c: Connection): Connection[] {
  return c.proxy ? [...hops(c.proxy), c] : [c];
}

/** `user@host:port` (with ` via user@bastion:port…` behind bastions), for messages. */
export function connectionLabel(c: Connection): string {
  const one = (h: Connection) => `${userOf(h)}@${h.host}:${portOf(h)}`;
  return c.proxy ? `${one(c)} via ${hops(c.proxy).reverse().map(one).join(" via ")}` : one(c);
}

/**
 * Identity of the host a connection reaches: `host:port`, prefixed by each bastion's `host:port`.
 * Behind different bastions, one private address names different hosts: locks and pools key by this.
 */
export function chainKey(c: Connection): string {
  return hops(c).map((h) => `${h.host}:${portOf(h)}`).join(">");
}

/**
 * The connection with every hop's host key pinned to the key seen (`proxyKeys`: bastions, first hop
 * first; an explicit pin stays; `jumpKeys`: those of bastions the ssh config added): what outputs
 * record, so later operations enforce them.
 */
export function pinnedConnection(c: Connection, targetKey: string | undefined, proxyKeys: string[] = [], jumpKeys: Record<string, string> = {}): Connection {
  const chain = hops(c);
  // One key per hop, bastions first: a missing bastion key stays missing (never the target's).
  const keys = chain.map((_, i) => (i === chain.length - 1 ? targetKey : proxyKeys[i]));
  let out: Connection | undefined;
  chain.forEach((h, i) => {
    const { proxy: _p, hostPublicKey: _h, hostKey: _k, ...rest } = h;
    const key = h.hostPublicKey || keys[i];
    out = { ...rest, ...(out ? { proxy: out } : {}), ...(key ? { hostPublicKey: key, hostKey: key } : {}) };
  });
  const jump = { ...c.jumpHostKeys, ...jumpKeys };
  if (Object.keys(jump).length) out!.jumpHostKeys = jump;
  return out!;
}

/** `host:port` of a hop, the key of {@link Connection.jumpHostKeys}. */
export const jumpKey = (h: Connection): string => `${h.host}:${portOf(h)}`;

/**
 * `news` with the bastions' host keys recorded in `olds` (same hop: host, port, user) where
 * `news` pins none: TOFU keys, once recorded, are enforced on later updates.
 */
export function withRecordedProxyKeys(news: Connection, olds: Connection | undefined): Connection {
  // ProxyJump bastions' keys (by host:port) carry over whatever else changed.
  if (olds?.jumpHostKeys) news = { ...news, jumpHostKeys: { ...olds.jumpHostKeys, ...news.jumpHostKeys } };
  if (!news.proxy) return news;
  const o = olds?.proxy;
  const same = o && o.host === news.proxy.host && portOf(o) === portOf(news.proxy) && userOf(o) === userOf(news.proxy);
  const proxy = withRecordedProxyKeys(news.proxy, same ? o : undefined);
  const key = proxy.hostPublicKey || proxy.hostKey || (same ? o!.hostPublicKey || o!.hostKey : undefined);
  return { ...news, proxy: key ? { ...proxy, hostPublicKey: key, hostKey: key } : proxy };
}
