/**
 * The systems a stack's config plans, evaluated and built outside `pulumi up` (for the
 * `dry-activate` command): each machine of the stack config's network description, evaluated as
 * the stack program's Network and Machine evaluate it (provider/stack.ts, network/network.ts,
 * resources/machine.ts: paths from the project root or the network file's directory, the
 * machine's pin as `nixpkgs=`, `pulumi-nixos:nixPath` otherwise, keys' metadata), then built in
 * the local store. A NixOps network (`pulumi-nixos:networkNix`) is not read here.
 */
import * as fs from "fs";
import * as path from "path";
import YAML from "yaml";
import { stackConfigFile } from "../cli/stack-file";
import { NetworkDescription, machineSpec } from "../network/description";
import { evaluateSystem, SystemSource } from "../nix/evaluate";
import { fetchPin } from "../pins/pin";
import { realise } from "../nix/closure";
import { Logger } from "../util/log";
import { UsageError } from "../cli/usage";

/** A stack config's network description, with where its relative paths resolve from. */
export interface StackNetwork {
  net: NetworkDescription;
  /** Directory relative machine paths resolve from (the network file's, else the project root). */
  baseDir: string;
  /** The project root (directory of Pulumi.yaml). */
  root: string;
  /** The stack config (`pulumi-nixos:…` keys and values). */
  config: Record<string, unknown>;
  project: string;
}

/** Config values set as objects may also be JSON text (`pulumi config set … '{…}'`). */
const objectOf = <T>(v: unknown): T | undefined => (typeof v === "string" ? JSON.parse(v) : v) as T | undefined;

/** Reads Pulumi.<stack>.yaml of the project in `cwd` (as `targets --stack` does). */
export function readStackNetwork(o: { stack: string; cwd?: string }): StackNetwork {
  const { file, project } = stackConfigFile(o);
  if (!fs.existsSync(file)) throw new UsageError(`no stack config ${file}`);
  const config = (YAML.parse(fs.readFileSync(file, "utf8")) ?? {}).config ?? {};
  const root = path.resolve(o.cwd ?? ".");
  if (config["pulumi-nixos:networkNix"] !== undefined) {
    throw new UsageError(`stack ${o.stack} is a NixOps network (pulumi-nixos:networkNix): dry-activate reads network descriptions only; use previewDryActivate with pulumi preview`);
  }
  const nf = config["pulumi-nixos:networkFile"] as string | undefined;
  if (nf) {
    const f = path.resolve(root, nf);
    return { net: YAML.parse(fs.readFileSync(f, "utf8")), baseDir: path.dirname(f), root, config, project };
  }
  const net = objectOf<NetworkDescription>(config["pulumi-nixos:network"])
    ?? { machines: objectOf(config["pulumi-nixos:machines"]) ?? {}, pins: objectOf(config["pulumi-nixos:pins"]) };
  return { net, baseDir: root, root, config, project };
}

/** The evaluation source of one machine, as the Network gives it to its Machine. */
export async function plannedSource(sn: StackNetwork, name: string): Promise<SystemSource> {
  const m = machineSpec(sn.net, name);
  const abs = (p: string) => path.resolve(sn.baseDir, p);
  const pin = m.pin ? sn.net.pins?.[m.pin] : undefined;
  if (m.pin && !pin) throw new Error(`Machine ${name}: pin '${m.pin}' is not in the network's pins`);
  // stack.ts: nixPath entries relative to the project root, URLs as they are.
  let nixPath = (objectOf<string[]>(sn.config["pulumi-nixos:nixPath"]) ?? []).map((e) => {
    const i = e.indexOf("=");
    const v = i < 0 ? e : e.slice(i + 1);
    return /^[a-z]+:\/\//.test(v) ? e : `${i < 0 ? "" : e.slice(0, i + 1)}${path.resolve(sn.root, v)}`;
  });
  if (pin) nixPath = [`nixpkgs=${await fetchPin(`Machine ${name}: pin`, pin)}`];
  const allowUnpinned = sn.config["pulumi-nixos:allowUnpinned"] === true || sn.config["pulumi-nixos:allowUnpinned"] === "true";
  if (!m.flake && !nixPath.some((e) => e.startsWith("nixpkgs=")) && !allowUnpinned) {
    throw new Error(`Machine ${name}: not pinned: set pin (or a nixpkgs= entry in nixPath), or allowUnpinned: true to evaluate against the operator's NIX_PATH`);
  }
  const flake = m.flake ? (m.flake.startsWith(".") ? abs(m.flake.slice(0, m.flake.lastIndexOf("#"))) + m.flake.slice(m.flake.lastIndexOf("#")) : m.flake) : undefined;
  const keys = Object.fromEntries(Object.entries(m.keys ?? {}).map(([k, s]) => [k,
    { name: s.name ?? k, user: s.user ?? "root", group: s.group ?? "root", permissions: s.permissions ?? "0600", destDir: s.destDir ?? "/run/keys" }]));
  return { configuration: m.configuration ? abs(m.configuration) : undefined, imports: m.imports?.map(abs), flake, nixPath, keys };
}

/** Evaluates (one batch) and builds the planned systems of `names`: name → system store path. */
export async function plannedSystems(sn: StackNetwork, names: string[], log: Logger = () => undefined): Promise<Record<string, string>> {
  const unknown = names.filter((n) => !sn.net.machines?.[n]);
  if (unknown.length) throw new UsageError(`the stack config's network has no machine ${unknown.join(", ")} (it has: ${Object.keys(sn.net.machines ?? {}).join(", ")})`);
  const sources = await Promise.all(names.map((n) => plannedSource(sn, n)));
  const evaluated = await Promise.all(names.map((n, i) => evaluateSystem(n, sources[i])));
  const out: Record<string, string> = {};
  for (const [i, n] of names.entries()) {
    const built = await realise(evaluated[i].drvPath, log);
    if (built !== evaluated[i].outPath) throw new Error(`Machine ${n}: build produced ${built}, expected ${evaluated[i].outPath}`);
    out[n] = built;
  }
  return out;
}
