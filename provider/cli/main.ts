import { Command, CommanderError } from "commander";
import { EXIT_USAGE, UsageError } from "./usage";

/** Runs the pulumi-nixos command line. Subcommand groups load their code only when used. */
export async function main(argv: string[]): Promise<void> {
  const program = new Command("pulumi-nixos")
    .description("Deploy NixOS fleets with Pulumi: fleet commands, channel pins and the test lab.")
    .showHelpAfterError()
    .addHelpText("after", "\nExit codes (every command): 0 ok, 1 some host failed, 2 usage error (bad option or argument, unknown machine, nothing selected).")
    // Commander exits 1 on a usage error; ours is 2 (1 means a host failed). Subcommands inherit this.
    .exitOverride();
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  require("./fleet").registerFleetCommands(program);
  require("./pin").registerPinCommands(program);
  require("./unlock").registerUnlockCommand(program);
  require("./import-nixops").registerImportNixopsCommand(program);
  require("../lab/cli").registerLabCommands(program);
  try {
    await program.parseAsync(argv);
  } catch (e) {
    // Commander has printed its message (or the help) already.
    if (e instanceof CommanderError) { process.exitCode = e.exitCode === 0 ? 0 : EXIT_USAGE; return; }
    if (e instanceof UsageError) { console.error(`pulumi-nixos: ${e.message}`); process.exitCode = EXIT_USAGE; return; }
    throw e;
  }
}
