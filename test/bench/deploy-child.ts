/**
 * Runs one Machine create in its own process and reports its peak RSS (VmHWM), for bench (e).
 * argv: JSON of the Machine inputs (the private key is read from the path in PNX_BENCH_KEY, never argv).
 */
import * as fs from "fs";
import { create } from "../../provider/handlers/machine";
import { closeAllSessions } from "../../provider/ssh/pool";

async function main(): Promise<void> {
  const inputs = JSON.parse(process.argv[2]);
  inputs.connection.privateKey = fs.readFileSync(process.env.PNX_BENCH_KEY!, "utf8");
  const t0 = Date.now();
  const r = await create(inputs);
  const seconds = (Date.now() - t0) / 1000;
  const hwm = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync("/proc/self/status", "utf8"))?.[1];
  await closeAllSessions();
  process.stdout.write(JSON.stringify({ seconds, bytesCopied: r.outs.bytesCopied, peakRssMB: Number(hwm) / 1024 }) + "\n");
}
main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
