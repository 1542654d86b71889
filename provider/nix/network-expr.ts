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
  /** Arguments as Nix expressions (`nixops set-args --arg NAME EXPR`, as deployments.nixops stores them). */
  nixArgs?: Record<string, string>;
  /** Public keys added to root's authorized keys, by machine (what NixOps's `none` backend deployed with). */
  rootAuthorizedKeys?: Record<string, string[]>;
  /** Absolute path of nix-plugins' extra-builtins-file, if the network uses other extra builtins than `vault`. */
  extraBuiltinsFile?: string;
  /** The deployment's UUID, given to modules as `uuid` and `deployment.uuid` (NixOps: the state file's). */
  uuid?: string;
  /** The deployment's name, given to modules as `deploymentName` and `deployment.name`. */
  deploymentName?: string;
  /** The `system.stateVersion` NixOps recorded for each machine, applied with mkDefault as NixOps's physical spec did. */
  stateVersions?: Record<string, string>;
}

const EVAL_NETWORK = path.join(packageRoot, "provider", "nix", "nixops", "eval-network.nix");
const KEYS_MODULE = path.join(packageRoot, "provider", "nix", "keys.nix");

/**
 * `import eval-network.nix { … }`: its `.info` is the deployment data, `.nodes.<name>` each machine.
 * `machineArgs`: a Nix expression of module arguments by machine (the program's specialArgs),
 * given to those machines' modules beside NixOps's own (nodes, name, resources, …).
 */
export function networkExpr(src: NixopsNetworkSource, machineArgs?: string): string {
  const files = src.files.map((f) => nixPath(path.resolve(f))).join(" ");
  const nixArgs = Object.entries(src.nixArgs ?? {}).map(([k, v]) => `${nixString(k)} = (${v});`).join(" ");
  const args = Object.keys(src.args ?? {}).length || nixArgs ? `args = builtins.fromJSON ${nixString(JSON.stringify(src.args ?? {}))} // { ${nixArgs} };` : "";
  const keys = Object.keys(src.rootAuthorizedKeys ?? {}).length ? `rootAuthorizedKeys = builtins.fromJSON ${nixString(JSON.stringify(src.rootAuthorizedKeys))};` : "";
  const extra = src.extraBuiltinsFile ? `extraBuiltinsFile = ${nixPath(path.resolve(src.extraBuiltinsFile))};` : "";
  const deployment = [
    src.uuid !== undefined ? `uuid = ${nixString(src.uuid)};` : "",
    src.deploymentName !== undefined ? `deploymentName = ${nixString(src.deploymentName)};` : "",
    Object.keys(src.stateVersions ?? {}).length ? `stateVersions = builtins.fromJSON ${nixString(JSON.stringify(src.stateVersions))};` : "",
    machineArgs ? `machineArgs = ${machineArgs};` : "",
  ].join(" ");
  return `(import ${nixPath(EVAL_NETWORK)} { networkExprs = [ ${files} ]; keysModule = ${nixPath(KEYS_MODULE)}; ${args} ${keys} ${extra} ${deployment} })`;
}

/** A machine's toplevel in the network; `specialArgs`: a Nix expression of its own module arguments. */
export function networkToplevelExpr(src: NixopsNetworkSource, machine: string, specialArgs?: string): string {
  const machineArgs = specialArgs ? `{ ${nixString(machine)} = ${specialArgs}; }` : undefined;
  return `${networkExpr(src, machineArgs)}.nodes.${nixString(machine)}.config.system.build.toplevel`;
}
