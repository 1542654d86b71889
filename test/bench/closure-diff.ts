/**
 * (k) What the plan's closure diff costs a preview: Machine's Check on a 1,000-package system
 * with 100 packages changed, exact (both systems in the local store) and approximate (the new
 * one not built: read from its derivations), against `nix store diff-closures` for reference.
 */
import * as fs from "fs";
import * as path from "path";
import { run } from "../../provider/util/run";
import { closureCheck } from "../../provider/handlers/closure-changes";
import { STANDIN_NIXPKGS } from "../helpers/env";

const PACKAGES = 1000;
const CHANGED = 100;

/** A system of PACKAGES versioned packages, the first CHANGED at `version`; built unless `build` is false. */
async function system(dir: string, version: string, build: boolean): Promise<{ outPath: string; drvPath: string }> {
  const f = path.join(dir, `k-${version}.nix`);
  fs.writeFileSync(f, `{ pkgs, ... }: {
  networking.hostName = "k";
  environment.systemPackages = builtins.genList (i: pkgs.mkPackage { pname = "pkg\${toString i}"; version = if i < ${CHANGED} then "${version}" else "1.0"; }) ${PACKAGES};
}
`);
  const drvPath = (await run(["nix-instantiate", `${STANDIN_NIXPKGS}/nixos`, "-A", "system", "--arg", "configuration", f])).stdout.trim();
  const outPath = (await run(["nix-store", "-q", "--outputs", drvPath])).stdout.trim();
  if (build) await run(["nix-store", "--realise", "--max-jobs", "8", drvPath], { timeoutMs: 1_800_000 });
  return { outPath, drvPath };
}

const secs = async <T>(fn: () => Promise<T>): Promise<[number, T]> => {
  const t0 = process.hrtime.bigint();
  const r = await fn();
  return [Number(process.hrtime.bigint() - t0) / 1e9, r];
};
const round = (n: number) => Math.round(n * 1000) / 1000;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Runs (k) and emits its line. */
export async function closureDiffScenario(tmp: string, emit: (o: Record<string, unknown>) => void): Promise<void> {
  const [v1, v2, v3] = await Promise.all([system(tmp, "1.0.0", true), system(tmp, "1.1", true), system(tmp, "1.2", false)]);
  const paths = (await run(["nix-store", "-qR", v1.outPath])).stdout.trim().split("\n").length;
  const olds = { name: "k", systemPath: v1.outPath, drvPath: v1.drvPath };
  const times = async (news: { systemPath: string; drvPath: string }) => {
    const ts: number[] = [];
    let lines: string[] = [];
    for (let i = 0; i < 5; i++) {
      const [t, r] = await secs(() => closureCheck(olds, { name: "k", ...news }, true));
      ts.push(t);
      lines = r.closureChanges ?? [];
    }
    return { s: median(ts), lines };
  };
  const exact = await times({ systemPath: v2.outPath, drvPath: v2.drvPath });
  const approx = await times({ systemPath: v3.outPath, drvPath: v3.drvPath });
  const [base] = await secs(() => run(["nix", "--extra-experimental-features", "nix-command", "store", "diff-closures", v1.outPath, v2.outPath]));
  emit({ scenario: "k-preview-closure-diff", exact_s: round(exact.s), approximate_s: round(approx.s), nix_diff_closures_s: round(base),
    paths, changed_packages: CHANGED, exact_lines: exact.lines.length, first_line: exact.lines[0], last_line: exact.lines[exact.lines.length - 1],
    approximate_first_line: approx.lines[0], target: "<= 0.5 s extra preview time" });
}
