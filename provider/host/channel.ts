/**
 * A host's nix channel (root's): set to a pinned URL and verified against the pin, read back for
 * drift, restored on delete. One remote script per operation.
 */
import { parseKeyValues } from "../util/key-values";
import { ownerName } from "./owner";
import { SshSession, shq } from "../ssh/session";
import { tarballUrl } from "../pins/pin";
import { describeTimeout, timeoutMs } from "../util/timeouts";

/**
 * A host-side command under the fetch deadline: coreutils `timeout` signals the command's whole
 * process group (TERM, KILL 5 s later) and exits 124; our own deadline is a little longer.
 */
function fetchCommand(cmd: string): { script: string; timeoutMs: number } {
  const secs = Math.ceil(timeoutMs("fetch") / 1000);
  return { script: `timeout -k 5 ${secs} ${cmd}`, timeoutMs: (secs + 15) * 1000 };
}

/** What a host's channel is now. */
export interface ChannelState {
  /** URL of the channel ("" when the host has no such channel). */
  url: string;
  /** Store path of the unpacked channel tree ("" when none). */
  storePath: string;
  /** Hash of the unpacked tree (nix base-32 sha256), "" when none. */
  sha256: string;
  /** nixpkgs version (`.version` or `lib/.version`). */
  version: string;
  /** The ChannelPin that set it last, per its owner record ({@link PIN_OWNERS}); absent: none. */
  owner?: { owner: string; url: string; previous: string };
}

/**
 * Who pinned a channel last: `/var/lib/pulumi-nixos/channels/<name>` holds `owner=<the pin's URN>`,
 * the URL it set and the URL before the first pin of the chain. A pin that takes a channel over
 * from another pin with the same URL (a rename or a move without aliases) inherits that first URL;
 * a delete restores it only while the channel is still its own, at its URL.
 */
export const PIN_OWNERS = "/var/lib/pulumi-nixos/channels";

const CHANNELS = "/nix/var/nix/profiles/per-user/root/channels";

/** Reads channel `name` of root. */
export async function readChannel(s: SshSession, name: string): Promise<ChannelState> {
  const r = await s.exec([
    `url=$(nix-channel --list | awk -v n=${shq(name)} '$1 == n { print $2 }')`,
    `p=$(test -e ${CHANNELS}/${name} && readlink -f ${CHANNELS}/${name})`,
    `echo "url=$url"; echo "path=$p"`,
    `if [ -n "$p" ]; then echo "hash=$(nix-hash --type sha256 --base32 "$p")"; echo "version=$(cat "$p/.version" 2>/dev/null || cat "$p/lib/.version" 2>/dev/null)"; fi`,
    `if [ -f ${PIN_OWNERS}/${shq(name)} ]; then sed 's/^/pin/' ${PIN_OWNERS}/${shq(name)}; fi`,
  ].join("\n"), { privileged: true, what: `reading channel ${name}` });
  const f = parseKeyValues(r.stdout);
  const owner = f.pinowner ? { owner: f.pinowner, url: f.pinurl ?? "", previous: f.pinprevious ?? "" } : undefined;
  return { url: f.url ?? "", storePath: f.path ?? "", sha256: f.hash ?? "", version: f.version ?? "", ...(owner ? { owner } : {}) };
}

/**
 * Verifies the URL's content on the host *before* changing anything, then points the channel at
 * it and updates. Throws on a hash mismatch (naming both hashes) or an unreachable URL.
 */
export async function setChannel(s: SshSession, name: string, url: string, sha256: string, record?: { owner: string; previous: string }): Promise<void> {
  const fetch = fetchCommand(`nix-prefetch-url --unpack --name source ${shq(tarballUrl(url))}`);
  const r = await s.exec(fetch.script, { privileged: true, check: false, what: "channel fetch", timeoutMs: fetch.timeoutMs });
  if (r.code === 124) throw new Error(`${s.label} cannot fetch ${tarballUrl(url)}: no complete answer within ${describeTimeout("fetch")}; the host's channel was not changed`);
  const got = r.stdout.trim().split("\n").pop() ?? "";
  if (r.code !== 0 || !/^[0-9a-z]{52}$/.test(got)) {
    const err = r.stderr.split("\n").map((l) => l.trim()).find((l) => l.startsWith("error:")) ?? r.stderr.trim().split("\n")[0];
    throw new Error(`${s.label} cannot fetch ${tarballUrl(url)}: ${err.replace(/^error: /, "")}`);
  }
  if (got !== sha256) throw new Error(`channel ${name} on ${s.label}: sha256 mismatch for ${url}: expected ${sha256}, got ${got}; the host's channel was not changed`);
  const update = fetchCommand(`nix-channel --update ${shq(name)}`);
  const own = record ? ` && mkdir -p ${PIN_OWNERS} && printf 'owner=%s\\nurl=%s\\nprevious=%s\\n' ${shq(record.owner)} ${shq(url)} ${shq(record.previous)} > ${PIN_OWNERS}/${shq(name)}` : "";
  await s.exec(`nix-channel --add ${shq(url)} ${shq(name)} && ${update.script}${own}`, { privileged: true, what: `nix-channel --update ${name}`, timeoutMs: update.timeoutMs });
}

/** What a pin's delete did: restored (to `url`, "" = removed), or left the channel alone (why). */
export type ChannelRelease = { restored: true } | { restored: false; why: string };

/**
 * A pin's delete: the channel goes back to `previous` only while it is still `owner`'s, at `url`;
 * a channel another pin took over since (a rename's new resource), or one changed by hand, is left alone.
 */
export async function releaseChannel(s: SshSession, name: string, owner: string, url: string, previous: string): Promise<ChannelRelease> {
  const restore = previous
    ? `nix-channel --add ${shq(previous)} ${shq(name)} && nix-channel --update ${shq(name)}`
    : `{ nix-channel --remove ${shq(name)} >/dev/null 2>&1 || true; }`;
  const r = await s.exec([
    `f=${PIN_OWNERS}/${shq(name)}`,
    `o=$(sed -n 's/^owner=//p' "$f" 2>/dev/null)`,
    `if [ -n "$o" ] && [ "$o" != ${shq(owner)} ]; then echo "other=$o"; exit 0; fi`,
    // Ours: at the URL our record says we set (a refresh may have recorded a drifted one in state).
    `mine=$(sed -n 's/^url=//p' "$f" 2>/dev/null); [ -n "$mine" ] || mine=${shq(url)}`,
    `cur=$(nix-channel --list | awk -v n=${shq(name)} '$1 == n { print $2 }')`,
    `if [ "$cur" != "$mine" ]; then echo "changed=$cur"; exit 0; fi`,
    `${restore} && rm -f "$f" && echo restored`,
  ].join("\n"), { privileged: true, what: `restoring channel ${name}` });
  const out = r.stdout.trim().split("\n").pop() ?? "";
  if (out === "restored") return { restored: true };
  if (out.startsWith("other=")) return { restored: false, why: `it is pinned now by ${ownerName(out.slice(6))} (a rename or move without aliases?)` };
  return { restored: false, why: `it points at ${out.slice(8) || "nothing"} now, not at the URL this pin set (changed by hand?)` };
}

/** Points channel `name` back at `url` (and updates), or removes it when url is "". */
export async function restoreChannel(s: SshSession, name: string, url: string): Promise<void> {
  const script = url
    ? `nix-channel --add ${shq(url)} ${shq(name)} && nix-channel --update ${shq(name)}`
    : `nix-channel --remove ${shq(name)} >/dev/null 2>&1 || true`;
  await s.exec(script, { privileged: true, what: `restoring channel ${name}` });
}
