/**
 * Where a stack keeps its channel pins, so that `pin add/update` edit the form the stack uses
 * (a pin written to `pulumi-nixos:pins` is ignored by a stack that describes its network under
 * `pulumi-nixos:network`: the program then failed with "unknown pin").
 */
import * as fs from "fs";
import * as path from "path";
import YAML from "yaml";

/** A YAML file and the key path of the pins map in it. */
export interface PinLocation {
  file: string;
  keys: string[];
  /** For messages: `pulumi-nixos:network.pins in Pulumi.prod.yaml`. */
  label: string;
}

/**
 * The pins of the stack whose config is `stackFile`: `pulumi-nixos:network` → its `pins`;
 * `pulumi-nixos:networkFile` → `pins` in that file (relative to the project root, as the program
 * reads it); `pulumi-nixos:networkNix` given as an object → its `pins`; otherwise (the short form
 * `pulumi-nixos:machines`, a networkNix file list, or a new stack) `pulumi-nixos:pins`.
 */
export function pinLocation(stackFile: string, projectDir: string): PinLocation {
  const base = path.basename(stackFile);
  const doc = fs.existsSync(stackFile) ? YAML.parseDocument(fs.readFileSync(stackFile, "utf8")) : undefined;
  const cfg = (k: string) => doc?.getIn(["config", `pulumi-nixos:${k}`], true);
  const isMap = (n: unknown) => YAML.isMap(n);
  if (isMap(cfg("network"))) return { file: stackFile, keys: ["config", "pulumi-nixos:network", "pins"], label: `pulumi-nixos:network.pins in ${base}` };
  const nf = cfg("networkFile");
  if (nf !== undefined && cfg("network") === undefined) {
    const file = path.resolve(projectDir, String(YAML.isScalar(nf) ? nf.value : nf));
    if (!fs.existsSync(file)) throw new Error(`pulumi-nixos:networkFile ${file} does not exist`);
    return { file, keys: ["pins"], label: `pins in ${path.relative(process.cwd(), file) || file}` };
  }
  if (isMap(cfg("networkNix"))) return { file: stackFile, keys: ["config", "pulumi-nixos:networkNix", "pins"], label: `pulumi-nixos:networkNix.pins in ${base}` };
  return { file: stackFile, keys: ["config", "pulumi-nixos:pins"], label: `pulumi-nixos:pins in ${base}` };
}
