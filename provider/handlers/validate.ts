/** Input validation shared by the resources' check handlers. */
import { ConnectionLike } from "../connection";
import * as fs from "fs";
import { sshConfigFile } from "../ssh/ssh-config";
import { agentSocket, defaultIdentityFiles } from "../ssh/auth";

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

/** Validates a connection input (and its bastions, `connection.proxy…`); unknown parts are skipped. */
export function validateConnection(c: Partial<ConnectionLike> | string | undefined, prop = "connection", inheritsKey = false): CheckFailure[] {
  if (isUnknown(c)) return [];
  if (!c || typeof c !== "object") return [{ property: prop, reason: `${prop} is required ({ host, port?, user?, privateKey?, hostPublicKey?, proxy? })` }];
  const f: CheckFailure[] = [];
  const bad = (field: string, reason: string) => f.push({ property: `${prop}.${field}`, reason: `${prop}.${field} ${reason}` });
  if (!isUnknown(c.host) && (typeof c.host !== "string" || !HOST.test(c.host))) bad("host", `must be a host name or address, got '${c.host ?? ""}'`);
  // 0 and "" are how a connection lifted from an Output says "not given".
  if (c.port !== undefined && c.port !== 0 && !isUnknown(c.port) && !(Number.isInteger(c.port) && c.port > 0 && c.port < 65536)) bad("port", `must be 1–65535, got '${c.port}'`);
  if (c.user !== undefined && c.user !== "" && !isUnknown(c.user) && !USER.test(String(c.user))) bad("user", `is not a valid user name: '${c.user}'`);
  // Never echo the value: it is a secret.
  if (c.privateKey && !isUnknown(c.privateKey) && !/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(String(c.privateKey))) bad("privateKey", "is not a PEM/OpenSSH private key");
  for (const k of ["hostPublicKey", "hostKey"] as const) {
    const v = c[k];
    if (v && !isUnknown(v) && !/^(ssh-|ecdsa-|sk-)\S+ [A-Za-z0-9+/=]+/.test(String(v).trim())) bad(k, `must look like 'ssh-ed25519 AAAA…', got '${String(v).slice(0, 40)}'`);
  }
  if (c.hostPublicKey && c.hostKey && !isUnknown(c.hostPublicKey) && !isUnknown(c.hostKey) && String(c.hostPublicKey).trim().split(/\s+/).slice(0, 2).join(" ") !== String(c.hostKey).trim().split(/\s+/).slice(0, 2).join(" ")) {
    bad("hostKey", "differs from hostPublicKey (they are one pin under two names: give one)");
  }
  if (c.dialErrorLimit !== undefined && !isUnknown(c.dialErrorLimit) && !(Number.isInteger(c.dialErrorLimit) && (c.dialErrorLimit >= 0 || c.dialErrorLimit === -1))) bad("dialErrorLimit", `must be a whole number of attempts (-1 = unlimited), got '${c.dialErrorLimit}'`);
  if (c.perDialTimeout !== undefined && !isUnknown(c.perDialTimeout) && !(typeof c.perDialTimeout === "number" && c.perDialTimeout >= 0)) bad("perDialTimeout", `must be a positive number of seconds, got '${c.perDialTimeout}'`);
  for (const k of ["privateKeyPassword", "password", "agentSocketPath"] as const) {
    if (c[k] !== undefined && !isUnknown(c[k]) && typeof c[k] !== "string") bad(k, "must be a string");
  }
  // An ssh config may name the key (IdentityFile), ~/.ssh may hold a default identity: then the
  // connect says what it tried, if nothing was accepted.
  // A bastion without a key of its own is tried with the target's (provider/ssh/ssh-config.ts).
  if (!inheritsKey && !c.privateKey && !c.password && !isUnknown(c.privateKey) && !isUnknown(c.password) && !c.agentSocketPath && !agentSocket({})
    && !hasSshConfig(c) && !defaultIdentityFiles().some((f) => fs.existsSync(f))) {
    bad("privateKey", "is not set and there is nothing else to authenticate with: no ssh-agent (agentSocketPath, SSH_AUTH_SOCK), no ~/.ssh/config, no ~/.ssh/id_* identity file, no password");
  }
  // "" is absent (fields lifted from another resource's connection Output).
  if (c.hostKeyPolicy !== undefined && !isUnknown(c.hostKeyPolicy) && !["strict", "tofu", ""].includes(String(c.hostKeyPolicy))) bad("hostKeyPolicy", `must be "strict" or "tofu", got '${c.hostKeyPolicy}'`);
  if (c.sshConfig !== undefined && !isUnknown(c.sshConfig) && typeof c.sshConfig !== "boolean" && typeof c.sshConfig !== "string") bad("sshConfig", "must be true, false or a file path");
  if (c.proxy && !isUnknown(c.proxy) && c.proxy.host) f.push(...validateConnection(c.proxy, `${prop}.proxy`, inheritsKey || !!c.privateKey));
  return f;
}

function hasSshConfig(c: Partial<ConnectionLike>): boolean {
  try { return !!sshConfigFile({ sshConfig: c.sshConfig as boolean | string | undefined }); } catch { return false; }
}
