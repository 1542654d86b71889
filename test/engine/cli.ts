/**
 * `npm run engine -- <preview|up|refresh|destroy> --cwd DIR --stack NAME --state FILE [--target NAME]...`
 * and `npm run engine -- config set KEY VALUE [--secret] --cwd DIR --stack NAME`.
 */
import { Command } from "commander";
import { runEngine, Operation } from "./engine";
import * as fs from "fs";
import { loadProject, setStackConfig } from "./project";
import { StackLock } from "./lock";

const program = new Command("engine").description("run a Pulumi program as the Pulumi engine would, without the CLI");
for (const op of ["preview", "up", "refresh", "destroy"] as Operation[]) {
  program.command(op)
    .requiredOption("--cwd <dir>", "program directory (Pulumi.yaml)")
    .requiredOption("--stack <name>", "stack name (config from Pulumi.<stack>.yaml)")
    .requiredOption("--state <file>", "state file (JSON, shaped like `pulumi stack export`)")
    .option("--target <urn...>", "operate only on these resources (URNs; a bare name is taken if it names one resource)", [])
    .option("--target-dependents", "also operate on resources that depend on a target")
    .option("--continue-on-error", "a failed step does not cancel the others")
    .option("--parallel <n>", "steps at once (default: 4 x CPUs, as the CLI)")
    .option("--yes", "accepted for symmetry with pulumi; the harness never prompts")
    .option("--engine-log <file>", "append every Engine.Log call received (JSON lines: severity, urn, message, ephemeral) to FILE")
    .action(async (o) => {
      const r = await runEngine(op, {
        cwd: o.cwd, stack: o.stack, stateFile: o.state, targets: o.target, targetDependents: !!o.targetDependents,
        continueOnError: !!o.continueOnError, parallel: o.parallel ? Number(o.parallel) : undefined, engineLogFile: o.engineLog,
      });
      process.exitCode = r.ok ? 0 : 1;
    });
}
program.command("cancel").description("remove the stack lock of a run that died (pulumi cancel)")
  .requiredOption("--state <file>", "state file")
  .action((o) => { fs.rmSync(StackLock.fileOf(o.state), { force: true }); });
program.command("config").command("set <key> <value>")
  .requiredOption("--cwd <dir>", "program directory").requiredOption("--stack <name>", "stack name")
  .option("--secret", "encrypt with the passphrase (PULUMI_CONFIG_PASSPHRASE)")
  .action((key: string, value: string, o) => {
    const p = loadProject(o.cwd, o.stack);
    setStackConfig(p, key, value, !!o.secret);
  });

program.parseAsync(process.argv).then(
  // The program may leave handles (timers, sockets) open; the run is over.
  () => process.exit(process.exitCode ?? 0),
  (e) => { console.error(`error: ${e instanceof Error ? e.message : e}`); process.exit(1); },
);
