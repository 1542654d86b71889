/**
 * The engine's semantics for a program whose custom resources are dynamic resources, as
 * pkg/resource/deploy does them (step_generator.go, step_executor.go, step.go,
 * deployment_executor.go): each registration becomes a step — same, create, update, replace
 * (create-before-delete unless asked otherwise), skipped when not targeted — run on the SDK's
 * dynamic-provider plugin; after the program, deletions of what it no longer declares and of
 * replaced resources; refresh and destroy without the program. The state is written after every
 * step, as the engine's journal does.
 */
import { randomUUID } from "crypto";
import { DynamicProviderPlugin, ProviderError } from "./plugin";
import { ProjectInfo } from "./project";
import { Json, annotate, containsSecret, secret, strip } from "./secrets";
import { StackState, StateResource } from "./state";
import { Registration, MonitorHost } from "./monitor";
import { StepKind, SYMBOL, changedKeys, diffDetail, logLine, nameOf, typeOf } from "./display";
import { Semaphore } from "../../provider/util/semaphore";

/** The four engine operations. */
export type Operation = "preview" | "up" | "refresh" | "destroy";

export const DYNAMIC_TYPE = "pulumi-nodejs:dynamic:Resource";
/**
 * A type the dynamic-provider plugin serves: its package (the token's first part) is `pulumi-nodejs`,
 * whatever the module and type (`pulumi-nodejs:dynamic/nixos:Machine`); the engine picks the default
 * provider by the token's package (pkg/resource/deploy/source_eval.go, resmon.RegisterResource:
 * parseProviderRequest(t.Package(), …) for a custom resource without an explicit provider).
 */
export const isDynamicType = (t: string): boolean => t === DYNAMIC_TYPE || t.startsWith("pulumi-nodejs:dynamic/");
const STACK_TYPE = "pulumi:pulumi:Stack";
const PROVIDER_TYPE = "pulumi:providers:pulumi-nodejs";

/** Options of a deployment. */
export interface DeploymentOptions {
  /** URNs or resource names to operate on; empty = everything. */
  targets: string[];
  /** `--target-dependents`: also operate on what depends on a target. */
  targetDependents: boolean;
  /** `--continue-on-error`: a failed step does not cancel the others. */
  continueOnError: boolean;
  /** Steps at once. */
  parallel: number;
  out: (line: string) => void;
  /** Every Engine.Log call received, as it arrives (the harness's `--engine-log FILE`). */
  onLog?: (call: LogCall) => void;
}

/** One Engine.Log call as the engine received it. */
export interface LogCall { severity: number; message: string; urn: string; ephemeral: boolean }

/** What a deployment did. */
export interface DeploymentResult {
  ok: boolean;
  counts: Record<StepKind, number>;
  errors: string[];
}

/** A step failure the program sees as the registration's error. */
class StepError extends Error {}

/** One engine run over a stack's state. */
export class Deployment implements MonitorHost {
  readonly result: DeploymentResult = { ok: true, counts: { create: 0, update: 0, replace: 0, delete: 0, same: 0, refresh: 0 }, errors: [] };
  /** URNs the program registered, in order (the new state's order). */
  readonly registered: string[] = [];
  private readonly registeredSet = new Set<string>();
  /**
   * Old URNs a registration claimed through an alias: not deletes, also in a preview, where the old
   * entry keeps its URN (step_generator.go: getOldResource records sg.aliased; GenerateDeletes skips
   * what isOperatedOn finds operated on under its new URN).
   */
  private readonly aliasedOld = new Set<string>();
  /** New resources not created because they were not targeted (step_generator's skippedCreates). */
  private readonly skippedCreates = new Set<string>();
  private readonly limit: Semaphore;
  private readonly inFlight = new Set<Promise<unknown>>();
  private plugin?: Promise<DynamicProviderPlugin>;
  private providerRef?: Promise<string>;
  /** Set when no new step may start: a step failed (without --continue-on-error) or the user interrupted. */
  cancelled?: string;
  private stackUrn = "";
  private readonly targets: Set<string>;
  /** The engine's address given to the plugin (the server of Engine.Log; set by runEngine). */
  engineAddress = "";
  /** Lasting (non-ephemeral) diagnostics by URN ("" = the stack), for the closing "Diagnostics:". */
  private readonly diags = new Map<string, string[]>();

  constructor(readonly op: Operation, readonly project: ProjectInfo, readonly state: StackState, private readonly opts: DeploymentOptions) {
    this.limit = new Semaphore(opts.parallel);
    this.targets = new Set(opts.targets.map((t) => this.resolveTarget(t)));
  }

  get preview(): boolean { return this.op === "preview"; }

  private out(line: string): void { this.opts.out(line); }

  /** A `--target` as a URN: a URN as given, a bare name matched against the state's resources. */
  private resolveTarget(t: string): string {
    if (t.startsWith("urn:pulumi:")) return t;
    const hits = this.state.all().filter((r) => nameOf(r.urn) === t);
    if (hits.length === 1) return hits[0].urn;
    return t;
  }

  private isTargeted(urn: string): boolean {
    return this.targets.size === 0 || this.targets.has(urn) || this.targets.has(nameOf(urn));
  }

  // ---- the plugin and the default provider -------------------------------------------------------

  /** The default provider's inputs: the whole stack config, namespaces kept, secure values as secrets (target.go GetPackageConfig). */
  private providerInputs(): Record<string, Json> {
    const ins: Record<string, Json> = {};
    for (const [k, v] of Object.entries(this.project.config)) {
      ins[k] = this.project.secretKeys.includes(k) ? secret(v) : v;
    }
    return ins;
  }

  /** The plugin process, started on first use and configured with the provider's inputs. */
  provider(): Promise<DynamicProviderPlugin> {
    this.plugin ??= (async () => {
      const p = await DynamicProviderPlugin.start({
        cwd: this.project.pwd, project: this.project.name, stack: this.project.stack, engine: this.engineAddress || "127.0.0.1:1",
        log: (l) => this.pluginOutput(l),
      });
      await p.configure(this.providerInputs());
      return p;
    })();
    return this.plugin;
  }

  /**
   * The default `pulumi:providers:pulumi-nodejs` resource (`urn::id`), registered on first use
   * as the engine's defaultProviders does: its inputs are the stack config; a config change is
   * an update of it (recorded, no display: the CLI hides default providers).
   */
  private defaultProvider(): Promise<string> {
    this.providerRef ??= (async () => {
      const urn = `urn:pulumi:${this.project.stack}::${this.project.name}::${PROVIDER_TYPE}::default`;
      const old = this.state.get(urn);
      const inputs = this.providerInputs();
      const id = old?.id ?? randomUUID();
      this.markRegistered(urn);
      if (!this.preview && (!old || changedKeys(old.inputs, inputs).length || !sameSecrets(old.inputs, inputs))) {
        this.state.set({ urn, custom: true, type: PROVIDER_TYPE, id, inputs, outputs: inputs, dependencies: [] });
      }
      return `${urn}::${id}`;
    })();
    return this.providerRef;
  }

  async close(): Promise<void> {
    if (this.plugin) await (await this.plugin.catch(() => undefined))?.stop();
  }

  // ---- bookkeeping -----------------------------------------------------------------------------

  private markRegistered(urn: string): void {
    if (!this.registeredSet.has(urn)) { this.registeredSet.add(urn); this.registered.push(urn); }
  }

  report(kind: StepKind, urn: string, type: string, detail = ""): void {
    // The CLI does not show default providers' steps.
    if (type.startsWith("pulumi:providers:")) return;
    this.result.counts[kind]++;
    if (kind !== "same") this.out(` ${SYMBOL[kind]} ${type} ${nameOf(urn)} ${detail}`.trimEnd());
  }

  /** Records a failed step; unless --continue-on-error, no new step starts (step_executor's cancelDueToError). */
  fail(urn: string, message: string): void {
    this.result.ok = false;
    const line = `error: ${nameOf(urn)} (${urn}): ${message}`;
    this.result.errors.push(line);
    this.out(line);
    if (!this.opts.continueOnError) this.cancel("an earlier step failed");
  }

  /** Stops starting steps; running ones finish and are recorded. */
  cancel(why: string): void {
    if (this.cancelled) return;
    this.cancelled = why;
    this.onCancel?.();
  }

  /** Called once, when the run is cancelled (the engine then ends the program after running steps). */
  onCancel?: () => void;

  /** The user interrupted (first ^C): running steps finish, the run ends "update canceled". */
  interrupt(): void {
    this.cancel("interrupted");
    this.result.ok = false;
    this.result.errors.push("error: update canceled");
  }

  /**
   * Runs one step within the parallelism bound, tracked so the run can wait for it. A failure is
   * recorded (and cancels the rest) before the slot frees, so no queued step slips through.
   */
  private track<T>(fn: () => Promise<T>, onError: (e: unknown) => void): Promise<T> {
    const p = this.limit.run(async () => {
      if (this.cancelled) throw new StepError(`not started: the update was cancelled (${this.cancelled})`);
      try {
        return await fn();
      } catch (e) {
        onError(e);
        throw e;
      }
    });
    const tracked = p.catch(() => undefined);
    this.inFlight.add(tracked);
    void tracked.then(() => this.inFlight.delete(tracked));
    return p;
  }

  /** Waits for every started step to finish. */
  async settle(): Promise<void> {
    while (this.inFlight.size) await Promise.all([...this.inFlight]);
  }

  // ---- the monitor's calls ---------------------------------------------------------------------

  /** URN as source_eval forms it: the parent's type chain unless the parent is the Stack. */
  private urnOf(r: Registration): string {
    const parentType = r.parent ? r.parent.split("::")[2] : "";
    const qualified = parentType && parentType !== STACK_TYPE ? `${parentType}$${r.type}` : r.type;
    return `urn:pulumi:${this.project.stack}::${this.project.name}::${qualified}::${r.name}`;
  }

  /**
   * Engine.Log, rendered as the CLI's display does (pkg/backend/display): every message is the
   * resource's latest status, shown as it arrives (`name: message`; the CLI shows it in the
   * resource's row); lasting ones (not ephemeral) are listed again under their resource in the
   * closing "Diagnostics:" (progress.go `printDiagnostics`); debug only with --debug.
   */
  log(severity: number, message: string, urn: string, ephemeral: boolean): void {
    this.opts.onLog?.({ severity, message, urn, ephemeral });
    if (severity === 0) return; // debug: the CLI shows it only with --debug
    const line = logLine(severity, message, urn);
    this.out(line);
    if (!ephemeral) this.keepDiag(urn, severity === 1 ? message : `${logLine(severity, message, "")}`);
  }

  /**
   * A line of the plugin's stdout/stderr: the engine makes it an info diagnostic of no resource
   * (plugin.go `runtrace`: `diag.StreamMessage("", …): no URN`), which the display puts on the stack.
   */
  private pluginOutput(line: string): void {
    if (!line.trim()) return;
    this.out(line);
    this.keepDiag("", line);
  }

  private keepDiag(urn: string, line: string): void {
    const key = urn === this.stackUrn ? "" : urn;
    const list = this.diags.get(key) ?? [];
    list.push(line);
    this.diags.set(key, list);
  }

  /** The closing "Diagnostics:" section: per resource (the stack first), `  TYPE (NAME):` then its messages. */
  diagnostics(): string[] {
    if (!this.diags.size) return [];
    const stack = `urn:pulumi:${this.project.stack}::${this.project.name}::${STACK_TYPE}::${this.project.name}-${this.project.stack}`;
    const out = ["Diagnostics:"];
    for (const [urn, lines] of [...this.diags].sort(([a], [b]) => (a === "" ? -1 : b === "" ? 1 : 0))) {
      const u = urn || stack;
      out.push(`  ${typeOf(u)} (${nameOf(u)}):`);
      for (const l of lines) for (const part of l.split("\n")) out.push(`    ${part}`.trimEnd());
      out.push("");
    }
    return out;
  }

  /** A second ^C: the plugin's process group ends now (the program's is the caller's). */
  async kill(): Promise<void> {
    if (this.plugin) await (await this.plugin.catch(() => undefined))?.stop();
  }

  async waitForShutdown(): Promise<void> {
    await this.settle();
  }

  async registerResourceOutputs(urn: string, outputs: Record<string, Json>): Promise<void> {
    if (urn === this.stackUrn) this.stackOutputs = outputs;
    const old = this.state.get(urn);
    if (old && !this.preview && this.registeredSet.has(urn)) this.state.set({ ...old, outputs });
  }

  /** The Stack's outputs as last registered. */
  stackOutputs: Record<string, Json> = {};

  async registerResource(r: Registration): Promise<{ urn: string; id?: string; object: Record<string, Json>; failed?: boolean }> {
    const urn = this.urnOf(r);
    if (this.registeredSet.has(urn)) throw new StepError(`Duplicate resource URN '${urn}'; try giving it a unique name`);
    this.markRegistered(urn);
    if (r.type === STACK_TYPE) this.stackUrn = urn;
    try {
      return await this.track(async () => (r.custom ? this.customStep(r, urn) : this.componentStep(r, urn)),
        (e) => this.fail(urn, e instanceof Error ? e.message : String(e)));
    } catch {
      // With --continue-on-error the SDK learns the result (supportsResultReporting); otherwise the
      // engine never answers: it cancels, waits for running steps and ends the program.
      if (this.opts.continueOnError) return { urn, object: {}, failed: true };
      return new Promise(() => undefined);
    }
  }

  /** The old state of a registration: by URN, else by one of its aliases. */
  private oldOf(urn: string, r: Registration): StateResource | undefined {
    const direct = this.state.get(urn);
    if (direct) return direct;
    for (const a of r.aliasURNs) {
      const old = this.state.get(a);
      if (old && !this.registeredSet.has(a)) { this.aliasedOld.add(a); return old; }
    }
    return undefined;
  }

  /** validateSteps: a resource whose parent or dependency was a skipped create cannot be created. */
  private checkUntargetedCreates(r: Registration, urn: string): void {
    for (const d of [...(r.parent ? [r.parent] : []), ...r.dependencies, ...Object.values(r.propertyDependencies).flat()]) {
      if (this.skippedCreates.has(d)) throw new StepError(`Resource '${urn}' depends on '${d}' which was was not specified in --target list.`);
    }
  }

  private componentStep(r: Registration, urn: string): { urn: string; object: Record<string, Json> } {
    const old = this.oldOf(urn, r);
    if (!this.isTargeted(urn) && r.type !== STACK_TYPE) {
      if (!old) this.skippedCreates.add(urn);
      else this.keepAlias(old, urn);
      return { urn, object: {} };
    }
    this.checkUntargetedCreates(r, urn);
    const kind: StepKind = old ? "same" : "create";
    if (!this.preview) {
      this.replaceEntry(old, {
        urn, custom: false, type: r.type, inputs: r.object, outputs: old?.outputs ?? {}, parent: r.parent,
        dependencies: r.dependencies, ...optionalFields(r), ...(old?.created ? { created: old.created } : { created: now() }),
      });
    }
    this.report(kind, urn, r.type, kind === "create" ? (this.preview ? "create" : "created") : "");
    return { urn, object: {} };
  }

  /** Moves an aliased old entry to its new URN (the engine rewrites the URN in the new state). */
  private keepAlias(old: StateResource, urn: string): void {
    // The snapshot rewrites references to the new URN and keeps no alias list.
    if (old.urn !== urn && !this.preview) this.replaceEntry(old, { ...old, urn });
  }

  /** Puts `next` where `old` was (URN change through an alias), or records it. */
  private replaceEntry(old: StateResource | undefined, next: StateResource): void {
    if (old && old.urn !== next.urn) {
      this.state.remove(old);
      this.state.renameReferences(old.urn, next.urn);
    }
    this.state.set(next);
  }

  private async customStep(r: Registration, urn: string): Promise<{ urn: string; id?: string; object: Record<string, Json> }> {
    if (!isDynamicType(r.type)) {
      throw new StepError(`type ${r.type} needs its own provider plugin, which the engine harness cannot run (it runs dynamic resources only)`);
    }
    const old = this.oldOf(urn, r);
    if (!this.isTargeted(urn)) {
      // step_generator: an untargeted resource keeps its old state; an untargeted new one is not created.
      if (!old) {
        this.skippedCreates.add(urn);
        return { urn, object: r.object };
      }
      this.keepAlias(old, urn);
      return { urn, id: old.id, object: old.outputs };
    }
    this.checkUntargetedCreates(r, urn);
    const providerRef = await this.defaultProvider();
    const p = await this.provider();
    // ignoreChanges: the named inputs keep their old values before Check (processIgnoreChanges).
    const goal = old ? applyIgnoreChanges(r.object, old.inputs, r.ignoreChanges) : r.object;
    const checked = await p.check(urn, old ? strip(old.inputs) as Record<string, Json> : {}, strip(goal) as Record<string, Json>);
    if (checked.failures.length) {
      // As the CLI prints check failures (diag 2002/2003); the engine then bails: resource <urn> is invalid.
      const at = `${r.type} resource '${r.name}'`;
      throw new StepError(checked.failures.map((f) => f.property
        ? `${at}: property ${f.property} ${showValue(goal[f.property])}has a problem: ${f.reason}`
        : `${at} has a problem: ${f.reason}`).join("\n"));
    }
    // State keeps inputs with their secret markers.
    const inputs = annotate(checked.inputs, goal);
    const fields = { ...optionalFields(r), provider: providerRef };
    const newState = (id: string, outputs: Record<string, Json>, extra: Partial<StateResource> = {}): StateResource => ({
      urn, custom: true, type: r.type, id, inputs, outputs: annotate(outputs, inputs, r.additionalSecretOutputs),
      parent: r.parent, dependencies: r.dependencies, ...fields, created: old?.created ?? now(), modified: now(), ...extra,
    });

    if (!old) {
      if (this.preview) { this.report("create", urn, r.type, "create"); return { urn, object: inputs }; }
      return this.execute("create", urn, r.type, "", async () => {
        const created = await p.create(urn, checked.inputs);
        return newState(created.id, created.outputs);
      }, (partial) => newState(partial.id, partial.properties, { initErrors: partial.reasons }));
    }

    const d = await p.diff(old.id ?? "", urn, strip(old.outputs) as Record<string, Json>, checked.inputs, strip(old.inputs) as Record<string, Json>);
    const changed = changedKeys(old.inputs, inputs);
    // DIFF_UNKNOWN: the engine compares old and new inputs itself. A resource with init errors is always updated.
    const hasChanges = d.changes === 2 || (d.changes === 0 && changed.length > 0) || !!old.initErrors?.length;
    let replaces = d.replaces;
    // replaceOnChanges needs the changed keys: only the engine's own diff (DIFF_UNKNOWN) has them.
    if (r.replaceOnChanges.length && d.changes === 0) replaces = [...new Set([...replaces, ...changed.filter((k) => r.replaceOnChanges.includes(k) || r.replaceOnChanges.includes("*"))])];
    const kind: StepKind = !hasChanges ? "same" : replaces.length ? "replace" : "update";
    // The CLI shows the inputs that changed (the dynamic provider gives no detailed diff): an update
    // with unchanged inputs (a retry, drift found by refresh) shows no property.
    const detail = kind === "same" || !changed.length ? "" : diffDetail(old.inputs, inputs, replaces);

    if (kind === "same") {
      // A same step records the new goal (inputs, dependencies, options) with the old outputs.
      if (!this.preview) this.replaceEntry(old, { ...newState(old.id ?? "", strip(old.outputs) as Record<string, Json>), outputs: old.outputs, modified: old.modified });
      this.report("same", urn, r.type);
      return { urn, id: old.id, object: old.outputs };
    }
    if (kind === "replace" && old.protect) {
      throw new StepError(`unable to replace resource "${urn}"\nas it is currently marked for protection. To unprotect the resource, remove the \`protect\` flag from the resource in your Pulumi program and run \`pulumi up\``);
    }
    if (this.preview) {
      this.report(kind, urn, r.type, detail);
      // The dynamic provider cannot preview: the engine returns the inputs; every other output is unknown.
      return { urn, id: kind === "update" ? old.id : undefined, object: inputs };
    }
    if (kind === "update") {
      return this.execute("update", urn, r.type, detail, async () => {
        const outs = await p.update(old.id ?? "", urn, strip(old.outputs) as Record<string, Json>, checked.inputs, strip(old.inputs) as Record<string, Json>);
        this.replaceEntry(old, newState(old.id ?? "", outs));
        return this.state.get(urn)!;
      }, (partial) => newState(partial.id || old.id || "", partial.properties, { initErrors: partial.reasons }));
    }
    // Replace: delete-before-replace when the program asks (deleteBeforeReplace defined) or, failing that, the provider.
    const deleteFirst = r.deleteBeforeReplace ?? d.deleteBeforeReplace;
    return this.execute("replace", urn, r.type, detail, async () => {
      if (deleteFirst) {
        await this.providerDelete(old);
        this.state.remove(old);
      } else {
        // create-before-delete: the old resource waits in the state (delete: true) until the end of the run.
        this.state.markPendingDelete(old.urn);
      }
      const created = await p.create(urn, checked.inputs);
      return newState(created.id, created.outputs);
    }, (partial) => newState(partial.id, partial.properties, { initErrors: partial.reasons }));
  }

  /** Runs a create/update/replace, records the new state (also a partial one), and reports it. */
  private async execute(kind: "create" | "update" | "replace", urn: string, type: string, detail: string,
    run: () => Promise<StateResource>, partialState: (p: NonNullable<ProviderError["partial"]>) => StateResource): Promise<{ urn: string; id?: string; object: Record<string, Json> }> {
    const started = Date.now();
    this.out(` ${SYMBOL[kind]} ${type} ${nameOf(urn)} ${kind.replace(/e$/, "")}ing${detail ? " " + detail : ""}`);
    try {
      const res = await run();
      this.state.set(res);
      this.report(kind, urn, type, `${kind === "update" ? "updated" : kind === "replace" ? "replaced" : "created"} (${((Date.now() - started) / 1000).toFixed(1)}s)`);
      return { urn, id: res.id, object: res.outputs };
    } catch (e) {
      if (e instanceof ProviderError && e.partial) {
        // Created (or updated) but unhealthy: the state records it with its init errors, the step fails.
        this.state.set(partialState(e.partial));
        throw new StepError(`${e.message}${e.partial.reasons.length ? ": " + e.partial.reasons.join("; ") : ""}`);
      }
      throw e;
    }
  }

  /** The provider's Delete, unless the resource is retained on delete. */
  private async providerDelete(res: StateResource): Promise<void> {
    if (res.retainOnDelete || !res.custom || !isDynamicType(res.type)) return;
    const p = await this.provider();
    await p.delete(res.id ?? "", res.urn, strip(res.outputs) as Record<string, Json>, strip(res.inputs) as Record<string, Json>);
  }

  // ---- deletions -------------------------------------------------------------------------------

  /** One delete step: refuses protected resources, calls the provider, drops the state entry. */
  private async deleteOne(res: StateResource): Promise<void> {
    if (res.protect && !res.delete) {
      throw new StepError(`unable to delete resource "${res.urn}"\nas it is currently marked for protection. To unprotect the resource, either remove the \`protect\` flag from the resource in your Pulumi program and run \`pulumi up\`, or use the command:\n\`pulumi state unprotect '${res.urn}'\``);
    }
    if (this.preview) { this.report("delete", res.urn, res.type, "delete"); return; }
    await this.providerDelete(res);
    this.state.remove(res);
    this.report("delete", res.urn, res.type, res.retainOnDelete ? "deleted (retained: the provider was not asked to delete it)" : "deleted");
  }

  /**
   * Deletes resources, dependents first (parents, dependencies, property dependencies and the
   * provider count), independent ones at once. A failed delete keeps what it depends on.
   */
  async deleteAll(victims: StateResource[]): Promise<void> {
    const left = new Set(victims);
    while (left.size && !this.cancelled) {
      const needed = new Set<string>();
      for (const v of left) for (const d of edges(v)) needed.add(d);
      // A pending delete goes before the live resource of the same URN is considered.
      const wave = [...left].filter((v) => !needed.has(v.urn) || v.delete);
      if (!wave.length) throw new Error("dependency cycle in state");
      const results = await Promise.all(wave.map((v) => this.track(() => this.deleteOne(v),
        (e) => this.fail(v.urn, `deleting failed: ${e instanceof Error ? e.message : e}`)).then(() => true, () => false)));
      wave.forEach((v) => left.delete(v));
      if (results.includes(false)) {
        // What a failed delete depends on must stay (transitively).
        const keep = new Set<string>();
        const visit = (u: string) => {
          if (keep.has(u)) return;
          keep.add(u);
          for (const v of left) if (v.urn === u) edges(v).forEach(visit);
        };
        wave.filter((_, i) => !results[i]).flatMap(edges).forEach(visit);
        for (const v of [...left]) if (keep.has(v.urn)) left.delete(v);
      }
    }
  }

  /** The targets with everything depending on them or descending from them (getTargetDependents). */
  private targetDependents(all: StateResource[]): Set<string> {
    const chosen = new Set(all.filter((r) => this.isTargeted(r.urn)).map((r) => r.urn));
    for (let grew = true; grew;) {
      grew = false;
      for (const r of all) if (!chosen.has(r.urn) && edges(r).some((d) => chosen.has(d))) { chosen.add(r.urn); grew = true; }
    }
    return chosen;
  }

  /**
   * Deletes allowed under --target (GenerateDeletes): the targets' dependents and children go too,
   * but only with --target-dependents; otherwise each one not named is an error and nothing is deleted.
   */
  private async deleteTargeted(candidates: StateResource[]): Promise<void> {
    let victims = candidates;
    if (this.targets.size) {
      const allowed = this.targetDependents(this.state.all());
      victims = candidates.filter((r) => allowed.has(r.urn));
      const unnamed = victims.filter((r) => !this.isTargeted(r.urn) && !this.opts.targetDependents);
      if (unnamed.length) {
        for (const r of unnamed) {
          this.fail(r.urn, `Resource '${r.urn}' will be destroyed but was not specified in --target list.\nEither include resource in --target list or pass --target-dependents to proceed.`);
        }
        return;
      }
    }
    await this.deleteAll(victims);
  }

  /** After the program: resources it no longer declares and replaced ones waiting in the state (GenerateDeletes). */
  async deleteUndeclared(): Promise<void> {
    await this.deleteTargeted(this.state.all().filter((r) => r.delete || (!this.registeredSet.has(r.urn) && !this.aliasedOld.has(r.urn))));
  }

  /** `pulumi destroy` (the program does not run): every resource, or the targets (see deleteTargeted). */
  async destroy(): Promise<void> {
    for (const t of this.targets) {
      if (!this.state.all().some((r) => r.urn === t)) throw new Error(`no resource named '${t}' found`);
    }
    await this.deleteTargeted(this.state.all());
  }

  /** `pulumi refresh`: Read every custom resource; drift recorded, init errors cleared, gone ones dropped. */
  async refresh(): Promise<void> {
    const resources = this.state.all().filter((r) => r.custom && isDynamicType(r.type) && this.isTargeted(r.urn));
    await Promise.all(resources.map((r) => this.track(async () => {
      {
        const p = await this.provider();
        const got = await p.read(r.id ?? "", r.urn, strip(r.outputs) as Record<string, Json>, strip(r.inputs) as Record<string, Json>);
        if (!got.id) {
          if (!this.preview) this.state.remove(r);
          this.report("delete", r.urn, r.type, "deleted (gone on refresh)");
          return;
        }
        const outputs = annotate(got.outputs, r.outputs, r.additionalSecretOutputs);
        const drift = changedKeys(r.outputs, outputs);
        const { initErrors: _cleared, ...rest } = r;
        if (!this.preview) this.state.set({ ...rest, id: got.id, outputs, inputs: got.inputs ? annotate(got.inputs, r.inputs) : r.inputs, modified: drift.length ? now() : r.modified });
        if (drift.length) this.report("refresh", r.urn, r.type, `drift ${diffDetail(r.outputs, outputs, [])}`);
        else this.report("same", r.urn, r.type);
      }
    }, (e) => this.fail(r.urn, `refreshing failed: ${e instanceof Error ? e.message : e}`)).catch(() => undefined)));
  }

}

/** Edges a resource has to others in the state: parent, dependencies, property dependencies, provider. */
function edges(r: StateResource): string[] {
  const out = [...r.dependencies, ...(r.parent ? [r.parent] : []), ...Object.values(r.propertyDependencies ?? {}).flat()];
  if (r.provider) out.push(r.provider.split("::").slice(0, -1).join("::"));
  return out;
}

/** The options a registration records in state. */
function optionalFields(r: Registration): Partial<StateResource> {
  return {
    ...(r.protect ? { protect: true } : {}),
    ...(r.retainOnDelete ? { retainOnDelete: true } : {}),
    ...(Object.keys(r.propertyDependencies).length ? { propertyDependencies: r.propertyDependencies } : {}),
    ...(r.additionalSecretOutputs.length ? { additionalSecretOutputs: r.additionalSecretOutputs } : {}),
    ...(r.ignoreChanges.length ? { ignoreChanges: r.ignoreChanges } : {}),
    ...(r.replaceOnChanges.length ? { replaceOnChanges: r.replaceOnChanges } : {}),
  };
}

/** processIgnoreChanges: top-level and dotted paths keep the old input's value (or stay absent). */
export function applyIgnoreChanges(news: Record<string, Json>, olds: Record<string, Json>, paths: string[]): Record<string, Json> {
  if (!paths.length) return news;
  const out = JSON.parse(JSON.stringify(news)) as Record<string, Json>;
  for (const p of paths) {
    const keys = p.split(".");
    let o: any = olds;
    let n: any = out;
    for (let i = 0; i < keys.length - 1; i++) {
      o = o?.[keys[i]];
      if (n[keys[i]] === undefined || n[keys[i]] === null || typeof n[keys[i]] !== "object") {
        if (o === undefined) { n = undefined; break; }
        n[keys[i]] = {};
      }
      n = n[keys[i]];
    }
    if (!n) continue;
    const last = keys[keys.length - 1];
    const ov = o?.[last];
    if (ov === undefined) delete n[last];
    else n[last] = JSON.parse(JSON.stringify(ov));
  }
  return out;
}


/** Same secret-ness of every key (a value turned secret is a change of the provider's inputs). */
function sameSecrets(a: Record<string, Json>, b: Record<string, Json>): boolean {
  const marks = (o: Record<string, Json>) => JSON.stringify(Object.keys(o).sort().map((k) => [k, containsSecret(o[k])]));
  return marks(a) === marks(b);
}

/** A checked property's value for a message: secrets never shown. */
function showValue(v: Json | undefined): string {
  if (v === undefined || containsSecret(v)) return "";
  const t = JSON.stringify(strip(v));
  return `value ${t.length > 80 ? t.slice(0, 77) + "..." : t} `;
}

const now = () => new Date().toISOString();
