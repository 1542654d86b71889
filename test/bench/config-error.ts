/**
 * (n) What a stack config mistake costs the operator: `preview` of the repo's stack program with a
 * misspelt key (`pulumi-nixos:netwrok`), whole run through the engine harness (engine, SDK
 * runner, program) until it has said so. Wall time and the peak RSS of the whole process tree
 * (GNU time's %M: wait4 reports the largest RSS of the child and its waited-for descendants).
 * Before the stack program checked its config itself: 28 s and 3.6 GB (the SDK's ConfigMissingError).
 */
import * as fs from "fs";
import * as path from "path";
import { run } from "../../provider/util/run";
import { ROOT } from "../helpers/env";

export async function configErrorScenario(tmp: string, emit: (o: Record<string, unknown>) => void): Promise<void> {
  const dir = path.join(tmp, "config-error");
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, "Pulumi.yaml"), `name: pulumi-nixos\nruntime: nodejs\nmain: ${path.join(ROOT, "stacks", "index.ts")}\n`);
  fs.writeFileSync(path.join(dir, "Pulumi.t.yaml"), `config:\n  pulumi-nixos:netwrok: {"machines":{"a":{"targetHost":"10.9.0.1","configuration":"./a.nix"}}}\n`);
  const runs: { wall: number; rssMB: number }[] = [];
  for (let i = 0; i < 3; i++) {
    const r = await run(["/usr/bin/time", "-f", "@@time %e %M", process.execPath, path.join(ROOT, "dist/test/engine/cli.js"), "preview", "--cwd", dir, "--stack", "t", "--state", path.join(dir, "s.json")], { allowFailure: true });
    const m = /@@time ([\d.]+) (\d+)/.exec(r.stderr);
    if (!m || !/did you mean 'network'/.test(r.stdout + r.stderr)) throw new Error(`config-error run did not end as expected:\n${r.stdout}\n${r.stderr}`);
    runs.push({ wall: Number(m[1]), rssMB: Number(m[2]) / 1024 });
  }
  const wall = runs.map((x) => x.wall).sort((a, b) => a - b)[1];
  const rss = Math.max(...runs.map((x) => x.rssMB));
  emit({ scenario: "n-config-error", wall_s: wall, peak_rss_mb: Math.round(rss), runs: runs.map((x) => x.wall), target: "<= 5 s, <= 300 MB" });
}
