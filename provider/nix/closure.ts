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

/** The closure of paths with NAR sizes, dependencies before dependents. */
export async function closureOf(paths: string[]): Promise<ClosurePath[]> {
  // -qR prints in topological order; path-info gives the sizes.
  const order = (await run(["nix-store", "--query", "--requisites", ...paths])).stdout.trim().split("\n").filter(Boolean);
  const info = JSON.parse((await run(["nix", ...NIX_CMD, "path-info", "--json", ...order])).stdout) as { path: string; narSize: number }[];
  const size = new Map(info.map((i) => [i.path, i.narSize]));
  return order.map((p) => ({ path: p, narSize: size.get(p) ?? 0 }));
}

/** `nix-store --export` of paths (in the given order) as a stream: nothing is buffered. */
export function exportPaths(paths: string[]): ChildProcess {
  return spawn("nix-store", ["--export", ...paths], { stdio: ["ignore", "pipe", "pipe"] });
}
