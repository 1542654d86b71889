/**
 * The copy step of a deploy: what the host lacks of a local closure, found with one query and
 * sent as one stream (compression chosen per link unless forced). `copyClosureTo` is the same
 * step on its own, nix-copy-closure's job: the closure is read while the connection is set up.
 */
import { Connection } from "../connection";
import { ClosurePath, closureOf } from "../nix/closure";
import { HostAccess, withHost } from "../ssh/pool";
import { SshSession } from "../ssh/session";
import { Logger, formatBytes, plural } from "../util/log";
import { chooseCompression } from "./compression";
import { FollowUp, copyToHost, missingOnHost } from "./copy";

/** Options of {@link pushClosure}. */
export interface PushOptions {
  /** true/false: always/never zstd; "auto" (default): measured per link. */
  compress?: boolean | "auto";
  /** Let the host fetch what it can from its own binary caches first. */
  substituteOnTarget?: boolean;
  /** What the host is already known to lack (skips the query). */
  missing?: string[];
  /** A script to run after the import in the same command (when anything is copied). */
  then?: FollowUp;
  log?: Logger;
}

/** What a push found and moved. */
export interface PushResult {
  /** The whole closure: paths and NAR bytes. */
  closureSize: { paths: number; bytes: number };
  /** Paths the host lacked (and got). */
  missing: number;
  /** Bytes sent on the wire. */
  bytesCopied: number;
  /** Whether `then` ran (it does not when nothing had to be copied). */
  followedUp: boolean;
}

export const sizeOf = (c: ClosurePath[]): { paths: number; bytes: number } => ({ bytes: c.reduce((n, p) => n + p.narSize, 0), paths: c.length });

/** Copies to the host what it lacks of `closure` (dependencies first). */
export async function pushClosure(s: SshSession, closure: ClosurePath[], opts: PushOptions = {}): Promise<PushResult> {
  const log = opts.log ?? (() => undefined);
  let missing = opts.missing ?? await missingOnHost(s, closure.map((p) => p.path));
  if (missing.length && opts.substituteOnTarget) {
    log(`asking the host to substitute ${plural(missing.length, "path")} from its binary caches`);
    await s.exec(`xargs -r nix-store --realise >/dev/null 2>&1 || true`, { stdin: missing.join("\n") + "\n", privileged: true, what: "substitution" });
    missing = await missingOnHost(s, missing);
  }
  const wanted = new Set(missing);
  log(`${plural(closure.length, "path")} in the closure (${formatBytes(sizeOf(closure).bytes)}), ${missing.length} missing on the host`);
  const toCopy = closure.filter((p) => wanted.has(p.path));
  const copied = await copyToHost(s, toCopy, { compress: await compressionFor(s, toCopy, opts.compress ?? "auto", log), log, then: opts.then });
  return { closureSize: sizeOf(closure), missing: toCopy.length, bytesCopied: copied.bytes, followedUp: toCopy.length > 0 && !!opts.then };
}

/** `compress`: true/false as given; "auto" decides per link by measurement. */
async function compressionFor(s: SshSession, paths: ClosurePath[], compress: boolean | "auto", log: Logger): Promise<boolean> {
  if (compress !== "auto") return compress;
  const choice = await chooseCompression(s, paths, sizeOf(paths).bytes, log);
  return choice?.compress ?? false;
}

/** Copies the closure of local store paths `roots` to a host (a pooled connection, pinned when `pin` is given). */
export async function copyClosureTo(conn: Connection, roots: string[], opts: PushOptions & HostAccess = {}): Promise<PushResult> {
  const closure = closureOf(roots);
  closure.catch(() => undefined);
  return withHost(conn, opts, async (s) => pushClosure(s, await closure, opts));
}
