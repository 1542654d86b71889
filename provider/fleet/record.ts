/**
 * Writing what a fleet command changed on hosts back into the stack's state, so that state and
 * hosts agree (a `rollback` switched a host to another generation: refresh then shows no drift,
 * and the next `up` redeploys the program's system because the recorded one differs from it).
 * Under the stack lock, as `pulumi stack export` + `pulumi stack import` would do it.
 */
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { spawnSync } from "child_process";
import { describeTimeout, timeoutMs } from "../util/timeouts";
import { exportResources } from "./state";

/** A machine's system as a host now runs it. */
export interface RecordedSystem { urn: string; systemPath: string; generation: number }

/** Applies the systems to the Machine outputs in `data`; the URNs it did not find. */
function apply(data: any, systems: RecordedSystem[]): string[] {
  const missing: string[] = [];
  for (const s of systems) {
    const r = exportResources(data).find((x) => x.urn === s.urn && !x.delete);
    if (!r?.outputs) { missing.push(s.urn); continue; }
    r.outputs.systemPath = s.systemPath;
    r.outputs.generation = s.generation;
    // The manifest described the system deployed before: the next plan's closure diff is read anew.
    delete r.outputs.closureManifest;
  }
  return missing;
}

/**
 * A state file (the engine harness's, laid out as the diy backend's checkpoint): the stack lock
 * taken as the diy backend takes it (pkg/backend/diy/lock.go: a lock file created exclusively,
 * naming its holder), the file replaced atomically.
 */
function recordInFile(file: string, systems: RecordedSystem[]): string[] {
  const lock = `${file}.lock`;
  try {
    fs.writeFileSync(lock, JSON.stringify({ pid: process.pid, username: os.userInfo().username, hostname: os.hostname(), timestamp: new Date().toISOString() }) + "\n", { flag: "wx", mode: 0o600 });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "EEXIST") throw new Error(`the stack is locked (${lock}): an update runs; the hosts changed, but the state was not updated: run \`pulumi refresh\` once it is over`);
    throw e;
  }
  try {
    const data = JSON.parse(fs.readFileSync(file, "utf8"));
    const missing = apply(data, systems);
    const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
    fs.writeFileSync(tmp, JSON.stringify(data, null, 2) + "\n", { mode: 0o600 });
    fs.renameSync(tmp, file);
    return missing;
  } finally {
    fs.rmSync(lock, { force: true });
  }
}

/** A real stack: export (secrets stay sealed), change, import (which takes the stack lock). */
function recordInStack(stack: string, cwd: string | undefined, systems: RecordedSystem[]): string[] {
  const opts = { encoding: "utf8" as const, timeout: timeoutMs("command"), killSignal: "SIGKILL" as const, maxBuffer: 256 << 20 };
  const cwdArgs = cwd ? ["--cwd", cwd] : [];
  const ex = spawnSync("pulumi", ["stack", "export", "--stack", stack, ...cwdArgs], opts);
  if (ex.error || ex.status !== 0) throw new Error(`pulumi stack export failed (${ex.error?.message ?? ex.stderr.trim()}${(ex.error as NodeJS.ErrnoException | undefined)?.code === "ETIMEDOUT" ? `: no answer within ${describeTimeout("command")}` : ""})`);
  const data = JSON.parse(ex.stdout);
  const missing = apply(data, systems);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pulumi-nixos-"));
  try {
    const f = path.join(dir, "stack.json");
    fs.writeFileSync(f, JSON.stringify(data), { mode: 0o600 }); // secrets in it are still ciphertext
    const im = spawnSync("pulumi", ["stack", "import", "--stack", stack, "--file", f, ...cwdArgs], opts);
    if (im.error || im.status !== 0) throw new Error(`pulumi stack import failed (${im.error?.message ?? im.stderr.trim()})`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return missing;
}

/** Records the systems hosts now run in the stack's state (`--state FILE` or `--stack NAME`). */
export function recordSystems(o: { state?: string; stack?: string; cwd?: string }, systems: RecordedSystem[]): string[] {
  if (!systems.length) return [];
  return o.state ? recordInFile(o.state, systems) : recordInStack(o.stack!, o.cwd, systems);
}
