/**
 * `npm run engine -- <preview|up|refresh|destroy> --cwd DIR --stack NAME --state FILE [--target NAME]...`
 * and `npm run engine -- config set KEY VALUE [--secret] --cwd DIR --stack NAME`.
 */
import { Command } from "commander";
import { runEngine, Operation } from "./engine";
import { loadProject, setStackConfig } from "./project";

const program = new Command("engine").description("run a Pulumi program as the Pulumi engine would, without the CLI");
for (const op of ["preview", "up", "refresh", "destroy"] as Operation[]) {
  program.command(op)
    .requiredOption("--cwd <dir>", "program directory (Pulumi.yaml)")
    .requiredOption("--stack <name>", "stack name (config from Pulumi.<stack>.yaml)")
    .requiredOption("--state <file>", "state file (JSON, shaped like `pulumi stack export`)")
    .option("--target <urnOrName...>", "operate only on these resources", [])
    .option("--parallel <n>", "steps at once", "16")
    .option("--yes", "accepted for symmetry with pulumi; the harness never prompts")
    .action(async (o) => {
      const r = await runEngine(op, { cwd: o.cwd, stack: o.stack, stateFile: o.state, targets: o.target, parallel: Number(o.parallel) });
      process.exitCode = r.ok ? 0 : 1;
    });
}
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
  (e) => { console.error(`engine: ${e instanceof Error ? e.message : e}`); process.exit(1); },
);
