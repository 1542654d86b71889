/**
 * Readers of the JSON the deployer asks Nix for, in every shape Nix has printed from 2.8 to the
 * current release, and the command lines that ask for it.
 *
 * `nix path-info --json`:
 * - ≤ 2.18: an array of `{ path, narSize, references: [full paths] }`;
 * - 2.19–2.32: an object keyed by full store path (no `path` field; `null` for an invalid path)
 *   (release notes rl-2.19.md: "nix path-info --json now returns a JSON map rather than a JSON
 *   list"; tests/functional/path-info.sh);
 * - ≥ 2.33: `--json-format 1` the same map (plus `version`, `storeDir`), `--json-format 2`
 *   `{ version: 2, storeDir, info: { <basename>: { references: [basenames] } } }` (rl-2.33.md,
 *   "Store path info JSON format changes"; `--json` without `--json-format` is deprecated there).
 *
 * `nix show-derivation` (2.8–2.14; renamed `nix derivation show` in 2.15, rl-2.15.md): an object
 * keyed by `.drv` path of `{ outputs: { <name>: { path } }, inputSrcs, inputDrvs: { <drv>: … } }`;
 * 2.32 names every store path by its basename (rl-2.32.md, "Derivation JSON format now uses store
 * path basenames only"; doc/manual/source/protocols/json/derivation.md, version 3); 2.33 nests the
 * inputs as `inputs: { srcs, drvs }` (rl-2.33.md, derivation JSON version 4).
 */
import { run } from "../util/run";

/** One valid store path: its NAR size, references (full store paths) and NAR hash as Nix printed it. */
export interface PathInfo { path: string; narSize: number; references: string[]; narHash?: string }

/** One derivation: its output paths (when known), input sources and input derivations (full paths). */
export interface DerivationInfo { outputs: Record<string, string | undefined>; inputSrcs: string[]; inputDrvs: string[] }

const DEFAULT_STORE = "/nix/store";
type Json = Record<string, unknown>;
const isObj = (v: unknown): v is Json => !!v && typeof v === "object" && !Array.isArray(v);

/** A store path as Nix printed it (full, or a basename since 2.32/2.33) → the full path. */
function full(p: string, storeDir: string): string {
  return p.startsWith("/") ? p : `${storeDir}/${p}`;
}

/** The paths of `nix path-info --json [--recursive]` output, any version's shape; invalid paths are left out. */
export function parsePathInfo(stdout: string): PathInfo[] {
  const data = JSON.parse(stdout) as unknown;
  const one = (p: string, v: Json, storeDir: string): PathInfo => ({
    path: full(p, storeDir),
    narSize: typeof v.narSize === "number" ? v.narSize : 0,
    references: Array.isArray(v.references) ? (v.references as string[]).map((r) => full(r, storeDir)) : [],
    // 2.8–2.18 `sha256-<base64>` (SRI) or `sha256:<base32>`; 2.33 format 2 `{ algorithm, format, hash }`: kept as given.
    ...(typeof v.narHash === "string" ? { narHash: v.narHash } : isObj(v.narHash) ? { narHash: `${v.narHash.algorithm}-${v.narHash.hash}` } : {}),
  });
  if (Array.isArray(data)) {
    // ≤ 2.18 (an invalid path is `{ path, valid: false }`).
    return (data as Json[]).filter((v) => isObj(v) && typeof v.path === "string" && v.valid !== false).map((v) => one(v.path as string, v, DEFAULT_STORE));
  }
  if (!isObj(data)) throw new Error("nix path-info --json: neither a list nor an object");
  const storeDir = typeof data.storeDir === "string" ? data.storeDir : DEFAULT_STORE;
  // ≥ 2.33 --json-format 2: the map is under `info`.
  const map = isObj(data.info) ? data.info : data;
  return Object.entries(map).filter(([k, v]) => isObj(v) && k !== "info").map(([k, v]) => one(k, v as Json, storeDir));
}

/** The derivations of `nix derivation show [--recursive]` output, by full `.drv` path, any version's shape. */
export function parseDerivations(stdout: string): Map<string, DerivationInfo> {
  const data = JSON.parse(stdout) as unknown;
  if (!isObj(data)) throw new Error("nix derivation show: not a JSON object");
  const storeDir = typeof data.storeDir === "string" ? data.storeDir : DEFAULT_STORE;
  // A wrapped form ({ version, storeDir, derivations: { … } }) as path-info's version 2.
  const map = isObj(data.derivations) ? data.derivations : data;
  const out = new Map<string, DerivationInfo>();
  for (const [k, v] of Object.entries(map)) {
    if (!isObj(v) || !k.endsWith(".drv")) continue;
    const inputs = isObj(v.inputs) ? v.inputs : { srcs: v.inputSrcs, drvs: v.inputDrvs };
    const outputs: Record<string, string | undefined> = {};
    for (const [name, o] of Object.entries(isObj(v.outputs) ? v.outputs : {})) {
      outputs[name] = isObj(o) && typeof o.path === "string" ? full(o.path, storeDir) : undefined;
    }
    out.set(full(k, storeDir), {
      outputs,
      inputSrcs: Array.isArray(inputs.srcs) ? (inputs.srcs as string[]).map((s) => full(s, storeDir)) : [],
      inputDrvs: isObj(inputs.drvs) ? Object.keys(inputs.drvs).map((d) => full(d, storeDir)) : [],
    });
  }
  return out;
}

/** A Nix version as [major, minor] (from `nix --version`: "nix (Nix) 2.8.0"). */
export function parseNixVersion(text: string): [number, number] {
  const m = /(\d+)\.(\d+)/.exec(text);
  if (!m) throw new Error(`cannot read Nix's version from '${text.trim()}'`);
  return [Number(m[1]), Number(m[2])];
}

const atLeast = (v: [number, number], major: number, minor: number) => v[0] > major || (v[0] === major && v[1] >= minor);

const versions = new Map<string, Promise<[number, number]>>();
/** The version of the `nix` on PATH (asked once per PATH). */
export function nixVersion(): Promise<[number, number]> {
  const key = process.env.PATH ?? "";
  let v = versions.get(key);
  if (!v) {
    v = run(["nix", "--version"], { timeoutMs: 30_000 }).then((r) => parseNixVersion(r.stdout));
    v.catch(() => versions.delete(key));
    versions.set(key, v);
  }
  return v;
}

const NIX_CMD = ["nix", "--extra-experimental-features", "nix-command"];

/** `nix path-info --json …` for this Nix (≥ 2.33: with `--json-format 2`, since `--json` alone is deprecated there). */
export function pathInfoCommand(v: [number, number], args: string[]): string[] {
  return [...NIX_CMD, "path-info", "--json", ...(atLeast(v, 2, 33) ? ["--json-format", "2"] : []), ...args];
}

/** `nix derivation show …` (≥ 2.15) or `nix show-derivation …` (2.8–2.14). */
export function derivationShowCommand(v: [number, number], args: string[]): string[] {
  return [...NIX_CMD, ...(atLeast(v, 2, 15) ? ["derivation", "show"] : ["show-derivation"]), ...args];
}
