/** How the resources' diffs and updates treat `connection`: shared by Machine, DeploymentKey and ChannelPin. */
import { Connection, hops, normalizeConnection, pinnedConnection, portOf, userOf, withRecordedProxyKeys } from "../connection";

/**
 * Whether the connection changed in anything but a host key left empty after one was recorded at
 * first contact: port, user, private key or an explicit host key pin. (A host change replaces the
 * resource; callers check it separately.)
 */
export function connectionChanged(old: Connection | undefined, nu: Connection | undefined, recordedKey?: string): boolean {
  const n = (c: Connection | undefined, inherit?: Connection) => {
    // Bastions' keys recorded at first contact count as the new ones' unless those pin their own.
    const x = withRecordedProxyKeys(normalizeConnection({ ...(c ?? { host: "" }) }), inherit);
    // Port and user by their effective values: states written before they could be left unset
    // (for the ssh config to fill) hold 22 and root, which must not read as a change.
    return JSON.stringify([x.host, portOf(x), userOf(x), x.privateKey ?? "", x.hostPublicKey || recordedKey || "",
      x.privateKeyPassword ?? "", x.password ?? "", x.agentSocketPath ?? "", x.dialErrorLimit ?? 0, x.perDialTimeout ?? 0,
      (x.privilegeEscalationCommand ?? []).join(" "),
      hops(x).slice(0, -1).map((h) => [h.host, portOf(h), userOf(h), h.privateKey ?? "", h.privateKeyPassword ?? "", h.password ?? "", h.agentSocketPath ?? "", h.dialErrorLimit ?? 0, h.perDialTimeout ?? 0, h.hostPublicKey ?? ""])]);
  };
  return n(old) !== n(nu, old ? normalizeConnection(old) : undefined);
}

/**
 * The connection to record in outputs after an update: the new one, with the host key pinned
 * (the new explicit pin, else the key recorded before). Later reads and deletes use it.
 */
export function recordedConnection(news: Connection, recordedKey: string | undefined, olds?: Connection): Connection {
  const c = withRecordedProxyKeys(normalizeConnection(news), olds && normalizeConnection(olds));
  return pinnedConnection(c, c.hostPublicKey || recordedKey);
}
