/** Local store operations: realise a derivation, read a closure with sizes, export it. */
import { spawn, ChildProcess } from "child_process";
import { run } from "../util/run";
import { Logger } from "../util/log";
import { BuildProgress } from "./build-progress";
import { nixVersion, parsePathInfo, pathInfoCommand } from "./nix-json";

/** One store path of a closure, in topological order (dependencies first). */
export interface ClosurePath {
  path: string;
  narSize: number;
  /** The NAR hash Nix recorded (what a receiving host checks a peer's copy against). */
  narHash?: string;
  /** References (full store paths). */
  references?: string[];
}

/**
 * Builds (or finds) the outputs of drvPath; returns the first output path. Progress goes to `log`
 * as one line per build (see {@link BuildProgress}); the full log only on failure or when verbose.
 */
export async function realise(drvPath: string, log: Logger = () => undefined): Promise<string> {
  const progress = new BuildProgress(log);
  const child = spawn("nix-store", ["--realise", drvPath], { stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  child.stdout!.on("data", (d: Buffer) => { stdout += d.toString(); });
  let partial = "";
  child.stderr!.on("data", (d: Buffer) => {
    const parts = (partial + d.toString()).split("\n");
    partial = parts.pop()!;
    for (const l of parts) progress.line(l);
  });
  const code = await new Promise<number | null>((resolve, reject) => { child.on("error", reject); child.on("close", resolve); });
  if (partial) progress.line(partial);
  if (code !== 0) {
    progress.failed();
    throw new Error(`build of ${drvPath} failed: ${progress.tail()}`);
  }
  progress.succeeded();
  return stdout.trim().split("\n")[0];
}

/** Whether a store path is valid in the local store. */
export async function isValidLocally(p: string): Promise<boolean> {
  return (await run(["nix-store", "--check-validity", p], { allowFailure: true })).code === 0;
}

/**
 * The closure of paths with NAR sizes, dependencies before dependents (what `nix-store --import`
 * needs). One `nix path-info --json --recursive` gives paths, sizes and references; the order is
 * a depth-first walk of the references. Rejects when a path is not valid in the local store.
 */
export async function closureOf(paths: string[]): Promise<ClosurePath[]> {
  // The new CLI reads a .drv argument as its outputs unless told --derivation, and reads an
  // output path under --derivation as its deriver: one call per kind.
  const drvs = paths.filter((p) => p.endsWith(".drv"));
  const outs = paths.filter((p) => !p.endsWith(".drv"));
  const v = await nixVersion();
  const infos = await Promise.all([[drvs, ["--derivation"]], [outs, []]].filter(([ps]) => ps.length).map(async ([ps, flags]) => {
    const r = await run(pathInfoCommand(v, ["--recursive", ...flags, ...ps]), { allowFailure: true });
    if (r.code !== 0) throw new Error(`cannot read the closure of ${ps.join(", ")}: ${r.stderr.trim().split("\n").slice(-3).join(" ")}`);
    // Any Nix's shape (a list ≤ 2.18, a map since 2.19, …): see nix-json.ts.
    const got = parsePathInfo(r.stdout);
    const missing = ps.filter((p) => !p.endsWith(".drv") && !got.some((i) => i.path === p));
    if (missing.length) throw new Error(`cannot read the closure of ${missing.join(", ")}: not valid in the local store`);
    return got;
  }));
  const info = new Map(infos.flat().map((i) => [i.path, i]));
  const order: ClosurePath[] = [];
  const seen = new Set<string>();
  // Iterative post-order walk: deep closures must not exhaust the call stack.
  for (const root of [...info.keys()].sort()) {
    const stack: { path: string; next: number }[] = [{ path: root, next: 0 }];
    if (seen.has(root)) continue;
    seen.add(root);
    while (stack.length) {
      const top = stack[stack.length - 1];
      const refs = info.get(top.path)?.references ?? [];
      const ref = refs[top.next++];
      if (ref === undefined) {
        stack.pop();
        const i = info.get(top.path);
        order.push({ path: top.path, narSize: i?.narSize ?? 0, ...(i?.narHash ? { narHash: i.narHash } : {}), ...(i ? { references: i.references } : {}) });
      } else if (ref !== top.path && !seen.has(ref) && info.has(ref)) {
        seen.add(ref);
        stack.push({ path: ref, next: 0 });
      }
    }
  }
  return order;
}

/** `nix-store --export` of paths (in the given order) as a stream: nothing is buffered. */
export function exportPaths(paths: string[]): ChildProcess {
  return spawn("nix-store", ["--export", ...paths], { stdio: ["ignore", "pipe", "pipe"] });
}
