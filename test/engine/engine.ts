/**
 * The engine harness: plays the `pulumi` CLI for `preview | up | refresh | destroy` of a Node.js
 * program whose custom resources are dynamic resources. Pulumi's protocol on both sides: the
 * program runs in its own process through the SDK's runner (program.ts) against our
 * ResourceMonitor/Engine gRPC services (monitor.ts); resources go to the SDK's dynamic-provider
 * plugin over gRPC (plugin.ts); the steps follow pkg/resource/deploy (deployment.ts); the state is
 * a `pulumi stack export` (state.ts), locked while a run writes it (lock.ts).
 */
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { Deployment, Operation } from "./deployment";
import { MonitorServer } from "./monitor";
import { ProgramRun } from "./program";
import { ensureEncryptionSalt, loadProject } from "./project";
import { StackState } from "./state";
import { StackLock } from "./lock";
import { displayOutputs, summary } from "./display";
import { Json } from "./secrets";

export type { Operation } from "./deployment";

/** Options of one engine run (the CLI's flags). */
export interface EngineOptions {
  /** Program directory (holds Pulumi.yaml). */
  cwd: string;
  stack: string;
  /** State file (created when missing). */
  stateFile: string;
  /** `--target` URNs (a bare resource name is taken when it names one resource of the state). */
  targets?: string[];
  /** `--target-dependents`. */
  targetDependents?: boolean;
  /** `--continue-on-error`. */
  continueOnError?: boolean;
  /** `--parallel` (default as the CLI's). */
  parallel?: number;
  /** Output sink (default stdout). */
  out?: (line: string) => void;
  /** Where SIGINT comes from (default this process). */
  signals?: NodeJS.EventEmitter;
  /** Appends every Engine.Log call received to this file, one JSON object a line (`--engine-log`). */
  engineLogFile?: string;
}

/** What a run did. */
export interface EngineResult {
  ok: boolean;
  counts: Record<"create" | "update" | "replace" | "delete" | "same" | "refresh", number>;
  errors: string[];
  outputs: Record<string, unknown>;
}

/**
 * The CLI's default `--parallel` (pkg/cmd/pulumi/operations: 0 → unbounded is not used by the
 * Node language host; the engine's step executor defaults to `runtime.NumCPU() * 4` workers).
 */
export function defaultParallel(): number {
  return Math.max(1, os.availableParallelism?.() ?? os.cpus().length) * 4;
}

/** Runs one engine operation on the program in opts.cwd. */
export async function runEngine(op: Operation, opts: EngineOptions): Promise<EngineResult> {
  const out = opts.out ?? ((l: string) => process.stdout.write(l + "\n"));
  const project = loadProject(opts.cwd, opts.stack);
  const stateFile = path.resolve(opts.stateFile);
  // The CLI opens the stack's secrets manager before anything runs: a missing or wrong passphrase
  // stops the run here. A new stack gets its salt in the stack file, as `pulumi stack init` writes it.
  const secrets = ensureEncryptionSalt(project);
  const state = StackState.load(stateFile, secrets.state);
  const lock = op === "preview" ? undefined : StackLock.acquire(stateFile, project.stack);
  const parallel = opts.parallel ?? defaultParallel();
  const logFile = opts.engineLogFile ? path.resolve(opts.engineLogFile) : undefined;
  const d = new Deployment(op, project, state, {
    targets: opts.targets ?? [], targetDependents: !!opts.targetDependents, continueOnError: !!opts.continueOnError, parallel, out,
    onLog: logFile ? (c) => fs.appendFileSync(logFile, JSON.stringify(c) + "\n") : undefined,
  });
  const verb = { preview: "Previewing update", up: "Updating", refresh: "Refreshing", destroy: "Destroying" }[op];
  out(`${verb} (${project.stack}) of ${project.name} [engine harness: SDK program runner + dynamic-provider plugin over gRPC, state ${stateFile}]`);
  let outputs: Record<string, unknown> = {};
  const signals = opts.signals ?? process;
  let interrupts = 0;
  let program: ProgramRun | undefined;
  // ^C as the CLI takes it (pkg/cmd/pulumi: the cancellation scope's SIGINT loop): the first
  // cancels — no new step starts, running ones finish and are recorded; the second terminates —
  // the plugin's and the program's process groups are ended (plugin.go `kill`) and the run exits.
  // The plugin and the program are in their own process groups (child.ts), so a ^C at the
  // terminal reaches this process only.
  const onSigint = () => {
    interrupts++;
    if (interrupts === 1) {
      out("^C received; cancelling. If you would like to terminate immediately, press ^C again.");
      d.interrupt();
    } else if (interrupts === 2) {
      out("^C received; terminating");
      void Promise.all([program?.kill(), d.kill()]).catch(() => undefined).finally(() => {
        lock?.release();
        process.exit(255);
      });
    }
  };
  // A failed step or a first ^C cancels the run: once running steps finish, the program is ended
  // (the engine releases the language host while its registrations wait).
  d.onCancel = () => void d.settle().then(() => program?.cancel());
  signals.on("SIGINT", onSigint);
  // The engine's gRPC server: ResourceMonitor for the program, Engine (Log) for the program and
  // the plugin alike (the plugin host's server, pkg/host/host_server.go), for every operation.
  const monitor = await MonitorServer.start(d);
  d.engineAddress = monitor.address;
  try {
    if (op === "preview" || op === "up") {
      program = ProgramRun.start(project, {
        address: monitor.address, dryRun: op === "preview", parallel,
        out: (l) => out(l),
      });
      const res = await program.done;
      await d.settle();
      const stackUrn = `urn:pulumi:${project.stack}::${project.name}::pulumi:pulumi:Stack::${project.name}-${project.stack}`;
      if (res.error && !d.cancelled) d.fail(stackUrn, res.error);
      else if (res.bail && !d.cancelled) d.fail(stackUrn, "the program failed (its error is shown above)");
      if (d.result.ok && !d.cancelled) await d.deleteUndeclared();
      await d.settle();
      outputs = displayOutputs(d.stackOutputs as Record<string, Json>);
      if (!d.preview) state.reorder(d.registered);
    } else if (op === "refresh") {
      await d.refresh();
    } else {
      await d.destroy();
    }
    await d.settle();
  } finally {
    signals.off("SIGINT", onSigint);
    await program?.kill();
    await d.close();
    monitor.stop();
    lock?.release();
  }
  if (!d.result.ok && !d.cancelled?.startsWith("interrupted")) out(`error: ${op === "preview" ? "preview" : op === "refresh" ? "refresh" : op === "destroy" ? "destroy" : "update"} failed`);
  else if (d.cancelled === "interrupted") out(`error: ${op} canceled`);
  for (const l of d.diagnostics()) out(l);
  for (const l of summary(d.result.counts, op === "preview", outputs)) out(l);
  if (!d.result.ok) out(`${d.result.errors.length} error(s)`);
  return { ok: d.result.ok, counts: d.result.counts, errors: d.result.errors, outputs };
}
