/**
 * Key files on a host. Content travels only on the SSH session's stdin into a small script that
 * creates the file under a restrictive umask, sets owner and mode *before* writing, writes,
 * syncs, and renames into place (an atomic replace, as colmena's uploader does).
 */
import * as crypto from "crypto";
import * as path from "path";
import { SshSession, shq } from "../ssh/session";
import { KeyFileSpec } from "../keys/spec";

/** sha256 of key content (stored only as a Pulumi secret). */
export const contentDigest = (content: string): string => crypto.createHash("sha256").update(content, "utf8").digest("hex");

const NOUSER = 3;

/** The upload script; content arrives on stdin. */
export function uploadScript(k: KeyFileSpec): string {
  const dest = path.posix.join(k.destDir, k.name);
  return [
    "set -eu",
    `getent passwd ${shq(k.user)} >/dev/null || { echo "user '${k.user}' does not exist on this host" >&2; exit ${NOUSER}; }`,
    `getent group ${shq(k.group)} >/dev/null || { echo "group '${k.group}' does not exist on this host" >&2; exit ${NOUSER}; }`,
    k.destDir === "/run/keys"
      // NixOS (and NixOps) keep keys in /run/keys: 0750 root:keys, readable by members of `keys`.
      ? "mkdir -p /run/keys && chmod 0750 /run/keys && { getent group keys >/dev/null && chown root:keys /run/keys || true; }"
      : `mkdir -p ${shq(k.destDir)}`,
    `tmp=$(umask 077 && mktemp ${shq(path.posix.join(k.destDir, `.${k.name}.XXXXXX`))})`,
    `trap 'rm -f "$tmp"' EXIT`,
    `chown ${shq(`${k.user}:${k.group}`)} "$tmp"`,
    `chmod ${k.permissions} "$tmp"`,
    `cat > "$tmp"`,
    `sync "$tmp" 2>/dev/null || sync`,
    `mv -f "$tmp" ${shq(dest)}`,
    "trap - EXIT",
  ].join("\n");
}

/** Writes one key file. */
export async function uploadKey(s: SshSession, k: KeyFileSpec, content: string): Promise<void> {
  const r = await s.exec(uploadScript(k), { stdin: content, privileged: true, check: false, what: `upload of key ${k.name}` });
  if (r.code === NOUSER) throw new Error(`key ${k.name} on ${s.label}: ${r.stderr.trim()}`);
  if (r.code !== 0) throw new Error(`upload of key ${k.name} to ${s.label} failed (exit ${r.code}): ${r.stderr.trim()}`);
}

/** What a key file on the host looks like now (absent: exists=false). */
export interface RemoteKeyState {
  exists: boolean;
  digest: string;
  user: string;
  group: string;
  permissions: string;
}

/** Reads a key file's digest, owner and mode (never its content). */
export async function inspectKey(s: SshSession, k: Pick<KeyFileSpec, "destDir" | "name">): Promise<RemoteKeyState> {
  const dest = shq(path.posix.join(k.destDir, k.name));
  const r = await s.exec(`if [ -f ${dest} ]; then stat -c '%U %G %a' ${dest} && sha256sum < ${dest} | cut -d' ' -f1; else echo absent; fi`,
    { privileged: true, what: `inspecting key ${k.name}` });
  const lines = r.stdout.trim().split("\n");
  if (lines[0] === "absent") return { exists: false, digest: "", user: "", group: "", permissions: "" };
  const [user, group, mode] = lines[0].split(" ");
  return { exists: true, digest: lines[1] ?? "", user, group, permissions: mode.padStart(4, "0") };
}

/** Removes a key file (missing is fine). */
export async function removeKey(s: SshSession, k: Pick<KeyFileSpec, "destDir" | "name">): Promise<void> {
  await s.exec(`rm -f ${shq(path.posix.join(k.destDir, k.name))}`, { privileged: true, what: `removing key ${k.name}` });
}
