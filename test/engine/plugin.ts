/**
 * The SDK's dynamic-provider plugin (`@pulumi/pulumi/cmd/dynamic-provider`), started as `pulumi up`
 * starts it (provider_plugin.go `NewProvider`: cwd = the program's working directory, the engine's
 * address as its argument, PULUMI_NODEJS_PROJECT and PULUMI_PROJECT set; its own
 * process group, tied to the engine's life) and driven over gRPC with the engine's requests. Its
 * stdout and stderr are the engine's unattributed diagnostics (plugin.go `runtrace`).
 */
import * as grpc from "@grpc/grpc-js";
import * as path from "path";
import * as readline from "readline";
import { ChildProcess } from "child_process";
import { endGroup, spawnChild } from "./child";
import { Json, strip } from "./secrets";

const pulumiDir = path.dirname(require.resolve("@pulumi/pulumi/package.json"));
/* eslint-disable @typescript-eslint/no-var-requires */
const provrpc = require("@pulumi/pulumi/proto/provider_grpc_pb");
const provproto = require("@pulumi/pulumi/proto/provider_pb");
// The generated stubs need the google-protobuf instance that @pulumi/pulumi itself resolves.
const gpb = path.dirname(require.resolve("google-protobuf/package.json", { paths: [pulumiDir] }));
const { Struct } = require(`${gpb}/google/protobuf/struct_pb`);
const { Status } = require("@pulumi/pulumi/proto/status_pb");
/* eslint-enable @typescript-eslint/no-var-requires */

/** A failure of a provider call: message, and for partial failures the created resource. */
export class ProviderError extends Error {
  constructor(message: string, readonly partial?: { id: string; properties: Record<string, Json>; reasons: string[] }) {
    super(message);
  }
}

/** Result of Diff, as the engine reads it. */
export interface DiffResult {
  /** 0 unknown (engine diffs inputs itself), 1 none, 2 some. */
  changes: 0 | 1 | 2;
  replaces: string[];
  deleteBeforeReplace: boolean;
}

const S = (o: object) => Struct.fromJavaScript(o);

/** One running plugin process and its gRPC client. */
export class DynamicProviderPlugin {
  private constructor(private readonly child: ChildProcess, private readonly client: any) {}

  /** Starts the plugin of the program's @pulumi/pulumi; its output goes to `log` line by line. */
  static async start(opts: { cwd: string; project: string; stack: string; engine: string; log: (line: string) => void }): Promise<DynamicProviderPlugin> {
    const pluginPath = require.resolve("@pulumi/pulumi/cmd/dynamic-provider", { paths: [opts.cwd, __dirname] });
    // The real engine sets no PULUMI_NODEJS_STACK for the plugin; the harness does, because host
    // locks name their stack from it (provider/host/lock.ts; under the CLI they read "unknown").
    const env: NodeJS.ProcessEnv = { ...process.env, PULUMI_NODEJS_PROJECT: opts.project, PULUMI_PROJECT: opts.project, PULUMI_NODEJS_STACK: opts.stack };
    const child = spawnChild(process.execPath, [pluginPath, opts.engine], { cwd: opts.cwd, env });
    const lines = readline.createInterface({ input: child.stdout! });
    const port: string = await new Promise((resolve, reject) => {
      lines.once("line", resolve);
      child.once("exit", (c) => reject(new Error(`dynamic-provider plugin exited with ${c} before listening`)));
    });
    lines.on("line", opts.log);
    readline.createInterface({ input: child.stderr! }).on("line", opts.log);
    const client = new provrpc.ResourceProviderClient(`127.0.0.1:${port.trim()}`, grpc.credentials.createInsecure(),
      { "grpc.max_receive_message_length": 64 << 20, "grpc.max_send_message_length": 64 << 20 });
    return new DynamicProviderPlugin(child, client);
  }

  private call(method: string, req: unknown): Promise<any> {
    return new Promise((resolve, reject) => this.client[method](req, (err: any, resp: any) => {
      if (!err) return resolve(resp);
      reject(toProviderError(err));
    }));
  }

  /** Configure with the default provider's inputs (the stack config, secrets marked), as the engine does before any CRUD. */
  async configure(args: Record<string, Json>): Promise<void> {
    const req = new provproto.ConfigureRequest();
    req.setArgs(S(args));
    for (const [k, v] of Object.entries(strip(args) as Record<string, Json>)) req.getVariablesMap().set(k, typeof v === "string" ? v : JSON.stringify(v));
    req.setAcceptsecrets(true);
    req.setAcceptresources(true);
    await this.call("configure", req);
  }

  async check(urn: string, olds: Record<string, Json>, news: Record<string, Json>): Promise<{ inputs: Record<string, Json>; failures: { property: string; reason: string }[] }> {
    const req = new provproto.CheckRequest();
    req.setUrn(urn); req.setType(typeOf(urn)); req.setName(nameOf(urn));
    req.setOlds(S(olds)); req.setNews(S(news));
    const resp = await this.call("check", req);
    return {
      inputs: resp.getInputs()?.toJavaScript() ?? news,
      failures: resp.getFailuresList().map((f: any) => ({ property: f.getProperty(), reason: f.getReason() })),
    };
  }

  async diff(id: string, urn: string, olds: Record<string, Json>, news: Record<string, Json>, oldInputs: Record<string, Json>): Promise<DiffResult> {
    const req = new provproto.DiffRequest();
    req.setId(id); req.setUrn(urn); req.setOlds(S(olds)); req.setNews(S(news)); req.setOldInputs(S(oldInputs));
    const resp = await this.call("diff", req);
    return { changes: resp.getChanges(), replaces: resp.getReplacesList(), deleteBeforeReplace: resp.getDeletebeforereplace() };
  }

  async create(urn: string, properties: Record<string, Json>, timeoutSec = 0): Promise<{ id: string; outputs: Record<string, Json> }> {
    const req = new provproto.CreateRequest();
    req.setUrn(urn); req.setType(typeOf(urn)); req.setName(nameOf(urn)); req.setProperties(S(properties)); req.setTimeout(timeoutSec);
    const resp = await this.call("create", req);
    return { id: resp.getId(), outputs: resp.getProperties()?.toJavaScript() ?? {} };
  }

  async read(id: string, urn: string, properties: Record<string, Json>, inputs: Record<string, Json>): Promise<{ id: string; outputs: Record<string, Json>; inputs?: Record<string, Json> }> {
    const req = new provproto.ReadRequest();
    req.setId(id); req.setUrn(urn); req.setProperties(S(properties)); req.setInputs(S(inputs));
    const resp = await this.call("read", req);
    return { id: resp.getId(), outputs: resp.getProperties()?.toJavaScript() ?? {}, inputs: resp.getInputs()?.toJavaScript() };
  }

  async update(id: string, urn: string, olds: Record<string, Json>, news: Record<string, Json>, oldInputs: Record<string, Json>, timeoutSec = 0): Promise<Record<string, Json>> {
    const req = new provproto.UpdateRequest();
    req.setId(id); req.setUrn(urn); req.setOlds(S(olds)); req.setNews(S(news)); req.setOldInputs(S(oldInputs)); req.setTimeout(timeoutSec);
    const resp = await this.call("update", req);
    return resp.getProperties()?.toJavaScript() ?? {};
  }

  async delete(id: string, urn: string, properties: Record<string, Json>, oldInputs: Record<string, Json>, timeoutSec = 0): Promise<void> {
    const req = new provproto.DeleteRequest();
    req.setId(id); req.setUrn(urn); req.setProperties(S(properties)); req.setOldInputs(S(oldInputs)); req.setTimeout(timeoutSec);
    await this.call("delete", req);
  }

  /** Closes the client and ends the plugin's process group (plugin.go `Close` → `kill`), as the engine does at the end of a run or on a second ^C. */
  async stop(): Promise<void> {
    this.client.close();
    await endGroup(this.child);
  }
}

const typeOf = (urn: string) => urn.split("::")[2]?.split("$").pop() ?? "";
const nameOf = (urn: string) => urn.split("::").slice(3).join("::");

/** Decodes a gRPC error; ErrorResourceInitFailed details become a partial result. */
function toProviderError(err: any): ProviderError {
  const message = String(err.details ?? err.message);
  const bin = err.metadata?.get?.("grpc-status-details-bin")?.[0];
  if (bin) {
    try {
      const st = Status.deserializeBinary(bin);
      for (const any of st.getDetailsList()) {
        if (!String(any.getTypeUrl()).endsWith("ErrorResourceInitFailed")) continue;
        const det = provproto.ErrorResourceInitFailed.deserializeBinary(any.getValue());
        return new ProviderError(message, {
          id: det.getId(),
          properties: det.getProperties()?.toJavaScript() ?? {},
          reasons: det.getReasonsList(),
        });
      }
    } catch { /* not a partial failure */ }
  }
  return new ProviderError(message);
}
