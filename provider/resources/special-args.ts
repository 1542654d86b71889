/**
 * A Machine's `specialArgs`: values of the Pulumi program handed to its NixOS modules as module
 * arguments (`{ config, pkgs, db, ... }:`). They cross into Nix as JSON and end up in the store
 * (in whatever the configuration writes), so they are refused when they are secrets, and when
 * their names would shadow an argument NixOS or NixOps gives every module.
 */
import * as pulumi from "@pulumi/pulumi";
import { SchemaError } from "../schema";

/** JSON values, possibly still Pulumi inputs (Outputs of other resources), by argument name. */
export type SpecialArgs = Record<string, pulumi.Input<unknown>>;

/**
 * Module arguments NixOS (lib.evalModules: config, lib, options; eval-config.nix: pkgs via
 * _module.args, modulesPath) and NixOps's network evaluation (nodes, name, resources, uuid,
 * deploymentName) give every module: an argument of that name would replace theirs.
 */
export const RESERVED_ARGS = ["config", "lib", "pkgs", "options", "modulesPath", "name", "nodes", "resources", "uuid", "deploymentName"];

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  !!v && typeof v === "object" && !Array.isArray(v) && Object.getPrototypeOf(v) === Object.prototype;

/** The problems of the argument names (and of values that are no JSON), `specialArgs.<name>: …`. */
export function nameProblems(args: Record<string, unknown>): string[] {
  const p: string[] = [];
  for (const k of Object.keys(args)) {
    if (RESERVED_ARGS.includes(k)) p.push(`specialArgs.${k}: shadows the module argument '${k}' that NixOS or NixOps gives every module (reserved: ${RESERVED_ARGS.join(", ")}); give it another name`);
    else if (!/^[A-Za-z_][A-Za-z0-9_'-]*$/.test(k)) p.push(`specialArgs.${JSON.stringify(k)}: not a Nix identifier (letters, digits, _, ' and -, not first a digit or -)`);
  }
  return p;
}

/** Throws the {@link SchemaError} of a Machine whose arguments' names (known now) are refused. */
export function checkSpecialArgNames(machine: string, args: unknown): void {
  if (!isPlainObject(args)) return;
  const p = nameProblems(args);
  if (p.length) throw new SchemaError(`invalid arguments of Machine ${machine}:\n  ${p.join("\n  ")}`);
}

/** The value of a known Output (only called where the value is known: inside an apply of it). */
const valueOf = (o: pulumi.Output<unknown>) => new Promise<unknown>((resolve) => { o.apply((v) => { resolve(v); return v; }); });

/** Paths (`specialArgs.db.password`) of every secret inside `v`, the program's own input (Outputs not unwrapped). */
export async function secretPaths(v: unknown, at = "specialArgs"): Promise<string[]> {
  if (pulumi.Output.isInstance(v)) {
    if (await pulumi.isSecret(v)) return [at];
    return secretPaths(await valueOf(v), at);
  }
  if (v instanceof Promise) return secretPaths(await v, at);
  if (Array.isArray(v)) return (await Promise.all(v.map((x, i) => secretPaths(x, `${at}.${i}`)))).flat();
  if (isPlainObject(v)) return (await Promise.all(Object.entries(v).map(([k, x]) => secretPaths(x, `${at}.${k}`)))).flat();
  return [];
}

/** Paths of values JSON cannot carry (functions, bigints, symbols, class instances) in the resolved arguments. */
function nonJsonPaths(v: unknown, at: string): string[] {
  if (v === null || typeof v === "string" || typeof v === "boolean") return [];
  if (typeof v === "number") return Number.isFinite(v) ? [] : [at];
  if (Array.isArray(v)) return v.flatMap((x, i) => nonJsonPaths(x, `${at}.${i}`));
  if (isPlainObject(v)) return Object.entries(v).flatMap(([k, x]) => (x === undefined ? [] : nonJsonPaths(x, `${at}.${k}`)));
  return [at];
}

/**
 * Why the machine's arguments are refused, once they are known (`raw`: the program's input,
 * `resolved`: its value), or undefined. Checked with the fleet's evaluation, so a refusal
 * fails the whole batch before any host is touched.
 */
export async function refusedArgs(machine: string, raw: unknown, resolved: unknown): Promise<string | undefined> {
  if (resolved === undefined) return undefined;
  if (!isPlainObject(resolved)) return `Machine ${machine}: specialArgs: an object of module arguments by name (got ${Array.isArray(resolved) ? "a list" : typeof resolved})`;
  const p = nameProblems(resolved);
  for (const s of await secretPaths(raw)) {
    p.push(`${s}: is a secret, and module arguments end up in the Nix store (world-readable); deploy it as a DeploymentKey instead and give the configuration the key's \`path\` output (e.g. specialArgs: { dbPasswordFile: key.path })`);
  }
  for (const s of nonJsonPaths(resolved, "specialArgs")) p.push(`${s}: not a JSON value (strings, numbers, booleans, null, lists and objects of them)`);
  return p.length ? `Machine ${machine}: ${p.join(`\nMachine ${machine}: `)}` : undefined;
}

/** The resolved arguments without undefined members (JSON.stringify would drop them anyway). */
export function jsonArgs(resolved: Record<string, unknown> | undefined): Record<string, unknown> | undefined {
  if (!resolved) return undefined;
  const out = JSON.parse(JSON.stringify(resolved)) as Record<string, unknown>;
  return Object.keys(out).length ? out : undefined;
}
