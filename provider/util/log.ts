/**
 * Progress lines. Inside the dynamic-provider plugin there is no engine connection, so Pulumi's
 * log falls back to the console (pulumi#6065): plain lines on stderr, prefixed with the resource.
 */
export type Logger = (message: string) => void;

/** A logger that prefixes every line with `name: `. */
export function resourceLogger(name: string): Logger {
  return (message: string) => {
    for (const line of message.split("\n")) process.stderr.write(`${name}: ${line}\n`);
  };
}

/** Human-readable byte count (KiB, MiB, GiB). */
export function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${i === 0 ? n : n.toFixed(n < 10 ? 1 : 0)} ${units[i]}`;
}
