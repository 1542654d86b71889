/**
 * The engine harness: does what `pulumi preview|up|refresh|destroy` does for a program whose
 * custom resources are dynamic resources. The program runs under `pulumi.runtime.setMocks`; the
 * mock monitor's registerResource is where the engine's steps happen (Check, Diff, then Create /
 * Update / replace) against the SDK's own dynamic-provider plugin, with the state in a JSON file.
 */
import * as path from "path";
import { isDeepStrictEqual } from "util";
import { DynamicProviderPlugin, ProviderError } from "./plugin";
import { ProjectInfo, loadProject } from "./project";
import { Json, UNKNOWN, annotate, isSecret, strip } from "./secrets";
import { StackState, StateResource } from "./state";
import { Semaphore } from "../../provider/util/semaphore";

/** The four engine operations. */
export type Operation = "preview" | "up" | "refresh" | "destroy";

/** Options of one engine run. */
export interface EngineOptions {
  /** Program directory (holds Pulumi.yaml). */
  cwd: string;
  stack: string;
  /** State file (created when missing). */
  stateFile: string;
  /** URNs or resource names; empty = everything. */
  targets?: string[];
  /** Steps run at once (default 16). */
  parallel?: number;
  /** Output sink (default stdout). */
  out?: (line: string) => void;
}

/** What a run did. */
export interface EngineResult {
  ok: boolean;
  counts: Record<"create" | "update" | "replace" | "delete" | "same" | "refresh", number>;
  errors: string[];
  outputs: Record<string, unknown>;
}

const DYNAMIC_TYPE = "pulumi-nodejs:dynamic:Resource";
const SYMBOL = { create: "+ ", update: "~ ", replace: "+-", delete: "- ", same: "  ", refresh: "~ " } as const;

type StepKind = keyof typeof SYMBOL;

/** One engine run. Create with {@link runEngine}. */
class Engine {
  readonly state: StackState;
  readonly result: EngineResult = { ok: true, counts: { create: 0, update: 0, replace: 0, delete: 0, same: 0, refresh: 0 }, errors: [], outputs: {} };
  private plugin?: Promise<DynamicProviderPlugin>;
  private readonly limit: Semaphore;
  private readonly out: (line: string) => void;
  readonly registered = new Set<string>();

  constructor(readonly op: Operation, readonly project: ProjectInfo, readonly opts: EngineOptions) {
    this.state = StackState.load(path.resolve(opts.stateFile));
    this.limit = new Semaphore(opts.parallel ?? 16);
    this.out = opts.out ?? ((l) => process.stdout.write(l + "\n"));
  }

  get preview(): boolean { return this.op === "preview"; }

  log(line: string): void { this.out(line); }

  /** The plugin, started on first use and configured with the stack config. */
  provider(): Promise<DynamicProviderPlugin> {
    this.plugin ??= (async () => {
      const p = await DynamicProviderPlugin.start({ programDir: this.project.dir, project: this.project.name, stack: this.project.stack, log: (l) => this.out(l) });
      await p.configure(this.project.config);
      return p;
    })();
    return this.plugin;
  }

  async close(): Promise<void> {
    if (this.plugin) await (await this.plugin).stop();
  }

  private readonly inFlight = new Set<Promise<unknown>>();

  /** Runs one step within the run's parallelism bound. */
  limitedStep<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.limit.run(fn);
    const tracked = p.catch(() => undefined);
    this.inFlight.add(tracked);
    void tracked.then(() => this.inFlight.delete(tracked));
    return p;
  }

  /** Waits for every started step to finish. */
  async settleSteps(): Promise<void> {
    while (this.inFlight.size) await Promise.all([...this.inFlight]);
  }

  targeted(urn: string): boolean {
    const t = this.opts.targets ?? [];
    return t.length === 0 || t.includes(urn) || t.includes(nameOf(urn));
  }

  fail(urn: string, message: string): void {
    this.result.ok = false;
    const line = `error: ${nameOf(urn)} (${urn}): ${message}`;
    this.result.errors.push(line);
    this.log(line);
  }

  report(kind: StepKind, urn: string, type: string, detail = ""): void {
    this.result.counts[kind]++;
    if (kind !== "same") this.log(` ${SYMBOL[kind]} ${type} ${nameOf(urn)} ${detail}`.trimEnd());
  }

  /**
   * The engine's step for one registered custom resource. Returns the outputs (wire form) that
   * flow back into the program.
   */
  async step(r: { urn: string; type: string; parent?: string; inputs: Record<string, Json>; dependencies: string[]; additionalSecretOutputs: string[]; deleteBeforeReplace: boolean }): Promise<{ id?: string; outputs: Record<string, Json> }> {
    const old = this.state.get(r.urn);
    if (!this.targeted(r.urn)) {
      // Not targeted: an existing resource keeps its state; a new one is not created.
      return old ? { id: old.id, outputs: old.outputs } : { outputs: r.inputs };
    }
    const p = await this.provider();
    const checked = await p.check(r.urn, old ? strip(old.inputs) as Record<string, Json> : {}, strip(r.inputs) as Record<string, Json>);
    if (checked.failures.length) {
      throw new Error(checked.failures.map((f) => `${f.property ? `${f.property}: ` : ""}${f.reason}`).join("; "));
    }
    // State keeps inputs with their secret markers.
    const inputs = annotate(checked.inputs, r.inputs);
    let kind: StepKind = "create";
    let replaceKeys: string[] = [];
    let deleteFirst = r.deleteBeforeReplace;
    if (old) {
      const d = await p.diff(old.id ?? "", r.urn, strip(old.outputs) as Record<string, Json>, checked.inputs, strip(old.inputs) as Record<string, Json>);
      const changed = d.changes === 2 || (d.changes === 0 && changedKeys(old.inputs, inputs).length > 0) || !!old.initErrors;
      kind = !changed ? "same" : d.replaces.length ? "replace" : "update";
      replaceKeys = d.replaces;
      deleteFirst ||= d.deleteBeforeReplace;
    }
    // Old inputs vs new, as the engine does; when those agree the change is drift found by refresh.
    const base = old && changedKeys(old.inputs, inputs).length ? old.inputs : pick(old?.outputs ?? {}, Object.keys(inputs));
    const detail = kind === "update" || kind === "replace" ? diffDetail(base, inputs, replaceKeys) : "";
    if (this.preview || kind === "same") {
      this.report(kind, r.urn, r.type, kind === "create" ? "create" : detail);
      if (kind === "same") return { id: old!.id, outputs: old!.outputs };
      // Preview: inputs are known, everything computed by the provider is unknown.
      return { id: old?.id, outputs: kind === "update" ? { ...old!.outputs, ...inputs } : inputs };
    }
    const record = (id: string, outs: Record<string, Json>, initErrors?: string[]): StateResource => {
      const res: StateResource = { urn: r.urn, custom: true, type: r.type, id, inputs, outputs: annotate(outs, inputs, r.additionalSecretOutputs), parent: r.parent, dependencies: r.dependencies, ...(initErrors ? { initErrors } : {}) };
      this.state.set(res);
      return res;
    };
    const started = Date.now();
    this.log(` ${SYMBOL[kind]} ${r.type} ${nameOf(r.urn)} ${kind.replace(/e$/, "")}ing${detail ? " " + detail : ""}`);
    try {
      let res: StateResource;
      if (kind === "update") {
        const outs = await p.update(old!.id ?? "", r.urn, strip(old!.outputs) as Record<string, Json>, checked.inputs, strip(old!.inputs) as Record<string, Json>);
        res = record(old!.id ?? "", outs);
      } else {
        if (kind === "replace" && deleteFirst) await this.deleteOne(old!, true);
        const created = await p.create(r.urn, checked.inputs);
        res = record(created.id, created.outputs);
        if (kind === "replace" && !deleteFirst) await this.deleteOne(old!, true);
      }
      this.report(kind, r.urn, r.type, `${kind === "update" ? "updated" : kind === "replace" ? "replaced" : "created"} (${((Date.now() - started) / 1000).toFixed(1)}s)`);
      return { id: res.id, outputs: res.outputs };
    } catch (e) {
      if (e instanceof ProviderError && e.partial) {
        // Created (or updated) but unhealthy: the state records it, the run fails, the next up retries.
        const res = record(e.partial.id || old?.id || "", e.partial.properties, e.partial.reasons);
        throw Object.assign(new Error(`${e.message}${e.partial.reasons.length ? ": " + e.partial.reasons.join("; ") : ""}`), { outputs: res.outputs });
      }
      throw e;
    }
  }

  /** Deletes one resource through the provider (custom) or just from the state (component). */
  async deleteOne(res: StateResource, replacing = false): Promise<void> {
    if (res.custom && res.type === DYNAMIC_TYPE) {
      const p = await this.provider();
      await p.delete(res.id ?? "", res.urn, strip(res.outputs) as Record<string, Json>, strip(res.inputs) as Record<string, Json>);
    }
    if (!replacing) {
      this.state.delete(res.urn);
      this.report("delete", res.urn, res.type, "deleted");
    }
  }

  /** Deletes resources, dependents first; independent ones concurrently. */
  async deleteAll(victims: StateResource[]): Promise<void> {
    const left = new Map(victims.map((v) => [v.urn, v]));
    while (left.size) {
      const needed = new Set<string>();
      for (const v of left.values()) for (const d of [...v.dependencies, ...(v.parent ? [v.parent] : [])]) needed.add(d);
      const wave = [...left.values()].filter((v) => !needed.has(v.urn));
      if (!wave.length) throw new Error("dependency cycle in state");
      const results = await Promise.all(wave.map((v) => this.limit.run(() => this.deleteOne(v)).then(() => true, (e) => {
        this.fail(v.urn, `delete failed: ${errMessage(e)}`);
        return false;
      })));
      wave.forEach((v) => left.delete(v.urn));
      // Dependencies of a resource that could not be deleted must stay.
      if (results.includes(false)) {
        const kept = new Set(wave.filter((_, i) => !results[i]).flatMap((v) => [...v.dependencies, ...(v.parent ? [v.parent] : [])]));
        for (const u of closure(kept, left)) left.delete(u);
      }
    }
  }

  /** `pulumi refresh`: Read every resource, record drift, drop resources that are gone. */
  async refresh(): Promise<void> {
    await Promise.all(this.state.all().filter((r) => r.custom && r.type === DYNAMIC_TYPE && this.targeted(r.urn)).map((r) => this.limit.run(async () => {
      try {
        const p = await this.provider();
        const got = await p.read(r.id ?? "", r.urn, strip(r.outputs) as Record<string, Json>, strip(r.inputs) as Record<string, Json>);
        if (!got.id) {
          this.state.delete(r.urn);
          this.report("delete", r.urn, r.type, "deleted (gone on refresh)");
          return;
        }
        const outputs = annotate(got.outputs, r.outputs);
        const keys = changedKeys(r.outputs, outputs);
        this.state.set({ ...r, id: got.id, outputs, inputs: got.inputs ? annotate(got.inputs, r.inputs) : r.inputs });
        if (keys.length) this.report("refresh", r.urn, r.type, `drift ${diffDetail(r.outputs, outputs, [])}`);
        else this.report("same", r.urn, r.type);
      } catch (e) {
        this.fail(r.urn, `refresh failed: ${errMessage(e)}`);
      }
    })));
  }
}

function pick(o: Record<string, Json>, keys: string[]): Record<string, Json> {
  return Object.fromEntries(keys.filter((k) => k in o).map((k) => [k, o[k]]));
}

/** Keys whose values differ (ignoring the serialized provider). */
function changedKeys(a: Record<string, Json>, b: Record<string, Json>): string[] {
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  keys.delete("__provider");
  return [...keys].filter((k) => !isDeepStrictEqual(strip(a[k] ?? null), strip(b[k] ?? null))).sort();
}

/** `[diff: ~a ~b]` plus old → new values, secrets shown as [secret], like `pulumi preview --diff`. */
function diffDetail(a: Record<string, Json>, b: Record<string, Json>, replaces: string[]): string {
  const keys = changedKeys(a, b);
  // Secrets never reach the output, also when nested inside an object.
  const redact = (v: Json): Json => isSecret(v) ? "[secret]" : Array.isArray(v) ? v.map(redact)
    : v && typeof v === "object" ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, redact(x)])) : v === UNKNOWN ? "output<unknown>" : v;
  const show = (v: Json | undefined) => v === undefined ? "undefined" : JSON.stringify(redact(v)).slice(0, 160);
  const lines = keys.map((k) => `\n      ${replaces.includes(k) ? "+-" : "~ "}${k}: ${show(a[k])} => ${show(b[k])}`);
  return `[diff: ${keys.map((k) => (replaces.includes(k) ? "+-" : "~") + k).join(" ")}]${lines.join("")}`;
}

function closure(start: Set<string>, left: Map<string, StateResource>): Set<string> {
  const out = new Set<string>();
  const visit = (u: string) => {
    if (out.has(u)) return;
    out.add(u);
    const r = left.get(u);
    if (r) for (const d of [...r.dependencies, ...(r.parent ? [r.parent] : [])]) visit(d);
  };
  start.forEach(visit);
  return out;
}

const nameOf = (urn: string) => urn.split("::").slice(3).join("::");
const errMessage = (e: unknown) => (e instanceof Error ? e.message : String(e));

/** Loads the program's own @pulumi/pulumi (the instance the program will use). */
function programPulumi(dir: string): { pulumi: any; dir: string } {
  const pkg = require.resolve("@pulumi/pulumi/package.json", { paths: [dir, __dirname] });
  const pdir = path.dirname(pkg);
  return { pulumi: require(pdir), dir: pdir };
}

/** Runs the program under mocks whose monitor performs the engine's steps. */
async function runProgram(engine: Engine): Promise<void> {
  const { project } = engine;
  process.chdir(project.dir);
  process.env.PULUMI_CONFIG = JSON.stringify(project.config);
  process.env.PULUMI_CONFIG_SECRET_KEYS = JSON.stringify(project.secretKeys);
  process.env.PULUMI_NODEJS_PROJECT = project.name;
  process.env.PULUMI_NODEJS_STACK = project.stack;
  const { pulumi, dir: pdir } = programPulumi(project.dir);
  /* eslint-disable @typescript-eslint/no-var-requires */
  const resproto = require(path.join(pdir, "proto/resource_pb"));
  const gpb = path.dirname(require.resolve("google-protobuf/package.json", { paths: [pdir] }));
  const { Struct } = require(`${gpb}/google/protobuf/struct_pb`);
  const settings = require(path.join(pdir, "runtime/settings"));
  /* eslint-enable @typescript-eslint/no-var-requires */
  await pulumi.runtime.setMocks({ newResource: () => { throw new Error("unused"); }, call: (a: { inputs: unknown }) => a.inputs },
    project.name, project.stack, engine.preview);
  const monitor = settings.getMonitor();
  const componentOutputs = new Map<string, Record<string, Json>>();

  monitor.registerResource = (req: any, callback: (err: unknown, resp?: unknown) => void) => {
    const type: string = req.getType();
    const parent: string | undefined = req.getParent() || undefined;
    const urn: string = monitor.newUrn(parent, type, req.getName());
    engine.registered.add(urn);
    const inputs = (req.getObject()?.toJavaScript() ?? {}) as Record<string, Json>;
    const dependencies: string[] = [...new Set<string>([...req.getDependenciesList()])];
    const work = async (): Promise<{ id?: string; outputs: Record<string, Json> }> => {
      if (!req.getCustom()) {
        const old = engine.state.get(urn);
        if (!engine.preview) engine.state.set({ urn, custom: false, type, inputs: {}, outputs: old?.outputs ?? {}, parent, dependencies });
        engine.report(old ? "same" : "create", urn, type, old ? "" : engine.preview ? "create" : "created");
        return { outputs: {} };
      }
      if (type !== DYNAMIC_TYPE) {
        throw new Error(`type ${type} needs its own provider plugin, which the engine harness cannot run (it runs dynamic resources only)`);
      }
      return engine.step({ urn, type, parent, inputs, dependencies, additionalSecretOutputs: req.getAdditionalsecretoutputsList(), deleteBeforeReplace: req.getDeletebeforereplace() });
    };
    engine.limitedStep(work).then((r) => {
      const resp = new resproto.RegisterResourceResponse();
      resp.setUrn(urn);
      resp.setId(r.id ?? "");
      resp.setObject(Struct.fromJavaScript(r.outputs));
      callback(null, resp);
    }, (e: unknown) => {
      engine.fail(urn, errMessage(e));
      callback(new Error(`${nameOf(urn)}: ${errMessage(e)}`));
    });
  };
  monitor.registerResourceOutputs = (req: any, callback: (err: unknown, resp?: unknown) => void) => {
    const urn = req.getUrn();
    componentOutputs.set(urn, req.getOutputs()?.toJavaScript() ?? {});
    const old = engine.state.get(urn);
    if (old && !engine.preview) engine.state.set({ ...old, outputs: componentOutputs.get(urn)! });
    callback(null, {});
  };

  const programErrors = new Set<string>();
  let programFailed: () => void = () => undefined;
  const failed = new Promise<void>((r) => { programFailed = r; });
  const onError = (e: unknown) => {
    const m = errMessage(e);
    // Failed registrations are already reported per resource (the SDK re-raises them many times);
    // they still end the program: resources that depend on a failed one never register.
    if (!/failed to register new resource/.test(m)) programErrors.add(m);
    // As under the real engine, an unhandled error ends the program (its pending RPCs never finish).
    programFailed();
  };
  // The event loop may drain while the SDK waits on a rejected input: keep the process alive.
  const keepAlive = setInterval(() => undefined, 1000);
  process.on("unhandledRejection", onError);
  process.on("uncaughtException", onError);
  process.on("rejectionHandled", () => undefined);
  try {
    if (project.main.endsWith(".ts")) registerTsNode(project.dir);
    let mod = require(project.main);
    if (typeof mod === "function") mod = await mod();
    else if (mod && typeof mod.default === "function" && Object.keys(mod).length === 1) mod = await mod.default();
    const done = (async () => {
      await settings.waitForRPCs();
      await new Promise((r) => setTimeout(r, 10));
      await settings.waitForRPCs();
      return true;
    })();
    if (await Promise.race([done, failed.then(() => false)])) {
      engine.result.outputs = await resolveOutputs(pulumi, mod ?? {});
    }
  } catch (e) {
    programErrors.add(errMessage(e));
  } finally {
    // Steps already running finish (and are recorded) before the run ends.
    await engine.settleSteps();
    clearInterval(keepAlive);
  }
  for (const m of programErrors) {
    engine.result.ok = false;
    engine.result.errors.push(`error: program failed: ${m}`);
    engine.log(`error: program failed: ${m}`);
  }
}

function registerTsNode(dir: string): void {
  // As `pulumi up` does for TypeScript programs: ts-node, transpile-only.
  const tsnode = require(require.resolve("ts-node", { paths: [dir, __dirname] }));
  tsnode.register({ transpileOnly: true, compilerOptions: { module: "commonjs" }, cwd: dir });
}

async function resolveOutputs(pulumi: any, mod: Record<string, unknown>): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(mod)) {
    if (k === "__esModule" || typeof v === "function") continue;
    const o = pulumi.output(v);
    const known = await o.isKnown;
    const secretV = await o.isSecret;
    out[k] = !known ? "output<unknown>" : secretV ? "[secret]" : await o.promise();
  }
  return out;
}

/** Runs one engine operation on the program in opts.cwd. */
export async function runEngine(op: Operation, opts: EngineOptions): Promise<EngineResult> {
  const project = loadProject(opts.cwd, opts.stack);
  const engine = new Engine(op, project, opts);
  const verb = { preview: "Previewing update", up: "Updating", refresh: "Refreshing", destroy: "Destroying" }[op];
  engine.log(`${verb} (${project.stack}) of ${project.name} [engine harness: SDK dynamic-provider plugin over gRPC, state ${path.resolve(opts.stateFile)}]`);
  try {
    if (op === "preview" || op === "up") {
      await runProgram(engine);
      // Resources in the state that the program no longer declares are deleted (unless the program failed).
      const gone = engine.state.all().filter((r) => !engine.registered.has(r.urn) && engine.targeted(r.urn));
      if (engine.result.ok && gone.length) {
        if (op === "preview") gone.forEach((r) => engine.report("delete", r.urn, r.type, "delete"));
        else await engine.deleteAll(gone);
      }
    } else if (op === "refresh") {
      await engine.refresh();
    } else {
      await engine.deleteAll(engine.state.all().filter((r) => engine.targeted(r.urn)));
    }
  } finally {
    await engine.close();
  }
  const c = engine.result.counts;
  const future = op === "preview";
  engine.log("Resources:");
  for (const [k, label] of [["create", future ? "to create" : "created"], ["update", future ? "to update" : "updated"],
    ["replace", future ? "to replace" : "replaced"], ["delete", future ? "to delete" : "deleted"], ["refresh", "drifted"]] as const) {
    if (c[k]) engine.log(`    ${SYMBOL[k].trim()} ${c[k]} ${label}`);
  }
  if (c.same) engine.log(`    ${c.same} unchanged`);
  if (Object.keys(engine.result.outputs).length) {
    engine.log("Outputs:");
    for (const [k, v] of Object.entries(engine.result.outputs)) engine.log(`    ${k}: ${typeof v === "string" ? v : JSON.stringify(v)}`);
  }
  if (!engine.result.ok) engine.log(`${engine.result.errors.length} error(s)`);
  return engine.result;
}
