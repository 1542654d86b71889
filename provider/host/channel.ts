/**
 * A host's nix channel (root's): set to a pinned URL and verified against the pin, read back for
 * drift, restored on delete. One remote script per operation.
 */
import { parseKeyValues } from "../util/key-values";
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
}

const CHANNELS = "/nix/var/nix/profiles/per-user/root/channels";

/** Reads channel `name` of root. */
export async function readChannel(s: SshSession, name: string): Promise<ChannelState> {
  const r = await s.exec([
    `url=$(nix-channel --list | awk -v n=${shq(name)} '$1 == n { print $2 }')`,
    `p=$(test -e ${CHANNELS}/${name} && readlink -f ${CHANNELS}/${name})`,
    `echo "url=$url"; echo "path=$p"`,
    `if [ -n "$p" ]; then echo "hash=$(nix-hash --type sha256 --base32 "$p")"; echo "version=$(cat "$p/.version" 2>/dev/null || cat "$p/lib/.version" 2>/dev/null)"; fi`,
  ].join("\n"), { privileged: true, what: `reading channel ${name}` });
  const f = parseKeyValues(r.stdout);
  return { url: f.url ?? "", storePath: f.path ?? "", sha256: f.hash ?? "", version: f.version ?? "" };
}

/**
 * Verifies the URL's content on the host *before* changing anything, then points the channel at
 * it and updates. Throws on a hash mismatch (naming both hashes) or an unreachable URL.
 */
export async function setChannel(s: SshSession, name: string, url: string, sha256: string): Promise<void> {
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
  await s.exec(`nix-channel --add ${shq(url)} ${shq(name)} && ${update.script}`, { privileged: true, what: `nix-channel --update ${name}`, timeoutMs: update.timeoutMs });
}

/** Points channel `name` back at `url` (and updates), or removes it when url is "". */
export async function restoreChannel(s: SshSession, name: string, url: string): Promise<void> {
  const script = url
    ? `nix-channel --add ${shq(url)} ${shq(name)} && nix-channel --update ${shq(name)}`
    : `nix-channel --remove ${shq(name)} >/dev/null 2>&1 || true`;
  await s.exec(script, { privileged: true, what: `restoring channel ${name}` });
}
