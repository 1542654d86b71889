/** Input validation shared by the resources' check handlers. */
import { Connection } from "../connection";

/** One failed input, named by its property path (what the engine reports). */
export interface CheckFailure {
  property: string;
  reason: string;
}

/** The engine's marker for a value not known yet (preview). */
export const UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9";

export const isUnknown = (v: unknown): boolean => v === UNKNOWN;

const HOST = /^[A-Za-z0-9.:_%-]+$/;
const USER = /^[a-z_][a-z0-9_-]*\$?$/;

/** Validates a connection input; unknown parts are skipped. */
export function validateConnection(c: Partial<Connection> | string | undefined): CheckFailure[] {
  if (isUnknown(c)) return [];
  if (!c || typeof c !== "object") return [{ property: "connection", reason: "connection is required ({ host, port?, user?, privateKey?, hostPublicKey? })" }];
  const f: CheckFailure[] = [];
  if (!isUnknown(c.host) && (typeof c.host !== "string" || !HOST.test(c.host))) {
    f.push({ property: "connection.host", reason: `connection.host must be a host name or address, got '${c.host ?? ""}'` });
  }
  if (c.port !== undefined && !isUnknown(c.port) && !(Number.isInteger(c.port) && c.port > 0 && c.port < 65536)) {
    f.push({ property: "connection.port", reason: `connection.port must be 1–65535, got '${c.port}'` });
  }
  if (c.user !== undefined && !isUnknown(c.user) && !USER.test(String(c.user))) {
    f.push({ property: "connection.user", reason: `connection.user is not a valid user name: '${c.user}'` });
  }
  if (c.privateKey && !isUnknown(c.privateKey) && !/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(String(c.privateKey))) {
    // Never echo the value: it is a secret.
    f.push({ property: "connection.privateKey", reason: "connection.privateKey is not a PEM/OpenSSH private key" });
  }
  if (c.hostPublicKey && !isUnknown(c.hostPublicKey) && !/^(ssh-|ecdsa-|sk-)\S+ [A-Za-z0-9+/=]+/.test(String(c.hostPublicKey).trim())) {
    f.push({ property: "connection.hostPublicKey", reason: `connection.hostPublicKey must look like 'ssh-ed25519 AAAA…', got '${String(c.hostPublicKey).slice(0, 40)}'` });
  }
  if (!c.privateKey && !process.env.SSH_AUTH_SOCK && !isUnknown(c.privateKey)) {
    f.push({ property: "connection.privateKey", reason: "no connection.privateKey and no ssh-agent (SSH_AUTH_SOCK) to authenticate with" });
  }
  return f;
}
