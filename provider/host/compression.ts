/**
 * Choosing compression per link: zstd only when it pays. A short probe measures the link
 * (1 MiB of incompressible bytes through the host's `cat`), a sample of the closure measures
 * zstd's ratio and speed here; compress when the effective rate with zstd beats the raw link.
 */
import { spawn } from "child_process";
import * as crypto from "crypto";
import { SshSession } from "../ssh/session";
import { ClosurePath } from "../nix/closure";
import { Logger, formatBytes } from "../util/log";

/** Below this many bytes to send, the probe costs more than compression could save. */
export const AUTO_COMPRESS_MIN_BYTES = 32 << 20;
const PROBE_BYTES = 1 << 20;
const SAMPLE_BYTES = 8 << 20;

/** What the probe found and decided. */
export interface CompressionChoice {
  compress: boolean;
  linkBytesPerSec: number;
  zstdBytesPerSec: number;
  ratio: number;
}

/** zstd -1 over a sample of the closure: compressed/raw ratio and raw bytes per second. */
async function sampleZstd(paths: ClosurePath[]): Promise<{ ratio: number; bytesPerSec: number }> {
  const largest = [...paths].sort((a, b) => b.narSize - a.narSize).slice(0, 4).map((p) => p.path);
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const dump = spawn("sh", ["-c", `for p in "$@"; do nix-store --dump "$p"; done | head -c ${SAMPLE_BYTES} | zstd -q -1 -T0 -c | wc -c`, "sh", ...largest], { stdio: ["ignore", "pipe", "ignore"] });
    let out = "";
    dump.stdout.on("data", (d: Buffer) => { out += d.toString(); });
    dump.on("error", reject);
    dump.on("close", () => {
      const secs = Number(process.hrtime.bigint() - t0) / 1e9;
      const sampled = Math.min(SAMPLE_BYTES, paths.reduce((n, p) => n + p.narSize, 0));
      const compressed = Number(out.trim());
      if (!compressed || !sampled) return reject(new Error("zstd sample failed"));
      resolve({ ratio: compressed / sampled, bytesPerSec: sampled / Math.max(secs, 1e-3) });
    });
  });
}

/** Decides whether to compress a copy of `missing` (total `bytes`) to this host, and logs why. */
export async function chooseCompression(s: SshSession, missing: ClosurePath[], bytes: number, log: Logger): Promise<CompressionChoice | undefined> {
  if (bytes < AUTO_COMPRESS_MIN_BYTES) return undefined;
  try {
    const hasZstd = await s.exec("command -v zstd >/dev/null && echo yes || echo no", { what: "zstd check" });
    if (hasZstd.stdout.trim() !== "yes") { log("compression: none (no zstd on the host)"); return undefined; }
    const t0 = process.hrtime.bigint();
    await s.exec("cat > /dev/null", { stdin: crypto.randomBytes(PROBE_BYTES), what: "link probe" });
    const linkBytesPerSec = PROBE_BYTES / (Number(process.hrtime.bigint() - t0) / 1e9);
    const z = await sampleZstd(missing);
    // With zstd the wire carries ratio × bytes; the compressor must also keep up.
    const effective = Math.min(z.bytesPerSec, linkBytesPerSec / z.ratio);
    const compress = effective > linkBytesPerSec * 1.2;
    log(`compression: ${compress ? "zstd" : "none"} (link ~${formatBytes(linkBytesPerSec)}/s, zstd -1 ${formatBytes(z.bytesPerSec)}/s at ratio ${z.ratio.toFixed(2)})`);
    return { compress, linkBytesPerSec, zstdBytesPerSec: z.bytesPerSec, ratio: z.ratio };
  } catch (e) {
    log(`compression: none (probe failed: ${(e as Error).message})`);
    return undefined;
  }
}
