/** How the resources' diffs and updates treat `connection`: shared by Machine, DeploymentKey and ChannelPin. */
import { Connection, normalizeConnection } from "../connection";

/**
 * Whether the connection changed in anything but a host key left empty after one was recorded at
 * first contact: port, user, private key or an explicit host key pin. (A host change replaces the
 * resource; callers check it separately.)
 */
export function connectionChanged(old: Connection | undefined, nu: Connection | undefined, recordedKey?: string): boolean {
  const n = (c: Connection | undefined) => {
    const x = normalizeConnection({ ...(c ?? { host: "" }) });
    return JSON.stringify([x.host, x.port, x.user, x.privateKey ?? "", x.hostPublicKey || recordedKey || ""]);
  };
  return n(old) !== n(nu);
}

/**
 * The connection to record in outputs after an update: the new one, with the host key pinned
 * (the new explicit pin, else the key recorded before). Later reads and deletes use it.
 */
export function recordedConnection(news: Connection, recordedKey: string | undefined): Connection {
  const c = normalizeConnection(news);
  return { ...c, hostPublicKey: c.hostPublicKey || recordedKey };
}
