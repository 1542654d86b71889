import * as fs from "fs";
import { exportResources } from "../fleet/state";
import * as path from "path";
import YAML from "yaml";
import { stackConfigFile } from "./stack-file";
import { NetworkDescription } from "../network/description";
import { noMatch, UsageError } from "./usage";
import { ResourceTypeName, typeToken } from "../resources/type-tokens";

/** What to target: the stack (config, works on a fresh stack) or a state file, and the machine selection. */
export interface TargetsOptions {
  /** Stack name: URNs are formed from its network description (stack config). */
  stack?: string;
  /** Project directory for --stack (default "."). */
  cwd?: string;
  /** A stack export or the engine harness's state: URNs are the recorded ones. */
  state?: string;
  /** Name of the Network component (default: the description's `description`, else "network", as stacks/index.ts names it). */
  network?: string;
  /** false: leave out the ancestors (for `pulumi destroy`, which would delete a targeted parent too). */
  parents?: boolean;
  include?: string[];
  exclude?: string[];
  tag?: string[];
}

const NETWORK_TYPE = "pulumi-nixos:index:Network";
const childType = (t: ResourceTypeName) => `${NETWORK_TYPE}$${typeToken(t)}`;
// A URN printed unquoted inside $(...) must be one shell word with no glob or quote characters.
const SAFE_URN = /^urn:pulumi:[A-Za-z0-9_.:\/$@+=,-]+$/;

/**
 * URNs for `pulumi up --target` (what `nixops deploy --include NAME` touched): each selected machine
 * with its keys and channel pin, plus every ancestor (the Network component and the root Stack),
 * since the engine refuses to create a targeted resource whose parent is not targeted. For
 * `pulumi destroy`, `parents: false` leaves the ancestors out (they would be deleted too).
 */
export function targetsFor(o: TargetsOptions): string[] {
  const urns = o.state ? fromState(o) : fromConfig(o);
  for (const u of urns) {
    if (!SAFE_URN.test(u)) throw new Error(`resource URN '${u}' has a space or a shell character: it cannot be printed as an unquoted --target argument; rename the resource (machine or key name)`);
  }
  return urns;
}

/** `--target URN ...`, one shell word per argument (no quotes: they would stay literal inside $(...)). */
export function targetArgs(urns: string[]): string {
  return urns.map((u) => `--target ${u}`).join(" ");
}

function selected(name: string, tags: string[], o: TargetsOptions): boolean {
  return (!o.include?.length || o.include.includes(name)) && !o.exclude?.includes(name)
    && (!o.tag?.length || o.tag.some((t) => tags.includes(t)));
}

function checkNames(known: string[], o: TargetsOptions): void {
  const unknown = [...(o.include ?? []), ...(o.exclude ?? [])].filter((n) => !known.includes(n));
  if (unknown.length) throw new UsageError(`no machine named ${unknown.join(", ")} (machines: ${known.join(", ")})`);
}

/** From the stack config's network description: URNs as the engine forms them, also for a fresh stack. */
function fromConfig(o: TargetsOptions): string[] {
  if (!o.stack) throw new UsageError("which stack? give --stack NAME (its config) or --state FILE");
  const { file, project } = stackConfigFile(o);
  if (!fs.existsSync(file)) throw new Error(`no stack config ${file}`);
  const cfg = (YAML.parse(fs.readFileSync(file, "utf8")) ?? {}).config ?? {};
  let net: NetworkDescription = cfg["pulumi-nixos:network"] ?? { machines: cfg["pulumi-nixos:machines"] ?? {} };
  // The stack program resolves networkFile against the project root (the directory of Pulumi.yaml).
  if (cfg["pulumi-nixos:networkFile"]) net = YAML.parse(fs.readFileSync(path.resolve(o.cwd ?? ".", cfg["pulumi-nixos:networkFile"]), "utf8"));
  const prefix = `urn:pulumi:${o.stack}::${project}::`;
  const netName = o.network ?? net.description ?? "network";
  // As provider/network/network.ts names a Network's children: `<network>-<machine>[-<key>|-channel]`.
  const child = (t: ResourceTypeName, name: string) => `${prefix}${childType(t)}::${netName}-${name}`;
  const machines = net.machines ?? {};
  checkNames(Object.keys(machines), o);
  const out: string[] = [];
  for (const [name, m] of Object.entries(machines)) {
    if (!selected(name, m.tags ?? net.defaults?.tags ?? [], o)) continue;
    out.push(child("Machine", name));
    for (const k of Object.keys({ ...(net.defaults?.keys ?? {}), ...(m.keys ?? {}) })) out.push(child("DeploymentKey", `${name}-${k}`));
    if ((m.pin ?? net.defaults?.pin) && (m.channel ?? net.defaults?.channel) !== false) out.push(child("ChannelPin", `${name}-channel`));
  }
  if (!out.length) throw noMatch(o, Object.entries(machines).map(([name, m]) => ({ name, tags: m.tags ?? net.defaults?.tags ?? [] })));
  return [...(o.parents === false ? [] : [`${prefix}pulumi:pulumi:Stack::${project}-${o.stack}`, `${prefix}${NETWORK_TYPE}::${netName}`]), ...out];
}

/** From a state file: the recorded URNs of the selected machines, their keys and pins, and their ancestors. */
function fromState(o: TargetsOptions): string[] {
  const data = JSON.parse(fs.readFileSync(o.state!, "utf8"));
  const resources: { urn: string; parent?: string; inputs?: any; outputs?: any }[] = exportResources(data);
  const byUrn = new Map(resources.map((r) => [r.urn, r]));
  // Resources are told apart by their inputs, not their type or URN name, so a state written before
  // the typed tokens (`pulumi-nodejs:dynamic:Resource`, children named `m`, `m/k`) reads the same.
  const kindOf = (r: { inputs?: any; outputs?: any }) => r.outputs?.kind ?? r.inputs?.kind;
  const urnName = (urn: string) => urn.split("::").slice(3).join("::");
  // A machine's own name (its `name` input: a Network's `<network>-heron` is `heron`).
  const nameOf = (r: { urn: string; inputs?: any; outputs?: any }) => String(r.inputs?.name ?? r.outputs?.name ?? urnName(r.urn));
  // A key's or pin's label (`heron/<key>`, `heron/channel`, as a Network labels them).
  const labelOf = (r: { urn: string; inputs?: any; outputs?: any }) => String(r.inputs?.resource ?? r.outputs?.resource ?? urnName(r.urn));
  const machines = resources.filter((r) => kindOf(r) === "machine");
  checkNames(machines.map(nameOf), o);
  const picked = new Set<string>();
  for (const m of machines) {
    const name = nameOf(m);
    const tags = m.outputs?.tags ?? m.inputs?.tags;
    if (!selected(name, Array.isArray(tags) ? tags : [], o)) continue;
    picked.add(m.urn);
    // Keys (`heron/<key>`) and the channel pin (`heron/channel`) of this machine, in its network.
    for (const r of resources) {
      if (["deploymentKey", "channelPin"].includes(kindOf(r)) && r.parent === m.parent && labelOf(r).startsWith(`${name}/`)) picked.add(r.urn);
    }
  }
  if (!picked.size) throw noMatch(o, machines.map((m) => ({ name: nameOf(m), tags: (m.outputs?.tags ?? m.inputs?.tags) ?? [] })));
  const ancestors = new Set<string>();
  if (o.parents !== false) for (const u of picked) for (let p = byUrn.get(u)?.parent; p && !ancestors.has(p); p = byUrn.get(p)?.parent) ancestors.add(p);
  // Ancestors first (outermost first), then the resources in state order.
  const depth = (u: string) => { let d = 0; for (let p = byUrn.get(u)?.parent; p; p = byUrn.get(p)?.parent) d++; return d; };
  return [...[...ancestors].sort((a, b) => depth(a) - depth(b)), ...resources.map((r) => r.urn).filter((u) => picked.has(u))];
}
