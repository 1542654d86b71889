/**
 * Progress lines. Inside the dynamic-provider plugin there is no engine connection, so Pulumi's
 * log falls back to the console (pulumi#6065): plain lines on stderr, prefixed with the resource.
 */
export type Logger = (message: string) => void;

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

/** A logger that prefixes every line with `name: `. */
export function resourceLogger(name: string): Logger {
  return (message: string) => {
    for (const line of message.split("\n")) writeLogLine(`${name}: ${line}\n`);
  };
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
