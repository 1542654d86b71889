/**
 * The engine's side of Pulumi's protocol towards the program: a gRPC server offering the
 * `pulumirpc.ResourceMonitor` and `pulumirpc.Engine` services (the SDK's generated stubs, served
 * with @grpc/grpc-js). Each call is decoded and handed to a {@link MonitorHost} — the deployment —
 * and its answer encoded back, as pkg/resource/deploy/source_eval.go's resmon does.
 */
import * as grpc from "@grpc/grpc-js";
import * as path from "path";
import { Json } from "./secrets";

const pulumiDir = path.dirname(require.resolve("@pulumi/pulumi/package.json"));
/* eslint-disable @typescript-eslint/no-var-requires */
const resrpc = require("@pulumi/pulumi/proto/resource_grpc_pb");
const resproto = require("@pulumi/pulumi/proto/resource_pb");
const engrpc = require("@pulumi/pulumi/proto/engine_grpc_pb");
const engproto = require("@pulumi/pulumi/proto/engine_pb");
// The generated stubs need the google-protobuf instance that @pulumi/pulumi itself resolves.
const gpb = path.dirname(require.resolve("google-protobuf/package.json", { paths: [pulumiDir] }));
const { Struct } = require(`${gpb}/google/protobuf/struct_pb`);
const { Empty } = require(`${gpb}/google/protobuf/empty_pb`);
/* eslint-enable @typescript-eslint/no-var-requires */

/** A RegisterResource call, decoded. */
export interface Registration {
  type: string;
  name: string;
  parent?: string;
  custom: boolean;
  object: Record<string, Json>;
  dependencies: string[];
  propertyDependencies: Record<string, string[]>;
  provider?: string;
  protect?: boolean;
  retainOnDelete?: boolean;
  /** Set only when the program gave it (deleteBeforeReplaceDefined). */
  deleteBeforeReplace?: boolean;
  ignoreChanges: string[];
  replaceOnChanges: string[];
  additionalSecretOutputs: string[];
  aliasURNs: string[];
  remote: boolean;
  importId?: string;
}

/** What the monitor needs from the engine. */
export interface MonitorHost {
  registerResource(r: Registration): Promise<{ urn: string; id?: string; object: Record<string, Json>; failed?: boolean }>;
  registerResourceOutputs(urn: string, outputs: Record<string, Json>): Promise<void>;
  /** Engine.Log: severity 0 debug, 1 info, 2 warning, 3 error. */
  log(severity: number, message: string, urn: string, ephemeral: boolean): void;
  /** SignalAndWaitForShutdown: resolves once every step of the program's registrations is done. */
  waitForShutdown(): Promise<void>;
}

/** Features the SDK asks for (SupportsFeature): what this engine implements. */
const FEATURES: Record<string, boolean> = {
  secrets: true,
  resourceReferences: true,
  outputValues: false,
  deletedWith: false,
  replaceWith: false,
  // Without alias specs the SDK sends alias URNs it computed itself; the engine looks them up.
  aliasSpecs: false,
  transforms: false,
  invokeTransforms: false,
  parameterization: false,
  resourceHooks: false,
  errorHooks: false,
};

type Callback = (err: grpc.ServiceError | null, resp?: unknown) => void;

function unimplemented(what: string): grpc.ServiceError {
  return Object.assign(new Error(`${what} is not supported by the engine harness`), { code: grpc.status.UNIMPLEMENTED, details: `${what} is not supported by the engine harness`, metadata: new grpc.Metadata() });
}

function failure(e: unknown): grpc.ServiceError {
  const message = e instanceof Error ? e.message : String(e);
  return Object.assign(new Error(message), { code: grpc.status.UNKNOWN, details: message, metadata: new grpc.Metadata() });
}

/** Answers a unary call from an async function. */
function unary<T>(fn: (req: T) => Promise<unknown> | unknown) {
  return (call: { request: T }, cb: Callback) => {
    Promise.resolve().then(() => fn(call.request)).then((r) => cb(null, r), (e) => cb(failure(e)));
  };
}

function decode(req: any): Registration {
  const propertyDependencies: Record<string, string[]> = {};
  req.getPropertydependenciesMap().forEach((v: any, k: string) => { propertyDependencies[k] = v.getUrnsList(); });
  return {
    type: req.getType(),
    name: req.getName(),
    parent: req.getParent() || undefined,
    custom: req.getCustom(),
    object: (req.getObject()?.toJavaScript() ?? {}) as Record<string, Json>,
    dependencies: [...new Set<string>(req.getDependenciesList())],
    propertyDependencies,
    provider: req.getProvider() || undefined,
    protect: req.hasProtect() ? req.getProtect() : undefined,
    retainOnDelete: req.hasRetainondelete() ? req.getRetainondelete() : undefined,
    deleteBeforeReplace: req.getDeletebeforereplacedefined() ? req.getDeletebeforereplace() : undefined,
    ignoreChanges: req.getIgnorechangesList(),
    replaceOnChanges: req.getReplaceonchangesList(),
    additionalSecretOutputs: req.getAdditionalsecretoutputsList(),
    aliasURNs: req.getAliasurnsList(),
    remote: req.getRemote(),
    importId: req.getImportid() || undefined,
  };
}

/** The gRPC server; `address` is what the program's `--monitor`/`--engine` get. */
export class MonitorServer {
  private root = "";
  private constructor(private readonly server: grpc.Server, readonly address: string) {}

  static async start(host: MonitorHost): Promise<MonitorServer> {
    const server = new grpc.Server({ "grpc.max_receive_message_length": 400 << 20, "grpc.max_send_message_length": 400 << 20 });
    let self: MonitorServer | undefined;
    server.addService(resrpc.ResourceMonitorService, {
      supportsFeature: unary((req: any) => {
        const resp = new resproto.SupportsFeatureResponse();
        resp.setHassupport(FEATURES[req.getId()] ?? false);
        return resp;
      }),
      registerResource: unary(async (req: any) => {
        const r = await host.registerResource(decode(req));
        const resp = new resproto.RegisterResourceResponse();
        resp.setUrn(r.urn);
        resp.setId(r.id ?? "");
        resp.setObject(Struct.fromJavaScript(r.object));
        if (r.failed) resp.setResult(resproto.Result.FAIL);
        return resp;
      }),
      registerResourceOutputs: unary(async (req: any) => {
        await host.registerResourceOutputs(req.getUrn(), (req.getOutputs()?.toJavaScript() ?? {}) as Record<string, Json>);
        return new Empty();
      }),
      signalAndWaitForShutdown: unary(async () => { await host.waitForShutdown(); return new Empty(); }),
      invoke: (call: any, cb: Callback) => cb(unimplemented(`invoke of ${call.request.getTok()}`)),
      call: (call: any, cb: Callback) => cb(unimplemented(`call of ${call.request.getTok()}`)),
      readResource: (call: any, cb: Callback) => cb(unimplemented(`reading an existing resource (${call.request.getType()} ${call.request.getName()}, a .get())`)),
      registerStackTransform: (_: any, cb: Callback) => cb(unimplemented("transforms")),
      registerStackInvokeTransform: (_: any, cb: Callback) => cb(unimplemented("invoke transforms")),
      registerPackage: (_: any, cb: Callback) => cb(unimplemented("packages")),
      registerResourceHook: (_: any, cb: Callback) => cb(unimplemented("resource hooks")),
      registerErrorHook: (_: any, cb: Callback) => cb(unimplemented("error hooks")),
      getDeploymentInfo: (_: any, cb: Callback) => cb(unimplemented("getDeploymentInfo")),
    });
    server.addService(engrpc.EngineService, {
      log: unary((req: any) => { host.log(req.getSeverity(), req.getMessage(), req.getUrn(), req.getEphemeral()); return new Empty(); }),
      getRootResource: unary(() => { const r = new engproto.GetRootResourceResponse(); r.setUrn(self!.root); return r; }),
      setRootResource: unary((req: any) => { self!.root = req.getUrn(); return new engproto.SetRootResourceResponse(); }),
      requirePulumiVersion: unary(() => new engproto.RequirePulumiVersionResponse()),
      startDebugging: (_: any, cb: Callback) => cb(unimplemented("debugging")),
    });
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
    self = new MonitorServer(server, `127.0.0.1:${port}`);
    return self;
  }

  /** Stops serving; calls still open are cancelled (as when the engine goes away). */
  stop(): void {
    this.server.forceShutdown();
  }
}
