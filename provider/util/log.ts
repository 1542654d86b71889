/**
 * Progress lines. Inside the SDK's dynamic-provider plugin `pulumi.log` has no engine connection
 * (pulumi#6065) and the plugin's stderr reaches the CLI as unattributed stack-level diagnostics
 * (sdk/go/common/resource/plugin/plugin.go: `diag.StreamMessage("", …): no URN`). So a resource's
 * lines go to the engine's Log with its URN (engine-log.ts: the status line under the resource),
 * and only without an engine or a URN to plain lines on stderr, prefixed with the resource.
 */
import { EngineLog, LogMessage, Severity, pluginEngineAddress } from "./engine-log";

export type Logger = (message: string) => void;

/** A resource's logger: progress lines (the engine's ephemeral status), and warnings/errors kept for the end. */
export interface ResourceLogger extends Logger {
  warn(message: string): void;
  error(message: string): void;
}

/** Bytes of log lines that may wait for a slow reader; past that, lines are dropped and counted. */
const LOG_BACKLOG = 1 << 20;
let dropped = 0;
let closed = false;
let watching = false;

/**
 * Writes a log line to stderr without ever piling lines up in memory: a reader that is gone
 * (EPIPE: the engine died) ends logging, one that stops reading costs at most LOG_BACKLOG bytes
 * and then a count of the lines dropped, written once it reads again.
 */
export function writeLogLine(line: string): void {
  if (closed) return;
  if (!watching) {
    watching = true;
    process.stderr.on("error", () => { closed = true; });
    process.stderr.on("drain", () => {
      if (dropped && !closed) { const n = dropped; dropped = 0; process.stderr.write(`(${n} log lines dropped: stderr was not read)\n`); }
    });
  }
  if (process.stderr.writableLength > LOG_BACKLOG) { dropped++; return; }
  process.stderr.write(line);
}

let engine: EngineLog | undefined | null = null;

/** The engine connection of this plugin process (undefined outside the plugin or without an address). */
function engineLog(): EngineLog | undefined {
  if (engine === null) {
    const address = pluginEngineAddress();
    engine = address ? new EngineLog(address, (m) => writeLogLine(stderrLine(m.name ?? nameOfUrn(m.urn), m.severity, m.message))) : undefined;
  }
  return engine;
}

const nameOfUrn = (urn: string) => urn.split("::").slice(3).join("::");

function stderrLine(name: string, severity: Severity, line: string): string {
  return `${severity === "warning" || severity === "error" ? `${severity}: ` : ""}${name}: ${line}\n`;
}

/** Resolves once every line sent to the engine so far was delivered or fell back to stderr. */
export function flushLog(): Promise<void> {
  return engine ? engine.flush() : Promise.resolve();
}

/**
 * The logger of resource `name`. With its `urn` (the hidden `__urn` input, engine-log.ts `urnOf`)
 * inside the plugin, every line is an Engine.Log call under that URN: progress as ephemeral info
 * (the resource's status, as native providers report progress), warnings and errors as lasting
 * diagnostics. Otherwise (no URN, no engine, the engine went away) lines on stderr, `name: line`.
 */
export function resourceLogger(name: string, urn?: string): ResourceLogger {
  const emit = (severity: Severity, ephemeral: boolean) => (message: string) => {
    const e = urn ? engineLog() : undefined;
    for (const line of message.split("\n")) {
      const m: LogMessage = { severity, urn: urn ?? "", message: line, ephemeral, name };
      if (e) e.send(m);
      else writeLogLine(stderrLine(name, severity, line));
    }
  };
  return Object.assign(emit("info", true), { warn: emit("warning", false), error: emit("error", false) });
}

/** Human-readable byte count (KiB, MiB, GiB). */
export function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${i === 0 ? n : n.toFixed(n < 10 ? 1 : 0)} ${units[i]}`;
}

/** `1 path`, `2 paths`: a count with its noun in the right number. */
export function plural(n: number, noun: string, nouns = `${noun}s`): string {
  return `${n} ${n === 1 ? noun : nouns}`;
}
