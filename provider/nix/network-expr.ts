/**
 * The Nix expression of a NixOps network (provider/nix/nixops/eval-network.nix applied to the
 * network's files), shared by the program-time deployment-info evaluation and each machine's
 * system evaluation, so both see exactly the same modules.
 */
import * as path from "path";
import { packageRoot } from "../util/package-root";
import { nixPath, nixString } from "./nix-expr";

/** A NixOps network expression: what `nixops create` was given. */
export interface NixopsNetworkSource {
  /** Absolute paths of the network files (merged as `nixops create a.nix b.nix`). */
  files: string[];
  /** The network's arguments (`nixops set-args`): JSON values. */
  args?: Record<string, unknown>;
  /** Absolute path of nix-plugins' extra-builtins-file, if the network uses other extra builtins than `vault`. */
  extraBuiltinsFile?: string;
}

const EVAL_NETWORK = path.join(packageRoot, "provider", "nix", "nixops", "eval-network.nix");
const KEYS_MODULE = path.join(packageRoot, "provider", "nix", "keys.nix");

/** `import eval-network.nix { … }`: its `.info` is the deployment data, `.nodes.<name>` each machine. */
export function networkExpr(src: NixopsNetworkSource): string {
  const files = src.files.map((f) => nixPath(path.resolve(f))).join(" ");
  const args = src.args && Object.keys(src.args).length ? `args = builtins.fromJSON ${nixString(JSON.stringify(src.args))};` : "";
  const extra = src.extraBuiltinsFile ? `extraBuiltinsFile = ${nixPath(path.resolve(src.extraBuiltinsFile))};` : "";
  return `(import ${nixPath(EVAL_NETWORK)} { networkExprs = [ ${files} ]; keysModule = ${nixPath(KEYS_MODULE)}; ${args} ${extra} })`;
}

/** A machine's toplevel in the network. */
export function networkToplevelExpr(src: NixopsNetworkSource, machine: string): string {
  return `${networkExpr(src)}.nodes.${nixString(machine)}.config.system.build.toplevel`;
}
