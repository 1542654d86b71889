/**
 * Key files on a host. Content travels only on the SSH session's stdin into a small script that
 * creates the file under a restrictive umask, sets owner and mode *before* writing, writes,
 * syncs, and renames into place (an atomic replace, as colmena's uploader does).
 */
import * as crypto from "crypto";
import * as path from "path";
import { SshSession, shq } from "../ssh/session";
import { KeyFileSpec } from "../keys/spec";
import { ownerName, resourceOwner } from "./owner";

/** sha256 of key content (stored only as a Pulumi secret). */
export const contentDigest = (content: string): string => crypto.createHash("sha256").update(content, "utf8").digest("hex");

/**
 * Who wrote a key file last: `/run/pulumi-nixos/keys/<sha256 of its path>` holds the writer's
 * `<stack>::<resource>`. A delete removes the file only when it is still its own (and unchanged):
 * a rename or a move into a Network without `aliases` creates the new resource, which writes the
 * same file, before the old one is deleted. A tmpfs like /run/keys: both go at a reboot.
 */
export const KEY_OWNERS = "/run/pulumi-nixos/keys";

/** The owner record's path for a key file (computed on the host: no quoting of paths in names). */
const ownerFile = (dest: string) => `${KEY_OWNERS}/$(printf %s ${shq(dest)} | sha256sum | cut -c1-32)`;

/**
 * The owner a key resource records: its URN (stack, project, parents, type and name: a rename or
 * a move changes it), else `<stack>::<resource>` for resources recorded before URNs reached handlers.
 */
export function keyOwner(inputs: { resource: string; __urn?: unknown }): string {
  return resourceOwner(inputs.resource, inputs);
}

/** What an upload printed when the key's user or group does not exist (yet) on the host. */
const OWNER_PENDING = "owner-pending";

/**
 * The file every upload touches: NixOps's send_keys touched it after its uploads
 * (nixops/backends/__init__.py), and keys.nix's pulumi-nixos-keys.service, ordered before
 * keys.target, waits for it (NixOps's nix/keys.nix `nixops-keys`). A ramfs: gone at a reboot.
 */
export const KEYS_DONE = "/run/keys/done";

/**
 * The upload script; content arrives on stdin. `owner`: recorded as the file's writer. A user or
 * group the host does not have yet (one the same deploy creates) gets a root-owned 0600 file;
 * keys.nix's activation script hands it over (chown, chmod) once the users exist, as NixOps's
 * `nixops-keys` activation script and colmena's key uploader do.
 */
export function uploadScript(k: KeyFileSpec, owner?: string): string {
  const dest = path.posix.join(k.destDir, k.name);
  return [
    "set -eu",
    `owner=${shq(`${k.user}:${k.group}`)}`,
    `getent passwd ${shq(k.user)} >/dev/null && getent group ${shq(k.group)} >/dev/null || owner=`,
    k.destDir === "/run/keys"
      // NixOS (and NixOps) keep keys in /run/keys: 0750 root:keys, readable by members of `keys`.
      ? "mkdir -p /run/keys && chmod 0750 /run/keys && { getent group keys >/dev/null && chown root:keys /run/keys || true; }"
      // Another destDir, when absent, as NixOps's send_keys made it: 0750 root:keys.
      : `[ -d ${shq(k.destDir)} ] || { mkdir -m 0750 -p ${shq(k.destDir)} && { chown root:keys ${shq(k.destDir)} 2>/dev/null || true; }; }`,
    `tmp=$(umask 077 && mktemp ${shq(path.posix.join(k.destDir, `.${k.name}.XXXXXX`))})`,
    `trap 'rm -f "$tmp"' EXIT`,
    `if [ -n "$owner" ]; then chown "$owner" "$tmp" && chmod ${k.permissions} "$tmp"; else chown 0:0 "$tmp" && chmod 0600 "$tmp" && echo ${OWNER_PENDING}; fi`,
    `cat > "$tmp"`,
    `sync "$tmp" 2>/dev/null || sync`,
    `mv -f "$tmp" ${shq(dest)}`,
    "trap - EXIT",
    ...(owner ? [`mkdir -p -m 0700 ${KEY_OWNERS} && printf '%s\\n' ${shq(owner)} > ${ownerFile(dest)}`] : []),
    `{ [ -d /run/keys ] || { mkdir -m 0750 -p /run/keys && { chown root:keys /run/keys 2>/dev/null || true; }; }; } && touch ${KEYS_DONE}`,
  ].join("\n");
}

/** What an upload did: `ownerPending` when the file waits, root-owned 0600, for its user or group. */
export interface KeyUpload { ownerPending: boolean }

/** Writes one key file. */
export async function uploadKey(s: SshSession, k: KeyFileSpec, content: string, owner?: string): Promise<KeyUpload> {
  const r = await s.exec(uploadScript(k, owner), { stdin: content, privileged: true, check: false, what: `upload of key ${k.name}` });
  if (r.code !== 0) throw new Error(`upload of key ${k.name} to ${s.label} failed (exit ${r.code}): ${r.stderr.trim()}`);
  return { ownerPending: r.stdout.split("\n").includes(OWNER_PENDING) };
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

/** What a delete found: removed, already absent, or left in place (and why). */
export type KeyRemoval = { removed: true } | { removed: false; absent: true } | { removed: false; absent: false; why: string };

/**
 * Removes a key file if it is still the one `owner` wrote (`digest`): left in place, saying why,
 * when another resource wrote it since (a rename's new resource) or its content changed by hand.
 * Without an owner record (written before records existed) the digest alone decides.
 */
export async function removeKey(s: SshSession, k: Pick<KeyFileSpec, "destDir" | "name">, owner?: string, digest?: string): Promise<KeyRemoval> {
  const dest = shq(path.posix.join(k.destDir, k.name));
  const own = ownerFile(path.posix.join(k.destDir, k.name));
  const r = await s.exec([
    `own=${own}`,
    `if [ ! -e ${dest} ]; then rm -f "$own"; echo absent; exit 0; fi`,
    `o=$(cat "$own" 2>/dev/null || true)`,
    ...(owner ? [`if [ -n "$o" ] && [ "$o" != ${shq(owner)} ]; then echo "other=$o"; exit 0; fi`] : []),
    ...(digest ? [`if [ "$(sha256sum < ${dest} | cut -d' ' -f1)" != ${shq(digest)} ]; then echo changed; exit 0; fi`] : []),
    `rm -f ${dest} "$own"; echo removed`,
  ].join("\n"), { privileged: true, what: `removing key ${k.name}` });
  const out = r.stdout.trim();
  if (out === "removed") return { removed: true };
  if (out === "absent") return { removed: false, absent: true };
  if (out.startsWith("other=")) return { removed: false, absent: false, why: `it was written since by ${ownerName(out.slice(6))} (a rename or move without aliases?)` };
  return { removed: false, absent: false, why: "its content changed since this resource wrote it (replaced by hand?)" };
}
