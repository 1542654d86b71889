/**
 * Child processes of the engine (the program, the provider plugin) as pulumi starts plugins:
 * each in its own process group (sdk/go/common/resource/plugin/plugin.go `ExecPlugin` →
 * cmdutil.RegisterProcessGroup, Setpgid), so a ^C at the terminal, which the terminal sends to its
 * foreground group, reaches the engine alone and the engine decides what happens to running
 * steps. They never outlive it: on Linux they start under `setpriv --pdeathsig KILL`, so the kernel
 * ends them when the engine dies, even by SIGKILL (a deploying provider left alone once grew to 3.3 GB).
 */
import { ChildProcess, SpawnOptions, spawn, spawnSync } from "child_process";

const setpriv = process.platform === "linux" && spawnSync("setpriv", ["--help"], { stdio: "ignore" }).status === 0;

/**
 * Spawns `cmd args` with piped stdout/stderr, leader of its own process group (Node's `detached`:
 * setsid, a new session and group), tied to this process's life where the OS allows.
 */
export function spawnChild(cmd: string, args: string[], opts: Omit<SpawnOptions, "stdio" | "detached">): ChildProcess {
  const [file, argv] = setpriv ? ["setpriv", ["--pdeathsig", "KILL", "--", cmd, ...args]] : [cmd, args];
  return spawn(file, argv, { ...opts, stdio: ["ignore", "pipe", "pipe"], detached: process.platform !== "win32" });
}

const running = (c: ChildProcess) => c.exitCode === null && c.signalCode === null;

function signalGroup(c: ChildProcess, sig: NodeJS.Signals): void {
  try {
    if (c.pid) process.kill(-c.pid, sig);
  } catch {
    c.kill(sig);
  }
}

/**
 * Ends a child and everything in its process group as pulumi ends a plugin (plugin.go `kill`):
 * SIGINT to the group (cmdutil.InterruptChildren), up to `graceMs` to exit, then SIGKILL to the
 * group (cmdutil.KillChildren) — the group also holds what the child started (ssh, nix-store).
 */
export async function endGroup(c: ChildProcess, graceMs = 5000): Promise<void> {
  if (running(c)) {
    const exited = new Promise((r) => c.once("exit", r));
    signalGroup(c, "SIGINT");
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([exited, new Promise((r) => { timer = setTimeout(r, graceMs); })]);
    clearTimeout(timer);
  }
  // Whatever the leader left behind in its group goes too.
  signalGroup(c, "SIGKILL");
}
