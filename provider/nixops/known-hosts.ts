/**
 * Host keys from an OpenSSH known_hosts file (where NixOps's SSH kept them): plain and hashed
 * (`|1|salt|hmac`) host patterns, `[host]:port` for other ports; markers (@revoked,
 * @cert-authority) and negated patterns are skipped.
 */
import * as crypto from "crypto";
import * as fs from "fs";

/** Key types in order of preference (the first one found wins). */
const PREFERENCE = ["ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa"];

function hostMatches(pattern: string, name: string): boolean {
  if (pattern.startsWith("|1|")) {
    const [, , salt, hash] = pattern.split("|");
    if (!salt || !hash) return false;
    return crypto.createHmac("sha1", Buffer.from(salt, "base64")).update(name).digest("base64") === hash;
  }
  if (pattern.startsWith("!")) return false;
  if (!/[*?]/.test(pattern)) return pattern.toLowerCase() === name.toLowerCase();
  const re = new RegExp(`^${pattern.replace(/[.+^${}()|\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".")}$`, "i");
  return re.test(name);
}

/** The host's key as `type base64` (ed25519 first), or undefined when the file has none. */
export function knownHostKey(file: string, host: string, port = 22): string | undefined {
  if (!fs.existsSync(file)) return undefined;
  const name = port === 22 ? host : `[${host}]:${port}`;
  const found: string[] = [];
  for (const raw of fs.readFileSync(file, "utf8").split("\n")) {
    const line = raw.trim();
    if (!line || line.startsWith("#") || line.startsWith("@")) continue;
    const [hosts, type, key] = line.split(/\s+/);
    if (!hosts || !type || !key) continue;
    if (hosts.split(",").some((p) => hostMatches(p, name))) found.push(`${type} ${key}`);
  }
  return found.sort((a, b) => rank(a) - rank(b))[0];
}

function rank(k: string): number {
  const i = PREFERENCE.indexOf(k.split(" ")[0]);
  return i < 0 ? PREFERENCE.length : i;
}
