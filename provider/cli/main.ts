import { Command } from "commander";

/** Runs the pulumi-nixos command line. Subcommand groups load their code only when used. */
export async function main(argv: string[]): Promise<void> {
  const program = new Command("pulumi-nixos")
    .description("Deploy NixOS fleets with Pulumi: fleet commands, channel pins and the test lab.")
    .showHelpAfterError();
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  require("./fleet").registerFleetCommands(program);
  require("./pin").registerPinCommands(program);
  require("./unlock").registerUnlockCommand(program);
  require("./import-nixops").registerImportNixopsCommand(program);
  require("../lab/cli").registerLabCommands(program);
  await program.parseAsync(argv);
}
