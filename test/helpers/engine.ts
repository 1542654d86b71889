/** Runs the engine harness CLI (a child process per run, as `pulumi up` is a process per run). */
import * as fs from "fs";
import * as path from "path";
import { run, RunResult } from "../../provider/util/run";
import { ROOT } from "./env";

const CLI = path.join(ROOT, "dist/test/engine/cli.js");

/** Arguments shared by a scenario's runs. */
export interface StackRef { cwd: string; stack: string; state: string }

/** `npm run engine -- OP --cwd … --stack … --state …`; resolves with the output, never rejects on exit code. */
export function engine(op: "preview" | "up" | "refresh" | "destroy", s: StackRef, extra: string[] = [], env?: NodeJS.ProcessEnv): Promise<RunResult> {
  return run([process.execPath, CLI, op, "--cwd", s.cwd, "--stack", s.stack, "--state", s.state, ...extra], { allowFailure: true, timeoutMs: 600_000, ...(env ? { env } : {}) });
}

/**
 * The state file's resources keyed by name, without the engine's own (the Stack, default providers).
 * A Network's children are keyed as the network calls them (`heron`, `heron/db`, `heron/channel`:
 * their `name` / `resource` inputs), not by their resource names (`<network>-heron-db`); their
 * URNs are in `.urn`.
 */
export function stateResources(file: string): Record<string, { urn: string; id?: string; type: string; inputs: any; outputs: any; dependencies: string[]; initErrors?: string[] }> {
  if (!fs.existsSync(file)) return {};
  const data = JSON.parse(fs.readFileSync(file, "utf8"));
  const keyOf = (r: any) => !r.urn.includes("pulumi-nixos:index:Network$") ? r.urn.split("::").slice(3).join("::")
    : r.inputs?.kind === "machine" ? r.inputs.name : r.inputs?.resource ?? r.urn.split("::").slice(3).join("::");
  return Object.fromEntries(data.deployment.resources.filter((r: any) => r.type !== "pulumi:pulumi:Stack" && !r.type.startsWith("pulumi:providers:"))
    .map((r: any) => [keyOf(r), r]));
}

/** Fails with the run's output when it did not exit as expected. */
export function expectExit(r: RunResult, code: number, what: string): void {
  if (r.code !== code) throw new Error(`${what}: exit ${r.code}, expected ${code}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`);
}
