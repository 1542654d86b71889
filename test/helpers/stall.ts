/** A lab host that stops reading mid-import: its `nix-store --import` is stopped (SIGSTOP) by pid. */
import { Lab } from "../../provider/lab/lab";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Waits until `host` runs `nix-store --import`, lets it take data for `afterMs`, then stops it;
 * returns its pid (for {@link resumeImport}). The pattern is anchored so that only the import
 * itself matches, not the shell whose script names it.
 */
export async function stallImport(lab: Lab, host: string, afterMs: number, waitMs = 300_000): Promise<number> {
  const end = Date.now() + waitMs;
  for (;;) {
    const r = await lab.exec(host, ["sh", "-c", "pgrep -f '^nix-store --impor[t]' | head -1"], { allowFailure: true });
    const pid = Number(r.stdout.trim());
    if (pid) {
      await sleep(afterMs);
      await lab.exec(host, ["kill", "-STOP", String(pid)]);
      return pid;
    }
    if (Date.now() > end) throw new Error(`${host} never started nix-store --import`);
    await sleep(20);
  }
}

/** Ends a stopped import (it would only fail on its truncated input now). */
export async function endImport(lab: Lab, host: string, pid: number): Promise<void> {
  await lab.exec(host, ["kill", "-KILL", String(pid)], { allowFailure: true });
}

/** Lets a stopped import go on (SIGCONT). */
export async function resumeImport(lab: Lab, host: string, pid: number): Promise<void> {
  await lab.exec(host, ["kill", "-CONT", String(pid)], { allowFailure: true });
}
