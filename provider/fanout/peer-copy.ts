/**
 * One host-to-host transfer on a site's LAN: the sender streams `nix-store --export` of exactly
 * the paths the receiver lacks to the receiver, whose sshd accepts the per-deploy key only for a
 * forced import into a scratch store. The deployer then checks every path there against its own
 * narHash, narSize and references; only if all match are they copied into the receiver's real
 * store. Credentials and scratch store are removed at the end, also on failure.
 *
 * Why a scratch store: `nix-store --import` registers each path under the hash of the bytes it
 * read (Nix libstore/export-import.cc, Store::importPaths hashes the NAR it received), so a
 * corrupted stream imported into the real store would be valid there, and a later deploy's
 * presence check would activate it. In the scratch store (`local?root=…`) a bad path is valid
 * only there; the promotion `nix copy --from local?root=…` re-hashes every NAR and refuses one
 * that differs from the (checked) narHash of the scratch database (LocalStore::addToStore:
 * "hash mismatch importing path"). The references the receiver already has are registered in the
 * scratch store without content (`--register-validity --hash-given`): the import needs them
 * valid there, and the promotion skips them because the real store has them.
 */
import { randomBytes } from "crypto";
import { ClosurePath } from "../nix/closure";
import { parsePathInfo } from "../nix/nix-json";
import { SshSession } from "../ssh/session";
import { newPeerKey } from "./peer-key";
import { sameNarHash } from "./nar-hash";

/** A word for sh, quoted. */
const shQuote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** Where a receiving host keeps a transfer's scratch store (on the store's disk, not in RAM). */
const SCRATCH = "/nix/var/pulumi-nixos/fanout";
/** Where a sending host keeps a transfer's private key (tmpfs, gone at reboot). */
const RUN_DIR = "/run/pulumi-nixos-fanout";
const NIX = "nix --extra-experimental-features nix-command";

/** One end of a transfer: the deployer's session to it and how the other end reaches it on the LAN. */
export interface PeerEnd {
  name: string;
  session: SshSession;
  /** Address and port the other hosts of the site reach this host's sshd at. */
  lanAddress: string;
  lanPort: number;
  /** Its SSH host key (`ssh-ed25519 AAAA…`), pinned by the sender. */
  hostPublicKey: string;
}

/** Why a peer's copy was not taken (the caller then fetches over the uplink). */
export class PeerCopyRefused extends Error {}

/** Copies `paths` (closure order) from `from` to `to`; every path checked before it is registered. */
export async function copyFromPeer(from: PeerEnd, to: PeerEnd, paths: ClosurePath[], timeoutMs: number): Promise<{ bytes: number }> {
  const id = randomBytes(8).toString("hex");
  const scratch = `${SCRATCH}/${id}`;
  const key = newPeerKey(`pulumi-nixos-fanout-${id}`);
  const sent = new Set(paths.map((p) => p.path));
  // References the receiver already has (they are not sent): valid in the scratch store, without content.
  const stubs = [...new Set(paths.flatMap((p) => p.references ?? []))].filter((r) => !sent.has(r));
  const stubInfo = stubs.map((r) => `${r}\n${"sha256:" + "0".repeat(64)}\n0\n\n0\n`).join("");
  const forced = `nix-store --store 'local?root=${scratch}' --import >/dev/null`;
  const authLine = `restrict,command="${forced}" ${key.publicLine}`;
  const dir = `${RUN_DIR}/${id}`;
  const cleanReceiver = `sed -i '/ pulumi-nixos-fanout-${id}$/d' /root/.ssh/authorized_keys 2>/dev/null; chmod -R u+w ${scratch} 2>/dev/null; rm -rf ${scratch}`;
  try {
    await to.session.exec([
      "set -e", "umask 077", `mkdir -p ${scratch}`,
      `${stubs.length ? `nix-store --store 'local?root=${scratch}' --register-validity --hash-given` : "cat >/dev/null"}`,
      "install -d -m 700 /root/.ssh", `printf '%s\\n' ${shQuote(authLine)} >> /root/.ssh/authorized_keys`,
    ].join("\n"), { stdin: stubInfo, privileged: true, what: `fan-out receive setup on ${to.name}`, timeoutMs: 60_000 });
    const known = `${to.lanPort === 22 ? to.lanAddress : `[${to.lanAddress}]:${to.lanPort}`} ${to.hostPublicKey}`;
    // The key is read from stdin into /run (mode 0600), never argv; the trap removes it however the send ends.
    const send = await from.session.exec([
      "umask 077", `mkdir -p ${dir}`, `trap 'rm -rf ${dir}' EXIT`, `cat > ${dir}/key`, `printf '%s\\n' ${shQuote(known)} > ${dir}/known_hosts`,
      "set -o pipefail",
      `nix-store --export ${paths.map((p) => shQuote(p.path)).join(" ")} | ssh -T -i ${dir}/key -o IdentitiesOnly=yes -o IdentityAgent=none -o UserKnownHostsFile=${dir}/known_hosts -o StrictHostKeyChecking=yes -o BatchMode=yes -o ConnectTimeout=10 -o ServerAliveInterval=5 -o ServerAliveCountMax=3 -p ${to.lanPort} root@${to.lanAddress}`,
    ].join("\n"), { stdin: key.privatePem, privileged: true, check: false, what: `fan-out send from ${from.name} to ${to.name}`, timeoutMs });
    if (send.code !== 0) throw new PeerCopyRefused(`${from.name} → ${to.name}: the send failed (exit ${send.code}): ${send.stderr.trim().split("\n").slice(-2).join(" | ")}`);
    // The receiver's scratch store, as its Nix sees it: every path checked against the deployer's record.
    const info = await to.session.exec(`${NIX} path-info --json --store 'local?root=${scratch}' ${paths.map((p) => shQuote(p.path)).join(" ")} 2>/dev/null || true`,
      { privileged: true, what: `fan-out check on ${to.name}`, timeoutMs: 120_000 });
    const got = new Map(parsePathInfo(info.stdout || "[]").map((i) => [i.path, i]));
    const bad = paths.filter((p) => {
      const g = got.get(p.path);
      return !g || g.narSize !== p.narSize || !sameNarHash(g.narHash, p.narHash)
        || [...(g.references ?? [])].sort().join(" ") !== [...(p.references ?? [])].sort().join(" ");
    });
    if (bad.length) {
      throw new PeerCopyRefused(`${from.name} → ${to.name}: ${bad.length} of ${paths.length} paths do not match the deployer's narHash/narSize/references (first: ${bad[0].path}${got.has(bad[0].path) ? "" : ", not received"}); refused`);
    }
    await to.session.exec(`${NIX} copy --no-check-sigs --from 'local?root=${scratch}' ${paths.map((p) => shQuote(p.path)).join(" ")}`,
      { privileged: true, what: `fan-out registration on ${to.name}`, timeoutMs });
    return { bytes: paths.reduce((n, p) => n + p.narSize, 0) };
  } finally {
    // The sender's trap misses a killed send: its key is removed from here too (a dead host's /run goes with its reboot).
    await Promise.all([
      to.session.exec(cleanReceiver, { privileged: true, check: false, what: `fan-out cleanup on ${to.name}`, timeoutMs: 60_000 }),
      from.session.exec(`rm -rf ${dir}`, { privileged: true, check: false, what: `fan-out cleanup on ${from.name}`, timeoutMs: 30_000 }),
    ].map((p) => p.catch(() => undefined)));
  }
}
