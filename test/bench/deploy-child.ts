/**
 * Runs one Machine create in its own process and reports its peak RSS (VmHWM), for bench (e) and
 * the stalled-import test. argv: JSON of the Machine inputs (the private key is read from the path
 * in PNX_BENCH_KEY, never argv). Prints one JSON line: seconds, bytesCopied, peakRssMB, and on
 * failure `error` (exit 2).
 */
import * as fs from "fs";
import { create } from "../../provider/handlers/machine";
import { closeAllSessions } from "../../provider/ssh/pool";

const peakRssMB = () => Number(/VmHWM:\s+(\d+) kB/.exec(fs.readFileSync("/proc/self/status", "utf8"))?.[1]) / 1024;

async function main(): Promise<void> {
  const inputs = JSON.parse(process.argv[2]);
  inputs.connection.privateKey = fs.readFileSync(process.env.PNX_BENCH_KEY!, "utf8");
  const t0 = Date.now();
  try {
    const r = await create(inputs);
    const seconds = (Date.now() - t0) / 1000;
    await closeAllSessions();
    process.stdout.write(JSON.stringify({ seconds, bytesCopied: r.outs.bytesCopied, peakRssMB: peakRssMB() }) + "\n");
  } catch (e) {
    const seconds = (Date.now() - t0) / 1000;
    process.stdout.write(JSON.stringify({ seconds, error: (e as Error).message, peakRssMB: peakRssMB() }) + "\n");
    await closeAllSessions().catch(() => undefined);
    process.exitCode = 2;
  }
}
main().then(() => process.exit(process.exitCode ?? 0), (e) => { console.error(e); process.exit(1); });
