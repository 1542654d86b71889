/**
 * Where the real nixpkgs `lib` is, for the stand-in nixpkgs (test/fixtures/nixpkgs) that the
 * tests, the lab's hosts, the demo and the benchmarks build with. The same order as the stand-in's
 * own lib/default.nix: `$PULUMI_NIXOS_NIXPKGS_LIB`, else `<project root>/../shared/nixpkgs-lib/lib`,
 * else `<nixpkgs/lib>` of a real nixpkgs on NIX_PATH. Copies of the stand-in in the store (channel
 * tarballs, flakes) see only the variable and NIX_PATH, so `exportNixpkgsLib` puts the path found
 * into this process's environment, for every Nix (and program) it starts.
 */
import * as fs from "fs";
import * as path from "path";
import { packageRoot } from "../util/package-root";

/** The environment variable naming a nixpkgs `lib` directory. */
export const NIXPKGS_LIB_VAR = "PULUMI_NIXOS_NIXPKGS_LIB";

const isLib = (p: string) => fs.existsSync(path.join(p, "modules.nix")) && fs.existsSync(path.join(p, "default.nix"));

/** NIX_PATH's candidates: `nixpkgs=P` → P/lib, a bare `P` → P/nixpkgs/lib (URLs are skipped). */
function nixPathCandidates(nixPath: string): string[] {
  return nixPath.split(":").filter(Boolean).flatMap((e) => {
    const i = e.indexOf("=");
    if (i < 0) return e.startsWith("/") ? [path.join(e, "nixpkgs", "lib")] : [];
    return e.slice(0, i) === "nixpkgs" && e.slice(i + 1).startsWith("/") ? [path.join(e.slice(i + 1), "lib")] : [];
  });
}

/**
 * The nixpkgs lib directory, or an error saying how to provide one.
 * @param env the environment to read (default: this process's)
 */
export function findNixpkgsLib(env: NodeJS.ProcessEnv = process.env): string {
  const given = env[NIXPKGS_LIB_VAR];
  if (given) {
    if (!isLib(given)) throw new Error(`${NIXPKGS_LIB_VAR}=${given} is not a nixpkgs lib directory (no modules.nix in it)`);
    return path.resolve(given);
  }
  const beside = path.resolve(packageRoot, "..", "shared", "nixpkgs-lib", "lib");
  const found = [beside, ...nixPathCandidates(env.NIX_PATH ?? "")].find(isLib);
  if (found) return found;
  throw new Error(`pulumi-nixos's stand-in nixpkgs needs the real nixpkgs lib and found none: set ${NIXPKGS_LIB_VAR} to a nixpkgs lib/ directory ` +
    `(e.g. a checkout of nix-community/nixpkgs.lib's lib/), put one at <project root>/../shared/nixpkgs-lib/lib (here: ${beside}), ` +
    "or put a real nixpkgs on NIX_PATH (nixpkgs=/path/to/nixpkgs)");
}

/** Finds the lib (or throws) and sets `$PULUMI_NIXOS_NIXPKGS_LIB` for this process and its children. */
export function exportNixpkgsLib(): string {
  const lib = findNixpkgsLib();
  process.env[NIXPKGS_LIB_VAR] = lib;
  return lib;
}
