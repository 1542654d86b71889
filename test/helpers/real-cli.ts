/**
 * The real Pulumi CLI with a local file backend and the passphrase secrets provider, for the
 * scenario tests and the demo where a `pulumi` binary is on PATH (none can be installed here).
 */
import * as fs from "fs";
import * as path from "path";
import { run, RunResult, commandExists } from "../../provider/util/run";
import { StackRef } from "./engine";

/** Whether a `pulumi` binary is on PATH. */
export function hasPulumiCli(): Promise<boolean> {
  return commandExists("pulumi");
}

/** Runs `pulumi` for a stack of the program in ref.cwd, with a file backend beside the state file. */
export async function pulumiCli(op: "preview" | "up" | "refresh" | "destroy", ref: StackRef, extra: string[] = []): Promise<RunResult> {
  const backend = path.join(path.dirname(ref.state), "pulumi-backend");
  fs.mkdirSync(backend, { recursive: true });
  const env = { ...process.env, PULUMI_BACKEND_URL: `file://${backend}`, PULUMI_SKIP_UPDATE_CHECK: "1", PULUMI_CONFIG_PASSPHRASE: process.env.PULUMI_CONFIG_PASSPHRASE ?? "" };
  const exists = await run(["pulumi", "stack", "select", ref.stack, "--cwd", ref.cwd], { env, allowFailure: true });
  if (exists.code !== 0) await run(["pulumi", "stack", "init", ref.stack, "--secrets-provider", "passphrase", "--cwd", ref.cwd], { env });
  const args = op === "preview" ? ["preview", "--diff"] : [op, "--yes", "--skip-preview", ...(op === "up" ? ["--diff"] : [])];
  return run(["pulumi", ...args, "--stack", ref.stack, "--cwd", ref.cwd, "--non-interactive", ...extra], { env, allowFailure: true, timeoutMs: 600_000 });
}
