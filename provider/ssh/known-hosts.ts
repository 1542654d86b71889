/**
 * The operator's known_hosts, read as OpenSSH reads it: plain and hashed (`|1|salt|hmac`) host
 * patterns, wildcards, negations, `[host]:port` for other ports, `@revoked` keys.
 * (`@cert-authority` lines are skipped: host certificates are not supported.)
 */
import * as crypto from "crypto";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { hostKeyFingerprint, normalizeHostKey } from "./host-key";

/** What the files say about one host. */
export interface KnownHost {
  /** Keys listed for the host (`type base64`), with where each was found. */
  keys: { key: string; where: string }[];
  /** Keys marked @revoked for the host. */
  revoked: string[];
}

/** ~/.ssh/known_hosts and ~/.ssh/known_hosts2 of the current HOME (OpenSSH's UserKnownHostsFile default). */
export function defaultKnownHostsFiles(): string[] {
  const home = process.env.HOME || os.homedir();
  return [path.join(home, ".ssh/known_hosts"), path.join(home, ".ssh/known_hosts2")];
}

function patternMatches(pattern: string, name: string): boolean {
  if (pattern.startsWith("|1|")) {
    const [, , salt, hash] = pattern.split("|");
    if (!salt || !hash) return false;
    return crypto.createHmac("sha1", Buffer.from(salt, "base64")).update(name).digest("base64") === hash;
  }
  if (!/[*?]/.test(pattern)) return pattern.toLowerCase() === name.toLowerCase();
  const re = new RegExp(`^${pattern.replace(/[.+^${}()|\\[\]]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".")}$`, "i");
  return re.test(name);
}

/** Whether a comma-separated host field names `name` (a negated pattern that matches excludes it). */
export function hostFieldMatches(field: string, name: string): boolean {
  let hit = false;
  for (const p of field.split(",")) {
    if (p.startsWith("!")) { if (patternMatches(p.slice(1), name)) return false; }
    else if (patternMatches(p, name)) hit = true;
  }
  return hit;
}

/** The entries for host:port (`[host]:port` unless 22) in the given files (missing files are skipped). */
export function lookupKnownHost(host: string, port: number, files = defaultKnownHostsFiles()): KnownHost {
  const name = port === 22 ? host : `[${host}]:${port}`;
  const out: KnownHost = { keys: [], revoked: [] };
  for (const file of files) {
    let text: string;
    try { text = fs.readFileSync(file, "utf8"); } catch { continue; }
    text.split("\n").forEach((raw, i) => {
      const words = raw.trim().split(/\s+/);
      if (!words[0] || words[0].startsWith("#")) return;
      const marker = words[0].startsWith("@") ? words.shift() : undefined;
      const [hosts, type, b64] = words;
      if (!hosts || !type || !b64 || marker === "@cert-authority" || !hostFieldMatches(hosts, name)) return;
      let key: string;
      try { key = normalizeHostKey(`${type} ${b64}`); } catch { return; }
      if (marker === "@revoked") out.revoked.push(key);
      else if (!marker) out.keys.push({ key, where: `${file}:${i + 1}` });
    });
  }
  return out;
}

/** How a host key is checked when no key is pinned for the hop. */
export type HostKeyPolicy = "strict" | "tofu";

/** Thrown when a host's key is not the one known_hosts lists, is revoked, or (strict) is not listed. */
export class KnownHostsError extends Error {}

/**
 * Checks a presented key against known_hosts: listed → must be one of the listed keys; revoked →
 * refused; not listed → accepted under `tofu` (the caller records it), refused under `strict`.
 */
export function checkKnownHost(target: string, host: string, port: number, presented: string, policy: HostKeyPolicy, files = defaultKnownHostsFiles()): void {
  const k = lookupKnownHost(host, port, files);
  const fp = hostKeyFingerprint(presented);
  if (k.revoked.includes(presented)) {
    throw new KnownHostsError(`host key of ${target} (${fp}) is marked @revoked in known_hosts: refusing to connect`);
  }
  if (k.keys.length) {
    if (k.keys.some((x) => x.key === presented)) return;
    throw new KnownHostsError(`host key of ${target} does not match known_hosts: it lists ${k.keys.map((x) => `${hostKeyFingerprint(x.key)} (${x.where})`).join(", ")}, ` +
      `the host presented ${fp}. Refusing to connect (possible man-in-the-middle). If the host was reinstalled, check its key out of band ` +
      `and fix the known_hosts line (ssh-keygen -R ${port === 22 ? host : `'[${host}]:${port}'`}), or pin it as connection.hostKey.`);
  }
  if (policy === "strict") {
    throw new KnownHostsError(`host key of ${target} (${fp}) is not in known_hosts (${files.join(", ")}) and hostKeyPolicy is strict: ` +
      `refusing to connect. Add the host's key (checked out of band) to known_hosts or pin it as connection.hostKey.`);
  }
}
