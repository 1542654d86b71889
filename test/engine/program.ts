/**
 * Runs a Pulumi program the way the CLI's Node.js language host does
 * (sdk/nodejs/cmd/pulumi-language-nodejs/main.go: constructArguments, constructConfig, execRuntime):
 * `node [nodeargs] <@pulumi/pulumi/cmd/run> --monitor A --engine A --project P --root-directory R
 * --stack S --pwd PWD [--dry-run] --parallel N <entry>`, with PULUMI_CONFIG (keys as
 * `ns:config:name`), PULUMI_CONFIG_SECRET_KEYS and PULUMI_NODEJS_TYPESCRIPT/TSCONFIG_PATH in its
 * environment. TypeScript, type checking and the entry point are the SDK runner's own business.
 */
import * as readline from "readline";
import { ChildProcess } from "child_process";
import { ProjectInfo } from "./project";
import { endGroup, spawnChild } from "./child";

/** The language host's exit code for "the program already told the user" (nodeJSProcessExitedAfterShowingUserActionableMessage). */
const BAIL = 32;

/** How a program run ended, as the language host reports it to the engine. */
export interface ProgramResult {
  /** An error for the engine to show, or undefined. */
  error?: string;
  /** The program already reported its error (exit 32): no further message. */
  bail: boolean;
}

/** The SDK's program runner of the @pulumi/pulumi the program resolves (as locateModule does). */
function runPath(pwd: string): string {
  return require.resolve("@pulumi/pulumi/cmd/run", { paths: [pwd] });
}

/** Config as constructConfig passes it: `<namespace>:config:<name>` keys. */
function legacyConfig(config: Record<string, string>): string {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(config)) {
    const i = k.indexOf(":");
    out[`${k.slice(0, i)}:config:${k.slice(i + 1)}`] = v;
  }
  return JSON.stringify(out);
}

/** One program process. */
export class ProgramRun {
  private constructor(private readonly child: ChildProcess, readonly done: Promise<ProgramResult>) {}

  /** Starts the program against the monitor/engine at `address`; its output goes to `out` line by line. */
  static start(p: ProjectInfo, o: { address: string; dryRun: boolean; parallel: number; out: (line: string, stream: "stdout" | "stderr") => void }): ProgramRun {
    let run: string;
    try {
      run = runPath(p.pwd);
    } catch {
      throw new Error(`cannot find @pulumi/pulumi from ${p.pwd}: run npm install in the program's directory`);
    }
    const args = [...p.nodeargs, run, "--monitor", o.address, "--engine", o.address, "--project", p.name,
      "--root-directory", p.dir, "--stack", p.stack, "--pwd", p.pwd, ...(o.dryRun ? ["--dry-run"] : []),
      "--parallel", String(o.parallel), p.entry];
    const env: NodeJS.ProcessEnv = { ...process.env, PULUMI_CONFIG: legacyConfig(p.config), PULUMI_CONFIG_SECRET_KEYS: JSON.stringify(p.secretKeys) };
    if (p.typescript) env.PULUMI_NODEJS_TYPESCRIPT = "true";
    if (p.tsconfig) env.PULUMI_NODEJS_TSCONFIG_PATH = p.tsconfig;
    const child = spawnChild(process.execPath, args, { cwd: p.pwd, env });
    readline.createInterface({ input: child.stdout! }).on("line", (l) => o.out(l, "stdout"));
    readline.createInterface({ input: child.stderr! }).on("line", (l) => o.out(l, "stderr"));
    const done = new Promise<ProgramResult>((resolve) => {
      child.once("error", (e) => resolve({ bail: false, error: `Problem executing program (could not run language executor): ${e.message}` }));
      child.once("exit", (code, signal) => {
        if (code === 0) resolve({ bail: false });
        else if (code === BAIL) resolve({ bail: true });
        else resolve({ bail: false, error: `Program exited with non-zero exit code: ${code ?? signal}` });
      });
    });
    return new ProgramRun(child, done);
  }

  /**
   * Cancels the program as the language host does (SIGINT, then SIGKILL after 5 s: cmd.WaitDelay),
   * to its whole process group: what the program started (nix evaluations) goes with it, as the
   * language host's group goes when the engine closes it (plugin.go `kill`).
   */
  async cancel(): Promise<void> {
    await endGroup(this.child, 5000);
    await this.done;
  }

  /** Ends the program's process group at once (a second ^C), or what is left of it after the run. */
  kill(): Promise<void> {
    return endGroup(this.child, 0);
  }
}
