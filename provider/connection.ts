import type * as pulumi from "@pulumi/pulumi";

/**
 * How to reach a host over SSH. Shared by every resource of this package and shaped like
 * `@pulumi/command`'s `remote.ConnectionArgs`, so a Machine's `connection` output can feed a
 * `remote.Command`.
 */
export interface ConnectionArgs {
  /** Host name or address of the target. */
  host: pulumi.Input<string>;
  /** SSH port (default 22). */
  port?: pulumi.Input<number>;
  /** Login user (default "root"). Another user runs privileged steps through `sudo -n`. */
  user?: pulumi.Input<string>;
  /**
   * Private key (OpenSSH PEM text). Pass it as a Pulumi secret (`config.requireSecret`).
   * Absent: the ssh-agent at SSH_AUTH_SOCK is used.
   */
  privateKey?: pulumi.Input<string>;
  /**
   * Pin of the host's public key (`ssh-ed25519 AAAA…`, as in known_hosts). Absent: the key seen at
   * first contact is recorded in state and required from then on.
   */
  hostPublicKey?: pulumi.Input<string>;
}

/** Resolved connection, as stored in state and returned in outputs. */
export interface Connection {
  host: string;
  port: number;
  user: string;
  privateKey?: string;
  hostPublicKey?: string;
}

/** Connection defaults and a stable key for per-host locking and connection reuse. */
export function normalizeConnection(c: Partial<Connection> & { host: string }): Connection {
  // "" means absent (lifted Outputs carry empty strings for missing fields).
  return { host: c.host, port: c.port || 22, user: c.user || "root", privateKey: c.privateKey || undefined, hostPublicKey: c.hostPublicKey || undefined };
}

/** `user@host:port`, for messages and locks. */
export function connectionLabel(c: Connection): string {
  return `${c.user}@${c.host}:${c.port}`;
}
