/**
 * Progress reported to the Pulumi engine as native providers report it: `pulumirpc.Engine/Log`
 * with the resource's URN, so `pulumi up` shows it under that resource. The engine turns an
 * ephemeral message into the resource's status line and keeps the others for the "Diagnostics:"
 * section (pkg/host/host_server.go `Log`: Ephemeral → LogStatus; pkg/backend/display/rows.go
 * `recordDiagEventPayload`, progress.go `printDiagnostics` skips ephemeral payloads).
 *
 * The SDK's dynamic-provider plugin keeps the engine address to itself, but it is the plugin's last
 * argument: the engine starts it with `[flags…] <host.ServerAddr()>`
 * (sdk/go/common/resource/plugin/provider_plugin.go `NewProvider`, plugin.go `buildPluginArguments`
 * appends the plugin's own arguments last). This module dials it with the SDK's own stubs and the
 * @grpc/grpc-js that @pulumi/pulumi resolves. Logging never holds a deploy up: calls go one after
 * the other with a deadline, at most MAX_QUEUED wait, and the first failure (no engine there, an
 * engine gone) sends this and every later message to the fallback (stderr) instead.
 */
import * as path from "path";

/** Engine.Log severities (pulumirpc.LogSeverity). */
export type Severity = "debug" | "info" | "warning" | "error";
const SEVERITY: Record<Severity, number> = { debug: 0, info: 1, warning: 2, error: 3 };

/** Deadline of one Log call. */
const CALL_TIMEOUT_MS = 5000;
/** Messages that may wait for the engine; past that they are dropped and counted. */
const MAX_QUEUED = 2000;

/** One Log message; `name` labels it where it falls back to stderr. */
export interface LogMessage { severity: Severity; urn: string; message: string; ephemeral: boolean; name?: string }

/** A connection to the engine's Log, or the fallback once it failed. */
export class EngineLog {
  private chain: Promise<void> = Promise.resolve();
  private queued = 0;
  private dropped = 0;
  private broken = false;
  private client?: any;
  private proto?: any;

  /** `address` is host:port of the engine; `fallback` writes a message where no engine takes it. */
  constructor(readonly address: string, private readonly fallback: (m: LogMessage) => void) {}

  /** Sends one message (in order with the others); never throws, never waits. */
  send(m: LogMessage): void {
    if (this.broken) return this.fallback(m);
    if (this.queued >= MAX_QUEUED) { this.dropped++; return; }
    this.queued++;
    this.chain = this.chain.then(() => this.call(m)).then((ok) => {
      this.queued--;
      if (!ok) this.fallback(m);
      if (this.dropped && this.queued === 0) {
        const n = this.dropped;
        this.dropped = 0;
        this.send({ severity: "warning", urn: m.urn, message: `(${n} progress lines dropped: the engine did not keep up)`, ephemeral: false });
      }
    });
  }

  /** Resolves once every message sent so far was delivered (or fell back). */
  flush(): Promise<void> { return this.chain; }

  private call(m: LogMessage): Promise<boolean> {
    if (this.broken) return Promise.resolve(false);
    return new Promise((resolve) => {
      try {
        this.connect();
        const req = new this.proto.LogRequest();
        req.setSeverity(SEVERITY[m.severity]);
        req.setMessage(m.message);
        req.setUrn(m.urn);
        req.setEphemeral(m.ephemeral);
        this.client.log(req, { deadline: Date.now() + CALL_TIMEOUT_MS }, (err: unknown) => {
          if (err) this.break();
          resolve(!err);
        });
      } catch {
        this.break();
        resolve(false);
      }
    });
  }

  private break(): void {
    this.broken = true;
    try { this.client?.close(); } catch { /* already closed */ }
  }

  private connect(): void {
    if (this.client) return;
    // The SDK's stubs need the @grpc/grpc-js (and google-protobuf) that @pulumi/pulumi resolves.
    const pulumiDir = path.dirname(require.resolve("@pulumi/pulumi/package.json"));
    /* eslint-disable @typescript-eslint/no-var-requires */
    const grpc = require(require.resolve("@grpc/grpc-js", { paths: [pulumiDir] }));
    const rpc = require("@pulumi/pulumi/proto/engine_grpc_pb");
    this.proto = require("@pulumi/pulumi/proto/engine_pb");
    /* eslint-enable @typescript-eslint/no-var-requires */
    this.client = new rpc.EngineClient(this.address, grpc.credentials.createInsecure());
  }
}

/** An engine address (`host:port`, `[::1]:port`). */
const ADDRESS = /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):\d{1,5}$/;

/**
 * The engine address of this process when it is the SDK's dynamic-provider plugin
 * (`node …/cmd/dynamic-provider[/index.js] [flags…] <address>`), else undefined.
 */
export function pluginEngineAddress(argv: string[] = process.argv): string | undefined {
  if (!/[\\/]cmd[\\/]dynamic-provider([\\/]index\.js)?$/.test(argv[1] ?? "")) return undefined;
  const last = argv[argv.length - 1];
  return argv.length > 2 && ADDRESS.test(last) ? last : undefined;
}

/** A resource's URN as its hidden input carries it (provider/resources/engine-urn.ts), else undefined. */
export function urnOf(props: unknown): string | undefined {
  const u = (props as { __urn?: unknown } | undefined)?.__urn;
  return typeof u === "string" && u.startsWith("urn:pulumi:") ? u : undefined;
}

/**
 * The stack a resource belongs to, from its URN (`urn:pulumi:<stack>::…`): the real engine does
 * not give the plugin PULUMI_NODEJS_STACK, so that variable is only the fallback.
 */
export function stackOf(props: unknown): string | undefined {
  const u = urnOf(props);
  return (u && /^urn:pulumi:([^:]+)::/.exec(u)?.[1]) || process.env.PULUMI_NODEJS_STACK || undefined;
}

