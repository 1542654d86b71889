/** `pulumi-nixos unlock MACHINE`: reports the lock on a machine's host and breaks it when expired. */
import { Command } from "commander";
import { loadFleet, selectMachines } from "../fleet/state";
import { connect } from "../fleet/ops";
import { connectionLabel } from "../connection";
import { breakLock, describeHolder, LOCK_FILE } from "../host/lock";
import { withExamples } from "./usage";

interface UnlockOpts { stack?: string; state?: string; cwd?: string; force?: boolean }

export function registerUnlockCommand(program: Command): void {
  withExamples(program.command("unlock <machine>")
    .description("break the lock on a machine's host left by a deployer that is gone (expired); a live lock only with --force"),
  "npx pulumi-nixos unlock heron --stack prod", "npx pulumi-nixos unlock heron --state lab.state.json --force")
    .option("--stack <name>", "stack (read with `pulumi stack export --show-secrets`)")
    .option("--state <file>", "a stack export or the engine harness's state file")
    .option("--cwd <dir>", "project directory for --stack")
    .option("--force", "also break a lock that is not expired (only when you are sure its holder is gone)")
    .action(async (name: string, o: UnlockOpts) => {
      const [m] = selectMachines(loadFleet(o).machines, { include: [name] });
      const s = await connect(m);
      try {
        const { broken, state } = await breakLock(s, { force: o.force });
        const where = connectionLabel(m.connection);
        if (!state.holder && !state.raw) return console.log(`${name}: ${where} is not locked`);
        const about = state.holder ? describeHolder(state.holder, state.hostNow, where).message : `${LOCK_FILE}: ${state.raw}`;
        if (broken) return console.log(`${name}: lock broken (${about})`);
        console.error(`${name}: not broken, the lock is live (expires in ${state.holder!.expires - state.hostNow} s): ${about}. ` +
          "Use --force only if you are sure that deploy is gone.");
        process.exitCode = 1;
      } finally {
        s.close();
      }
    });
}
