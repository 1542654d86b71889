/**
 * `npm run example -- nixops-network|nixops-network-nix|flake|two-tier [--keep]`: an example deployed on lab
 * hosts (the seed's network — YAML, or its NixOps files unchanged — on 5 hosts with the test
 * Vault and a pinned channel; or machines from the test flake), then `pulumi-nixos info`; the lab
 * is torn down unless --keep.
 */
import "../helpers/env";
import * as fs from "fs";
import * as path from "path";
import { nixopsNetworkBed, nixopsNetworkNixBed, flakeBed, twoTierBed, Bed } from "./lab-bed";
import { engine } from "../helpers/engine";
import { run } from "../../provider/util/run";
import { ROOT, tempDir } from "../helpers/env";

async function main(): Promise<void> {
  const which = process.argv[2] ?? "nixops-network";
  const beds: Record<string, (tmp: string) => Promise<Bed>> = { "nixops-network": nixopsNetworkBed, "nixops-network-nix": nixopsNetworkNixBed, flake: flakeBed, "two-tier": twoTierBed };
  if (!beds[which]) throw new Error(`unknown example '${which}' (${Object.keys(beds).join(", ")})`);
  const keep = process.argv.includes("--keep");
  const tmp = tempDir("example");
  // The temp dir (program, sealed state, lab) goes with the run unless --keep, also on ^C.
  const cleanup = async () => { if (!keep) fs.rmSync(tmp, { recursive: true, force: true }); };
  let bed: Bed | undefined;
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    process.once(sig, () => { void (async () => { if (!keep) await bed?.stop().catch(() => undefined); await cleanup(); process.exit(130); })(); });
  }
  try {
    bed = await beds[which](tmp);
  } catch (e) {
    await cleanup();
    throw e;
  }
  try {
    const up = await engine("up", bed.stack);
    process.stdout.write(up.stdout + up.stderr);
    if (up.code !== 0) throw new Error("up failed");
    const info = await run([process.execPath, path.join(ROOT, "bin/pulumi-nixos.js"), "info", "--state", bed.stack.state], { allowFailure: true });
    process.stdout.write(info.stdout + info.stderr);
    if (keep) console.log(`kept: lab in ${tmp}/lab, program in ${bed.stack.cwd} (state ${bed.stack.state}); run 'pulumi-nixos lab down --dir ${tmp}/lab' when done`);
  } finally {
    if (!keep) await bed.stop();
    await cleanup();
  }
}
main().then(() => process.exit(0), (e) => { console.error(`example failed: ${e instanceof Error ? e.message : e}`); process.exit(1); });
