/**
 * The stack lock, as the CLI's diy (file) backend takes one for every update, refresh and destroy
 * (pkg/backend/diy/lock.go): a file naming the holder (pid, user, host, time), created exclusively;
 * a second run fails at once naming it. `npm run engine -- cancel --state FILE` removes a lock
 * left by a run that died, as `pulumi cancel` does.
 */
import * as fs from "fs";
import * as os from "os";

/** A held stack lock. */
export class StackLock {
  private released = false;
  private constructor(readonly file: string) {}

  /** The lock file of a state file. */
  static fileOf(stateFile: string): string { return `${stateFile}.lock`; }

  /** Takes the lock or throws naming its holder. */
  static acquire(stateFile: string, stack: string): StackLock {
    const file = StackLock.fileOf(stateFile);
    const me = { pid: process.pid, username: os.userInfo().username, hostname: os.hostname(), timestamp: new Date().toISOString(), stack };
    try {
      fs.writeFileSync(file, JSON.stringify(me) + "\n", { flag: "wx", mode: 0o600 });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      let holder = "an unknown holder";
      try {
        const h = JSON.parse(fs.readFileSync(file, "utf8"));
        holder = `${h.username}@${h.hostname} (pid ${h.pid}, since ${h.timestamp})`;
      } catch { /* unreadable: still locked */ }
      throw new Error(`the stack is currently locked by 1 lock(s): ${holder}. Either wait for the other process(es) to end or remove the lock with \`npm run engine -- cancel --state ${stateFile}\` (\`pulumi cancel\`)`);
    }
    return new StackLock(file);
  }

  /** Releases the lock (once). */
  release(): void {
    if (this.released) return;
    this.released = true;
    fs.rmSync(this.file, { force: true });
  }
}
