/**
 * Copying a closure to a host: one query for the paths it lacks, then one `nix-store --export`
 * stream of exactly those into `nix-store --import`, over the host's one SSH connection.
 * No per-path round trip, no temp files, nothing buffered in memory.
 */
import { spawn } from "child_process";
import { Transform } from "stream";
import { SshSession } from "../ssh/session";
import { ClosurePath, exportPaths } from "../nix/closure";
import { Logger, formatBytes, plural } from "../util/log";
import { timeoutMs as defaultTimeout } from "../util/timeouts";

/** Buffering between the export and the SSH channel: small pipe buffers idle the link. */
const PIPE_BUFFER = 1 << 20;

/**
 * Prints which store paths listed on stdin (one per line) are not valid on the host. A path
 * absent from the disk cannot be valid, so only the ones present are asked of Nix: on an empty
 * host no nix-store runs at all (it costs ~0.1 s to start and open the database).
 * Globbing is off: store path names may contain `?`.
 */
export const PRINT_MISSING_PATHS = `set -f; list=$(cat)
{ for p in $list; do if [ -e "$p" ]; then echo "$p"; else echo "$p" >&3; fi; done | xargs -r nix-store --check-validity --print-invalid; } 3>&1`;

/** Store paths among `paths` that the host does not have. */
export async function missingOnHost(s: SshSession, paths: string[]): Promise<string[]> {
  if (!paths.length) return [];
  const r = await s.exec(PRINT_MISSING_PATHS, {
    stdin: paths.join("\n") + "\n", privileged: true, what: "store query",
  });
  const invalid = new Set(r.stdout.split("\n").filter(Boolean));
  return paths.filter((p) => invalid.has(p));
}

/** What a copy moved. */
export interface CopyResult {
  paths: number;
  /** Bytes sent on the SSH channel (the export stream, compressed when compression is on). */
  bytes: number;
}

/** A script to run right after a successful import, in the same remote command (saves a round trip). */
export interface FollowUp {
  script: string;
  what: string;
  /** Logged once the import is done and the follow-up starts. */
  announce?: string;
  timeoutMs: number;
  onLine(line: string): void;
}

/** Options of {@link copyToHost}. */
export interface CopyOptions {
  /** Compress the stream with zstd (both ends need zstd). */
  compress?: boolean;
  log?: Logger;
  timeoutMs?: number;
  /** Runs as root after the import succeeded; its exit code is its own (the import's is checked first). */
  then?: FollowUp;
}

/** Printed between the import and the follow-up: tells their output and failures apart. */
const IMPORTED = "@@pulumi-nixos-imported";

/** Streams `paths` (closure order: dependencies first) into the host's store. */
export async function copyToHost(s: SshSession, paths: ClosurePath[], opts: CopyOptions = {}): Promise<CopyResult> {
  if (!paths.length) return { paths: 0, bytes: 0 };
  const total = paths.reduce((n, p) => n + p.narSize, 0);
  const log = opts.log ?? (() => undefined);
  log(`copying ${plural(paths.length, "path")}, ${formatBytes(total)}${opts.compress ? " (zstd)" : ""}`);
  const exporter = exportPaths(paths.map((p) => p.path));
  let exportErr = "";
  exporter.stderr!.on("data", (d: Buffer) => { exportErr = (exportErr + d.toString()).slice(-16384); });
  const exited = new Promise<number | null>((r) => exporter.on("close", r));
  let raw = 0;
  let sent = 0;
  let lastReport = Date.now();
  const meter = new Transform({
    highWaterMark: PIPE_BUFFER,
    transform(chunk: Buffer, _enc, cb) {
      raw += chunk.length;
      if (Date.now() - lastReport > 1000) {
        lastReport = Date.now();
        log(`copying ${plural(paths.length, "path")}, ${formatBytes(total)} … ${Math.min(99, Math.floor((raw / Math.max(total, 1)) * 100))}%`);
      }
      cb(null, chunk);
    },
  });
  let source: NodeJS.ReadableStream = exporter.stdout!.pipe(meter);
  let zstd: ReturnType<typeof spawn> | undefined;
  if (opts.compress) {
    const z = zstd = spawn("zstd", ["-q", "-1", "-T0", "-c"], { stdio: ["pipe", "pipe", "ignore"] });
    source.pipe(z.stdin);
    source = z.stdout;
  }
  const counter = new Transform({ highWaterMark: PIPE_BUFFER, transform(chunk: Buffer, _e, cb) { sent += chunk.length; cb(null, chunk); } });
  const importCmd = opts.compress ? "zstd -q -d -c | nix-store --import >/dev/null" : "nix-store --import >/dev/null";
  const then = opts.then;
  const script = (opts.compress ? `set -o pipefail 2>/dev/null; ${importCmd}` : importCmd) + (then ? ` && echo ${IMPORTED} && {\n${then.script}\n}` : "");
  let imported = false;
  // A stall or a failure leaves no export behind, blocked on a pipe nobody reads.
  const stopLocal = () => { exporter.kill("SIGKILL"); zstd?.kill("SIGKILL"); };
  // The stream has a stall deadline; timeoutMs counts from its end (the import's tail, then `then`).
  const r = await s.execStream(script, source.pipe(counter), {
    privileged: true, check: false, what: "closure import", timeoutMs: (opts.timeoutMs ?? defaultTimeout("command")) + (then?.timeoutMs ?? 0), rttMs: await s.rttMs(),
    onLine: (line, stream) => {
      if (!imported && stream === "stdout" && line === IMPORTED) {
        imported = true;
        log(`copied ${plural(paths.length, "path")}, ${formatBytes(sent)} sent`);
        if (then?.announce) log(then.announce);
      } else if (imported) then?.onLine(line);
    },
  }).catch((e) => { stopLocal(); throw e; });
  const code = await exited;
  if (code !== 0) throw new Error(`nix-store --export failed (exit ${code}): ${exportErr.trim()}`);
  const lastErr = () => r.stderr.trim().split("\n").slice(-5).join(" | ");
  if (r.code !== 0 && !imported) throw new Error(`nix-store --import on ${s.label} failed (exit ${r.code}): ${lastErr()}`);
  if (r.code !== 0) throw new Error(`${then!.what} on ${s.label} failed (exit ${r.code}): ${lastErr()}`);
  if (!then) log(`copied ${plural(paths.length, "path")}, ${formatBytes(sent)} sent`);
  return { paths: paths.length, bytes: sent };
}
