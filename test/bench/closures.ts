/** Builds benchmark closures with the stand-in nixpkgs (distinct seeds = distinct store paths). */
import * as fs from "fs";
import * as path from "path";
import { run } from "../../provider/util/run";
import { STANDIN_NIXPKGS } from "../helpers/env";

/** A built system: its toplevel, drv and config file. */
export interface BuiltSystem { outPath: string; drvPath: string; configFile: string }

/** Writes and builds a configuration with `paths` fillers of `sizeKB` each. */
export async function buildSystem(dir: string, name: string, opts: { paths: number; sizeKB: number; seed: string; random?: boolean | "half"; role?: string }): Promise<BuiltSystem> {
  const configFile = path.join(dir, `${name}.nix`);
  fs.writeFileSync(configFile, `{ ... }: {
  networking.hostName = "${name}";
  environment.etc."role".text = "${opts.role ?? name}\\n";
  test.closure = { paths = ${opts.paths}; sizeKB = ${opts.sizeKB}; seed = "${opts.seed}"; random = ${opts.random === "half" ? '"half"' : opts.random ? "true" : "false"}; };
}
`);
  const drvPath = (await run(["nix-instantiate", `${STANDIN_NIXPKGS}/nixos`, "-A", "system", "--arg", "configuration", configFile])).stdout.trim();
  // Builders are tiny shell scripts: build many at once.
  const outPath = (await run(["nix-store", "--realise", "--max-jobs", "8", drvPath])).stdout.trim();
  return { outPath, drvPath, configFile };
}

/** A 1 GiB closure of 40 paths, half random and half text (compressible). */
export function buildBigSystem(dir: string, name: string, seed: string): Promise<BuiltSystem> {
  return buildSystem(dir, name, { paths: 40, sizeKB: 26214, seed, random: "half" });
}
