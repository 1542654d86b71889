/**
 * A `nix` that prints what Nix 2.32 prints, in front of the real (older) nix on PATH: no Nix newer
 * than Debian's 2.8 can be installed here, so the ≥ 2.19 shapes are emulated by reshaping the real
 * output (the store paths, sizes and references stay the real ones):
 * - `nix --version` says 2.32.0;
 * - `nix path-info --json`: the map keyed by store path, without `path` fields (rl-2.19.md);
 * - `nix derivation show` (≥ 2.15, rl-2.15.md) is answered by the real `nix show-derivation`,
 *   every store path reduced to its basename (rl-2.32.md, derivation JSON version 3).
 * Each call is logged (one line of arguments) so tests can tell the wrapper was used.
 */
import * as fs from "fs";
import * as path from "path";
import { spawnSync } from "child_process";
import { tempDir } from "./env";

/** Writes the wrapper; returns its directory (to put first on PATH), its log, and a cleanup. */
export function nix232Wrapper(): { dir: string; log: string; cleanup: () => void } {
  const real = spawnSync("sh", ["-c", "command -v nix"], { encoding: "utf8" }).stdout.trim();
  if (!real) throw new Error("no nix on PATH to wrap");
  const dir = tempDir("nix232");
  const log = path.join(dir, "calls.log");
  const script = `#!${process.execPath}
const { spawnSync } = require("child_process");
const fs = require("fs");
const args = process.argv.slice(2);
fs.appendFileSync(${JSON.stringify(log)}, JSON.stringify(args) + "\\n");
if (args.includes("--version")) { process.stdout.write("nix (Nix) 2.32.0\\n"); process.exit(0); }
const d = args.indexOf("derivation");
const isDrvShow = d >= 0 && args[d + 1] === "show";
const realArgs = isDrvShow ? [...args.slice(0, d), "show-derivation", ...args.slice(d + 2)] : args;
const r = spawnSync(${JSON.stringify(real)}, realArgs, { stdio: ["inherit", "pipe", "inherit"], maxBuffer: 1 << 30 });
if (r.status !== 0 || !(isDrvShow || (args.includes("path-info") && args.includes("--json")))) {
  process.stdout.write(r.stdout); process.exit(r.status ?? 1);
}
const data = JSON.parse(r.stdout.toString());
const base = (p) => p.replace(/^\\/nix\\/store\\//, "");
let out;
if (isDrvShow) {
  out = {};
  for (const [k, v] of Object.entries(data)) {
    const outputs = {};
    for (const [n, o] of Object.entries(v.outputs || {})) outputs[n] = { ...o, ...(o.path ? { path: base(o.path) } : {}) };
    const inputDrvs = {};
    for (const [i, o] of Object.entries(v.inputDrvs || {})) inputDrvs[base(i)] = { outputs: o, dynamicOutputs: {} };
    out[base(k)] = { ...v, version: 3, outputs, inputSrcs: (v.inputSrcs || []).map(base), inputDrvs };
  }
} else {
  out = {};
  for (const { path, ...rest } of data) out[path] = rest;
}
process.stdout.write(JSON.stringify(out) + "\\n");
`;
  fs.writeFileSync(path.join(dir, "nix"), script, { mode: 0o755 });
  return { dir, log, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}
