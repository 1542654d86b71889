/** Local store operations: realise a derivation, read a closure with sizes, export it. */
import { spawn, ChildProcess } from "child_process";
import { run } from "../util/run";

/** One store path of a closure, in topological order (dependencies first). */
export interface ClosurePath {
  path: string;
  narSize: number;
}

const NIX_CMD = ["--extra-experimental-features", "nix-command"];

/** Builds (or finds) the outputs of drvPath; returns the first output path. */
export async function realise(drvPath: string, log?: (line: string) => void): Promise<string> {
  const r = await run(["nix-store", "--realise", drvPath], { allowFailure: true });
  if (r.code !== 0) throw new Error(`build of ${drvPath} failed: ${r.stderr.trim().split("\n").slice(-15).join("\n")}`);
  if (log) for (const l of r.stderr.split("\n").filter((x) => /^building /.test(x))) log(l);
  return r.stdout.trim().split("\n")[0];
}

/** Whether a store path is valid in the local store. */
export async function isValidLocally(p: string): Promise<boolean> {
  return (await run(["nix-store", "--check-validity", p], { allowFailure: true })).code === 0;
}

/** One path as `nix path-info --json` reports it. */
interface PathInfo { path: string; narSize: number; references?: string[] }

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
  const infos = await Promise.all([[drvs, ["--derivation"]], [outs, []]].filter(([ps]) => ps.length).map(async ([ps, flags]) => {
    const r = await run(["nix", ...NIX_CMD, "path-info", "--json", "--recursive", ...flags, ...ps], { allowFailure: true });
    if (r.code !== 0) throw new Error(`cannot read the closure of ${ps.join(", ")}: ${r.stderr.trim().split("\n").slice(-3).join(" ")}`);
    return JSON.parse(r.stdout) as PathInfo[];
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
        order.push({ path: top.path, narSize: info.get(top.path)?.narSize ?? 0 });
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
