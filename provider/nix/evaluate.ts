/**
 * Evaluation of system toplevels at program time: drvPath and outPath of every Machine, so that
 * `pulumi preview` shows which machines change without building or contacting any host.
 * Machines registered together are evaluated in one `nix-instantiate` (per distinct nixPath);
 * when that fails, each machine is evaluated alone to say which one failed and why.
 */
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { run, RunError, RunTimeoutError } from "../util/run";
import { describeTimeout, timeoutMs } from "../util/timeouts";
import { nixPath, nixString, includeArgs } from "./nix-expr";
import { packageRoot } from "../util/package-root";
import { NixopsNetworkSource, networkToplevelExpr } from "./network-expr";

/** What to evaluate for one machine: exactly one of configuration or flake. */
export interface SystemSource {
  /** Path of a configuration.nix (evaluated with `<nixpkgs/nixos>`). */
  configuration?: string;
  /** More module files for the machine (NixOps-style `imports = [ ./hardware/x.nix … ]`). */
  imports?: string[];
  /** NIX_PATH entries (`nixpkgs=/path`, …) for `configuration`. Empty: the operator's NIX_PATH. */
  nixPath?: string[];
  /** `<flakeref>#<name>`: nixosConfigurations.<name>.config.system.build.toplevel. */
  flake?: string;
  /** A machine of a NixOps network expression (evaluated with `nixPath`, as NixOps's eval-machine-info.nix). */
  nixops?: NixopsNetworkSource & { machine: string };
  /**
   * Deployment keys' metadata (never content) for `configuration` or `flake`: becomes
   * `deployment.keys` in an extra module, together with pulumi-nixos's keys.nix (which declares the option).
   */
  keys?: Record<string, { name?: string; destDir?: string; user?: string; group?: string; permissions?: string }>;
  /**
   * Module arguments from the program (JSON values, never secrets): `configuration` is evaluated
   * through `<nixpkgs/nixos/lib/eval-config.nix>` with them as `specialArgs`, a flake through its
   * `extendModules { specialArgs }`, a NixOps machine beside the network's own arguments.
   * Absent or empty: the evaluation is exactly the one without (same toplevel).
   */
  specialArgs?: Record<string, unknown>;
  /** Why this machine may not evaluate (a refused argument): fails the batch, as a failed evaluation does. */
  refused?: string;
}

/** The evaluated toplevel. */
export interface EvaluatedSystem {
  drvPath: string;
  outPath: string;
}

interface Pending { name: string; source: SystemSource; resolve: (e: EvaluatedSystem) => void; reject: (e: Error) => void }

/** The NixOS module that declares deployment.keys (shipped beside this file's sources). */
const KEYS_MODULE = path.join(packageRoot, "provider", "nix", "keys.nix");
const FLAKE_OPTS = ["--option", "extra-experimental-features", "nix-command flakes"];
let queue: Pending[] = [];
let timer: NodeJS.Timeout | undefined;
const BATCH_WINDOW_MS = 25;

/** Evaluates one machine's toplevel, batched with the other machines of the program. */
export function evaluateSystem(name: string, source: SystemSource): Promise<EvaluatedSystem> {
  return new Promise((resolve, reject) => {
    queue.push({ name, source, resolve, reject });
    // Outputs resolve over several ticks: wait for the window to go quiet, then evaluate all.
    clearTimeout(timer);
    timer = setTimeout(flush, BATCH_WINDOW_MS);
  });
}

/** Evaluation count, for the benchmark and tests (one per batch per nixPath). */
export const evaluationStats = { evaluations: 0 };

async function flush(): Promise<void> {
  const batch = queue;
  queue = [];
  const failures = new Map<Pending, Error>();
  const groups = new Map<string, Pending[]>();
  for (const p of batch) {
    try {
      validateSource(p.name, p.source);
    } catch (e) {
      failures.set(p, e as Error);
      continue;
    }
    const key = JSON.stringify(p.source.flake ? [] : p.source.nixPath ?? null);
    groups.set(key, [...(groups.get(key) ?? []), p]);
  }
  const results = new Map<Pending, EvaluatedSystem>();
  await Promise.all([...groups.values()].map((g) => evaluateGroup(g, results, failures)));
  // Like a NixOps network, the fleet deploys only when all of it evaluates. Every machine of the
  // batch gets the same error object: the SDK reports an error once per identity.
  if (failures.size) {
    const err = new FleetEvaluationError([...failures.values()].map((e) => e.message), batch.filter((p) => !failures.has(p)).map((p) => p.name));
    for (const p of batch) p.reject(err);
    return;
  }
  for (const p of batch) p.resolve(results.get(p)!);
}

/**
 * The fleet did not evaluate: each failed machine's name, file and Nix's own message, then which
 * machines were held back. A Pulumi `RunError` (by its RTTI marker), so the SDK's program runner
 * prints the message alone, without a stack trace. The message is fixed: the SDK prefixes
 * `error serializing property "systemPath": ` to errors that reach a resource input, which
 * would push Nix's message out of the first line.
 */
export class FleetEvaluationError extends Error {
  /** The SDK's marker of `pulumi.RunError` (errors.js `RunError.isInstance`). */
  readonly __pulumiRunError = true;
  constructor(failures: string[], heldBack: string[]) {
    super();
    const text = failures.join("\n") + (heldBack.length
      ? `\nnothing was deployed: the fleet's evaluation failed (not deployed either: ${heldBack.join(", ")})`
      : "\nnothing was deployed: the fleet's evaluation failed");
    Object.defineProperty(this, "message", { get: () => text, set: () => { /* see above */ }, enumerable: false, configurable: false });
    this.name = "FleetEvaluationError";
    this.stack = `${this.name}: ${text}`;
  }
}

function validateSource(name: string, s: SystemSource): void {
  if (s.refused) throw new Error(s.refused);
  if (s.nixops) {
    if (s.configuration || s.imports?.length || s.flake) throw new Error(`Machine ${name}: a NixOps network machine takes no configuration, imports or flake`);
    for (const f of [...s.nixops.files, ...(s.nixops.extraBuiltinsFile ? [s.nixops.extraBuiltinsFile] : [])]) {
      if (!fs.existsSync(f)) throw new Error(`Machine ${name}: network file ${f} does not exist`);
    }
    return;
  }
  if (!!(s.configuration || s.imports?.length) === !!s.flake) throw new Error(`Machine ${name}: give exactly one of configuration (and/or imports) or flake`);
  for (const f of [s.configuration, ...(s.imports ?? [])]) {
    if (f && !fs.existsSync(f)) throw new Error(`Machine ${name}: configuration file ${f} does not exist`);
  }
  if (s.flake && !s.flake.includes("#")) throw new Error(`Machine ${name}: flake must be '<flakeref>#<name>', got '${s.flake}'`);
}

/**
 * A local flake as nixos-rebuild (Nix's own parsing of a bare path, flakeref.cc
 * parsePathFlakeRefWithFragment) evaluates it: in a git work tree, `git+file:` of the work tree's
 * root (with `?dir=` for a flake below it), so only tracked files reach the store (untracked ones,
 * secrets included, stay out) and `self.rev` is set for a clean tree; outside git, `path:`.
 */
export function flakeRef(ref: string): string {
  if (!(ref.startsWith("/") || ref.startsWith("."))) return ref;
  const dir = path.resolve(ref);
  // `.git` is a directory, or a file in a linked worktree or submodule.
  for (let d = dir; ; d = path.dirname(d)) {
    if (fs.existsSync(path.join(d, ".git"))) {
      const sub = path.relative(d, dir);
      return `git+file://${encodeURI(d)}${sub ? `?dir=${encodeURIComponent(sub)}` : ""}`;
    }
    if (path.dirname(d) === d) return `path:${dir}`;
  }
}

/**
 * The machine's toplevel; `argsFile`: a JSON file of its specialArgs (read with builtins.readFile,
 * so no value is ever spliced into Nix source).
 */
function toplevelExpr(s: SystemSource, argsFile?: string): string {
  const special = argsFile ? `(builtins.fromJSON (builtins.readFile ${nixPath(argsFile)}))` : undefined;
  if (s.nixops) return networkToplevelExpr(s.nixops, s.nixops.machine, special);
  if (s.flake) {
    const i = s.flake.lastIndexOf("#");
    const ref = flakeRef(s.flake.slice(0, i));
    const flakeSys = `(builtins.getFlake ${nixString(ref)}).nixosConfigurations.${nixString(s.flake.slice(i + 1))}`;
    // lib/modules.nix `extendModules = { modules ? [], specialArgs ? {}, prefix ? [] }`: evalModules
    // again with `evalModulesArgs.specialArgs // specialArgs` (lib.nixosSystem's result has it).
    const sys = special
      ? `(let c = ${flakeSys}; in if !(c ? extendModules) then throw ${nixString(`${s.flake}: specialArgs reach a flake's modules through extendModules (build it with nixpkgs.lib.nixosSystem)`)} else c.extendModules { specialArgs = ${special}; })`
      : flakeSys;
    if (!s.keys || !Object.keys(s.keys).length) return `${sys}.config.system.build.toplevel`;
    // A flake machine with keys gets keys.nix too (its units, the hand-over to owners the deploy
    // creates, keys.target's wait), through the `extendModules` of lib.nixosSystem's result;
    // not twice when the flake imports keys.nix itself (deployment.keys already declared).
    const keys = `{ deployment.keys = builtins.fromJSON ${nixString(JSON.stringify(s.keys))}; }`;
    return `(let c = ${sys}; declared = c.options ? deployment && c.options.deployment ? keys; in `
      + `if !(c ? extendModules) then throw ${nixString(`${s.flake}: its deployment keys need keys.nix in the system, which pulumi-nixos adds through extendModules (build it with nixpkgs.lib.nixosSystem), or import ${KEYS_MODULE} in it`)} `
      + `else (c.extendModules { modules = (if declared then [ ] else [ ${nixPath(KEYS_MODULE)} ]) ++ [ ${keys} ]; }).config.system.build.toplevel)`;
  }
  const files = [...(s.configuration ? [s.configuration] : []), ...(s.imports ?? [])].map((f) => nixPath(path.resolve(f)));
  const hasKeys = !!s.keys && Object.keys(s.keys).length > 0;
  const configuration = hasKeys || files.length > 1
    ? `{ imports = [ ${files.join(" ")} ${hasKeys ? nixPath(KEYS_MODULE) : ""} ]; ${hasKeys ? `deployment.keys = builtins.fromJSON ${nixString(JSON.stringify(s.keys))};` : ""} }`
    : files[0];
  if (!special) return `(import <nixpkgs/nixos> { configuration = ${configuration}; }).system`;
  // What <nixpkgs/nixos> (nixos/default.nix) does, with specialArgs: nixpkgs's
  // nixos/lib/eval-config.nix takes `specialArgs ? {}` and hands them to lib.evalModules beside
  // modulesPath (nixos/lib/eval-config-minimal.nix: `{ modulesPath = …; } // specialArgs`).
  return `(import <nixpkgs/nixos/lib/eval-config.nix> { modules = [ ${configuration} ]; specialArgs = ${special}; }).config.system.build.toplevel`;
}

async function instantiate(members: Pending[]): Promise<Record<string, EvaluatedSystem>> {
  // Arguments cross into Nix as JSON files (values are never secrets: refused before this).
  const withArgs = members.filter((m) => Object.keys(m.source.specialArgs ?? {}).length);
  const dir = withArgs.length ? fs.mkdtempSync(path.join(os.tmpdir(), "pulumi-nixos-args-")) : undefined;
  try {
    const files = new Map(withArgs.map((m, i) => {
      const f = path.join(dir!, `${i}.json`);
      fs.writeFileSync(f, JSON.stringify(m.source.specialArgs));
      return [m, f] as const;
    }));
    return await instantiateWith(members, files);
  } finally {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function instantiateWith(members: Pending[], argsFiles: Map<Pending, string>): Promise<Record<string, EvaluatedSystem>> {
  const body = members.map((m) => `  ${nixString(m.name)} = info (${toplevelExpr(m.source, argsFiles.get(m))});`).join("\n");
  // Not named outPath: builtins.toJSON would turn a set with outPath into a string.
  const expr = `let info = s: { drv = s.drvPath; out = s.outPath; }; in {\n${body}\n}`;
  const np = members[0].source.flake ? [] : members[0].source.nixPath ?? [];
  const env = { ...process.env };
  // A pinned machine never sees the operator's NIX_PATH or channels.
  if (np.length) env.NIX_PATH = "";
  evaluationStats.evaluations++;
  // --read-write-mode writes the .drv files, so the build step can realise drvPath later.
  // Evaluation may fetch (fetchTarball, flake inputs): bounded, and killed with its helpers.
  const r = await run(["nix-instantiate", "--eval", "--strict", "--json", "--read-write-mode", ...FLAKE_OPTS, ...includeArgs(np), "-E", expr], { env, timeoutMs: timeoutMs("eval"), killGroup: true })
    .catch((e) => { throw e instanceof RunTimeoutError ? new EvalTimeoutError(`evaluation did not finish within ${describeTimeout("eval")}`) : e; });
  const parsed = JSON.parse(r.stdout) as Record<string, { drv: string; out: string }>;
  return Object.fromEntries(Object.entries(parsed).map(([k, v]) => [k, { drvPath: v.drv, outPath: v.out }]));
}

/** The evaluation passed its deadline (not retried machine by machine: each would wait as long). */
class EvalTimeoutError extends Error {}

async function evaluateGroup(group: Pending[], results: Map<Pending, EvaluatedSystem>, failures: Map<Pending, Error>): Promise<void> {
  try {
    const out = await instantiate(group);
    for (const p of group) results.set(p, out[p.name]);
  } catch (e) {
    if (e instanceof EvalTimeoutError) {
      for (const p of group) failures.set(p, new Error(`Machine ${p.name}: ${e.message}`));
      return;
    }
    if (group.length === 1) {
      const p = group[0];
      const what = p.source.flake ?? p.source.configuration ?? p.source.nixops?.files.join(" + ");
      const msg = e instanceof RunError ? cleanNixError(e.result.stderr) : String(e);
      failures.set(p, new Error(`Machine ${p.name}: evaluation of ${what} failed:\n${msg}`));
      return;
    }
    // Attribute the failure: evaluate each machine alone.
    await Promise.all(group.map((p) => evaluateGroup([p], results, failures)));
  }
}

function cleanNixError(stderr: string): string {
  return stderr.split("\n").filter((l) => l.trim() && !/^warning: unknown setting/.test(l)).join("\n");
}
