/**
 * Child processes of the engine (the program, the provider plugin) that never outlive it: on Linux
 * they start under `setpriv --pdeathsig KILL`, so the kernel ends them when the engine dies, even
 * by SIGKILL (a deploying provider left alone once grew to 3.3 GB).
 */
import { ChildProcess, SpawnOptions, spawn, spawnSync } from "child_process";

const setpriv = process.platform === "linux" && spawnSync("setpriv", ["--help"], { stdio: "ignore" }).status === 0;

/** Spawns `cmd args` with piped stdout/stderr, tied to this process's life where the OS allows. */
export function spawnChild(cmd: string, args: string[], opts: Omit<SpawnOptions, "stdio">): ChildProcess {
  const [file, argv] = setpriv ? ["setpriv", ["--pdeathsig", "KILL", "--", cmd, ...args]] : [cmd, args];
  return spawn(file, argv, { ...opts, stdio: ["ignore", "pipe", "pipe"] });
}
