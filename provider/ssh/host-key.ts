import { createHash } from "crypto";
/** SSH host-key pinning: compare the key a host presents with the pinned `type base64` line. */

/** The `type base64` form of a raw SSH public key blob (as ssh2 hands it to hostVerifier). */
export function formatHostKey(blob: Buffer): string {
  // The blob starts with a length-prefixed key type string.
  const len = blob.readUInt32BE(0);
  const type = blob.subarray(4, 4 + len).toString("ascii");
  return `${type} ${blob.toString("base64")}`;
}

/** Normalizes a known_hosts-style line (`[host] type base64 [comment]`) to `type base64`. */
export function normalizeHostKey(line: string): string {
  const parts = line.trim().split(/\s+/);
  const i = parts.findIndex((p) => /^(ssh-|ecdsa-|sk-)/.test(p));
  if (i < 0 || !parts[i + 1]) throw new Error(`not an SSH public key: '${line.slice(0, 60)}'`);
  return `${parts[i]} ${parts[i + 1]}`;
}

/** `SHA256:…` fingerprint of a `type base64` key, as `ssh-keygen -l` prints it. */
export function hostKeyFingerprint(key: string): string {
  const [type, b64] = normalizeHostKey(key).split(" ");
  return `SHA256:${createHash("sha256").update(Buffer.from(b64, "base64")).digest("base64").replace(/=+$/, "")} (${type})`;
}

/**
 * Thrown when a host presents a key other than the pinned one. `configured`: the pin is the
 * program's `connection.hostPublicKey` (it may never have matched: "does not match the pinned
 * key"); otherwise the key recorded at first contact ("changed").
 */
export class HostKeyMismatchError extends Error {
  constructor(readonly target: string, readonly expected: string, readonly actual: string, readonly configured = false, readonly field = "connection.hostPublicKey", remedy?: string) {
    const fps = `expected ${hostKeyFingerprint(expected)}, host presented ${hostKeyFingerprint(actual)}`;
    super(remedy ? `host key of ${target} changed since first contact: ${fps} (the key recorded then in ${field}). ` +
        `Refusing to connect (possible man-in-the-middle). ${remedy}`
      : configured
      ? `host key of ${target} does not match the pinned ${field}: ${fps}. ` +
        `Refusing to connect (possible man-in-the-middle). Check the host's key out of band (on its console: ` +
        `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub) and fix ${field} if the pin is wrong.`
      : `host key of ${target} changed since first contact: ${fps} (the key recorded then). ` +
        `Refusing to connect (possible man-in-the-middle). If the host was reinstalled, set ` +
        `${field} to the new key (check it out of band, e.g. on the console: ` +
        `cat /etc/ssh/ssh_host_ed25519_key.pub) and run up again.`);
  }
}
