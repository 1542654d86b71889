/**
 * The real Pulumi CLI with a local file backend and the passphrase secrets provider, for the
 * scenario tests and the demo where a `pulumi` binary is on PATH (none can be installed here).
 */
import * as fs from "fs";
import * as path from "path";
import { spawnSync } from "child_process";
import { run, RunResult, commandExists } from "../../provider/util/run";
import { StackRef } from "./engine";

/** Whether a `pulumi` binary is on PATH (synchronously, for test skip options). */
export const PULUMI_CLI_PRESENT = spawnSync("sh", ["-c", "command -v pulumi"]).status === 0;

/** Why the real-CLI pass is skipped, or false when it runs. */
export const REAL_CLI_SKIP: string | false = PULUMI_CLI_PRESENT ? false : "real-CLI pass skipped: no `pulumi` binary on PATH";

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

/** `pulumi stack export --show-secrets` of the stack, resources by name. */
export async function pulumiExport(ref: StackRef): Promise<Record<string, { inputs: any; outputs: any }>> {
  const backend = path.join(path.dirname(ref.state), "pulumi-backend");
  const env = { ...process.env, PULUMI_BACKEND_URL: `file://${backend}`, PULUMI_SKIP_UPDATE_CHECK: "1" };
  const r = await run(["pulumi", "stack", "export", "--show-secrets", "--stack", ref.stack, "--cwd", ref.cwd], { env });
  const res = JSON.parse(r.stdout).deployment.resources ?? [];
  return Object.fromEntries(res.map((x: any) => [String(x.urn).split("::").pop(), x]));
}
