/**
 * Environment every test shares: Nix must not wait on the public binary cache (no network here),
 * and the harness's state secrets need a passphrase.
 */
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { packageRoot } from "../../provider/util/package-root";
import { exportNixpkgsLib } from "../../provider/nix/nixpkgs-lib";

process.env.NIX_CONFIG = "substituters =\nexperimental-features = nix-command flakes";
// The stand-in nixpkgs runs on the real nixpkgs lib ($PULUMI_NIXOS_NIXPKGS_LIB, else
// <root>/../shared/nixpkgs-lib/lib, else NIX_PATH's): found once, or every test fails saying how to
// provide it; exported so that store copies of the stand-in (channel tarballs, flakes, clones and
// packed copies of the project) evaluate with it too.
exportNixpkgsLib();
process.env.PULUMI_CONFIG_PASSPHRASE ??= "pulumi-nixos-tests";
// The SDK's runner type-checks TypeScript programs (~5 s a run here); `npm run build` already
// type-checks stacks/ and examples/, so test runs transpile only, as the SDK allows. One test
// (engine-semantics) runs with the check on.
process.env.PULUMI_NODEJS_TRANSPILE_ONLY ??= "true";
// Tests never read the operator's ~/.ssh (config, known_hosts): an isolated HOME, npm's cache kept
// where it was (offline installs in the packaging tests use it).
if (!process.env.PULUMI_NIXOS_TEST_HOME) {
  const realHome = process.env.HOME || os.homedir();
  process.env.npm_config_cache ??= path.join(realHome, ".npm");
  process.env.PULUMI_NIXOS_TEST_HOME = fs.mkdtempSync(path.join(os.tmpdir(), "pnx-home-"));
  process.env.HOME = process.env.PULUMI_NIXOS_TEST_HOME;
  process.on("exit", () => fs.rmSync(process.env.PULUMI_NIXOS_TEST_HOME!, { recursive: true, force: true }));
}

/** The repo root. */
export const ROOT = packageRoot;
/** The stand-in nixpkgs. */
export const STANDIN_NIXPKGS = path.join(ROOT, "test/fixtures/nixpkgs");

/** A fresh temp dir outside the repo, removed by the returned cleanup. */
export function tempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `pnx-${prefix}-`));
}

/** Whether this process may build a lab (root on Linux). */
export const canRunLab = process.platform === "linux" && process.getuid?.() === 0;
