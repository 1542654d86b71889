/**
 * The command line's exit codes and usage errors, the same for every command:
 *   0  everything asked for was done
 *   1  some host (or the operation on it) failed; the others' results are printed
 *   2  usage: a bad option or argument, an unknown machine, a selection that matches nothing
 * (`ssh MACHINE -- CMD` exits with CMD's own code.)
 */
import { Command } from "commander";

export const EXIT_OK = 0;
export const EXIT_HOST_FAILED = 1;
export const EXIT_USAGE = 2;

/** A mistake in how the command was called (exit 2). */
export class UsageError extends Error {}

/** What the user asked for, in the options' own words: `--include heron --tag db`. */
export function describeSelection(o: { include?: string[]; exclude?: string[]; tag?: string[] }): string {
  const parts = [["--include", o.include], ["--exclude", o.exclude], ["--tag", o.tag]] as const;
  const asked = parts.filter(([, v]) => v?.length).map(([k, v]) => `${k} ${v!.join(" ")}`);
  return asked.length ? asked.join(" ") : "(no selection: every machine)";
}

/** "no machine matches --tag db (machines: heron [web], talon [web])". */
export function noMatch(o: { include?: string[]; exclude?: string[]; tag?: string[] }, machines: { name: string; tags?: string[] }[]): UsageError {
  const list = machines.map((m) => (m.tags?.length ? `${m.name} [${m.tags.join(", ")}]` : m.name)).join(", ");
  return new UsageError(`no machine matches ${describeSelection(o)} (machines: ${list || "none"})`);
}

/** Adds an `Examples:` section to a command's --help. */
export function withExamples(cmd: Command, ...examples: string[]): Command {
  return cmd.addHelpText("after", `\nExamples:\n${examples.map((e) => `  $ ${e}`).join("\n")}\n\nExit codes: 0 ok, 1 some host failed, 2 usage error.`);
}
