/**
 * What the harness prints: one line per step (`+ TYPE NAME create`, `~ … [diff: ~a]` with old →
 * new values, secrets as [secret]), engine log messages by severity, and the CLI's summary
 * ("Resources:", `+ 3 to create`, `2 unchanged`, "Outputs:"). The layout is simpler than the CLI's
 * tree; the words and counts are the CLI's.
 */
import { isDeepStrictEqual } from "util";
import { Json, UNKNOWN, isSecret, strip } from "./secrets";

/** Step kinds as the CLI names them. */
export type StepKind = "create" | "update" | "replace" | "delete" | "same" | "refresh";

export const SYMBOL: Record<StepKind, string> = { create: "+ ", update: "~ ", replace: "+-", delete: "- ", same: "  ", refresh: "~ " };

/** The resource name part of a URN. */
export const nameOf = (urn: string): string => urn.split("::").slice(3).join("::");

/** The type part of a URN (last of a parent chain `a$b`). */
export const typeOf = (urn: string): string => urn.split("::")[2]?.split("$").pop() ?? "";

/** Keys whose values differ, the serialized provider aside. */
export function changedKeys(a: Record<string, Json>, b: Record<string, Json>): string[] {
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  keys.delete("__provider");
  return [...keys].filter((k) => !isDeepStrictEqual(strip(a[k] ?? null), strip(b[k] ?? null))).sort();
}

/**
 * `[diff: ~a +-b]` plus `old => new` lines, secrets as [secret], like `pulumi preview --diff`;
 * internal keys (`__urn`, any `__` key) are never shown (object_diff.go, IsInternalPropertyKey).
 */
export function diffDetail(a: Record<string, Json>, b: Record<string, Json>, replaces: string[]): string {
  const keys = changedKeys(a, b).filter((k) => !k.startsWith("__"));
  if (!keys.length) return "";
  const redact = (v: Json): Json => isSecret(v) ? "[secret]" : Array.isArray(v) ? v.map(redact)
    : v && typeof v === "object" ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, redact(x)])) : v === UNKNOWN ? "output<unknown>" : v;
  const show = (v: Json | undefined) => v === undefined ? "undefined" : JSON.stringify(redact(v)).slice(0, 160);
  const lines = keys.map((k) => `\n      ${replaces.includes(k) ? "+-" : "~ "}${k}: ${show(a[k])} => ${show(b[k])}`);
  return `[diff: ${keys.map((k) => (replaces.includes(k) ? "+-" : "~") + k).join(" ")}]${lines.join("")}`;
}

const SEVERITY = ["debug", "info", "warning", "error"];

/**
 * An engine log message (Engine.Log) as the CLI shows it: `<severity>: [name: ]message` — the
 * severity prefix only for warnings and errors (diag/sink.go `Stringify`), the resource's name
 * where the CLI shows the message in the resource's row.
 */
export function logLine(severity: number, message: string, urn: string): string {
  const who = urn ? `${nameOf(urn)}: ` : "";
  const sev = SEVERITY[severity] ?? "info";
  return sev === "info" ? `${who}${message}` : `${sev}: ${who}${message}`;
}

/** The CLI's closing summary of a run. */
export function summary(counts: Record<StepKind, number>, future: boolean, outputs: Record<string, unknown>): string[] {
  const lines = ["Resources:"];
  const labels: [StepKind, string][] = [["create", future ? "to create" : "created"], ["update", future ? "to update" : "updated"],
    ["replace", future ? "to replace" : "replaced"], ["delete", future ? "to delete" : "deleted"], ["refresh", "drifted"]];
  for (const [k, label] of labels) if (counts[k]) lines.push(`    ${SYMBOL[k].trim()} ${counts[k]} ${label}`);
  if (counts.same) lines.push(`    ${counts.same} unchanged`);
  if (Object.keys(outputs).length) {
    lines.push("Outputs:");
    for (const [k, v] of Object.entries(outputs)) lines.push(`    ${k}: ${typeof v === "string" ? v : JSON.stringify(v)}`);
  }
  return lines;
}

/** Stack outputs for display: secrets as [secret], unknowns as output<unknown>. */
export function displayOutputs(outputs: Record<string, Json>): Record<string, unknown> {
  const show = (v: Json): unknown => isSecret(v) ? "[secret]" : v === UNKNOWN ? "output<unknown>"
    : Array.isArray(v) ? v.map(show) : v && typeof v === "object" ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, show(x)])) : v;
  return Object.fromEntries(Object.entries(outputs).map(([k, v]) => [k, show(v)]));
}
