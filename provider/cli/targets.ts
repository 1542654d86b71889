import * as fs from "fs";
import * as path from "path";
import YAML from "yaml";
import { stackConfigFile } from "./stack-file";
import { NetworkDescription } from "../network/description";

/**
 * URNs for `pulumi up --target` from the stack's network description: each selected machine with
 * its keys and channel pin (what `nixops deploy --include NAME` touched).
 */
export function targetsFor(o: { stack: string; cwd?: string; tag?: string[]; include?: string[] }): string[] {
  const { file, project } = stackConfigFile(o);
  const cfg = (YAML.parse(fs.readFileSync(file, "utf8")) ?? {}).config ?? {};
  let net: NetworkDescription = cfg["pulumi-nixos:network"] ?? { machines: cfg["pulumi-nixos:machines"] ?? {} };
  if (cfg["pulumi-nixos:networkFile"]) net = YAML.parse(fs.readFileSync(path.resolve(o.cwd ?? ".", cfg["pulumi-nixos:networkFile"]), "utf8"));
  const type = "pulumi-nixos:index:Network$pulumi-nodejs:dynamic:Resource";
  const urn = (name: string) => `urn:pulumi:${o.stack}::${project}::${type}::${name}`;
  const out: string[] = [];
  for (const [name, m] of Object.entries(net.machines ?? {})) {
    const tags = [...(net.defaults?.tags ?? []), ...(m.tags ?? [])];
    if (o.include?.length && !o.include.includes(name)) continue;
    if (o.tag?.length && !o.tag.some((t) => tags.includes(t))) continue;
    out.push(urn(name));
    for (const k of Object.keys({ ...(net.defaults?.keys ?? {}), ...(m.keys ?? {}) })) out.push(urn(`${name}/${k}`));
    if ((m.pin ?? net.defaults?.pin) && m.channel !== false) out.push(urn(`${name}/channel`));
  }
  if (!out.length) throw new Error("no machine matches");
  return out;
}
