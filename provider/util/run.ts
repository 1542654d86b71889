import { spawn, SpawnOptions } from "child_process";

/** Result of a finished local process. */
export interface RunResult {
  /** Exit code (null when killed by a signal). */
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Options for {@link run}. */
export interface RunOptions {
  /** Written to the process's stdin, then stdin is closed. Secrets go here, never into argv. */
  input?: string | Buffer;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Kill the process after this many milliseconds (then reject with a {@link RunTimeoutError}). */
  timeoutMs?: number;
  /**
   * Run it as a process group of its own and kill the whole group on timeout (for tools that
   * start helpers, e.g. nix-prefetch-url's downloader or unpacker).
   */
  killGroup?: boolean;
  /** Resolve instead of rejecting on a non-zero exit. */
  allowFailure?: boolean;
}

/** Error thrown by {@link run} for a failed command; carries its output. */
export class RunError extends Error {
  constructor(message: string, readonly result: RunResult) {
    super(message);
  }
}

/** Thrown by {@link run} when the process passed its `timeoutMs` (it was killed). */
export class RunTimeoutError extends RunError {}

/** Runs argv[0] with argv[1..] (no shell), collecting stdout and stderr. */
export function run(argv: string[], opts: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const spawnOpts: SpawnOptions = { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ["pipe", "pipe", "pipe"], detached: !!opts.killGroup };
    const child = spawn(argv[0], argv.slice(1), spawnOpts);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    const timer = opts.timeoutMs
      ? setTimeout(() => {
        timedOut = true;
        try {
          if (opts.killGroup && child.pid) process.kill(-child.pid, "SIGKILL");
          else child.kill("SIGKILL");
        } catch { child.kill("SIGKILL"); }
      }, opts.timeoutMs)
      : undefined;
    child.stdout!.on("data", (d: Buffer) => out.push(d));
    child.stderr!.on("data", (d: Buffer) => err.push(d));
    child.on("error", (e) => { if (timer) clearTimeout(timer); reject(e); });
    child.on("close", (code) => {
      if (timer) clearTimeout(timer);
      const result = { code, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() };
      if (timedOut) return reject(new RunTimeoutError(`${argv[0]} timed out after ${Math.round(opts.timeoutMs! / 100) / 10} s`, result));
      if (code !== 0 && !opts.allowFailure) {
        return reject(new RunError(`${argv.join(" ")} exited with ${code}: ${result.stderr.trim()}`, result));
      }
      resolve(result);
    });
    child.stdin!.on("error", () => undefined); // the process may exit before reading all input
    child.stdin!.end(opts.input ?? "");
  });
}

/** Whether an executable is found on PATH (or at an absolute path). */
export async function commandExists(cmd: string): Promise<boolean> {
  const r = await run(["sh", "-c", 'command -v "$1"', "sh", cmd], { allowFailure: true });
  return r.code === 0;
}
