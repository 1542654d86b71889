/**
 * zod schemas turned into the field-named errors users already know:
 * `network.machines.heron.compress: true, false or "auto" (got "maybe")`,
 * `network.machines.heron.targetHostt: unknown field (did you mean 'targetHost'?)`.
 */
import { z } from "zod";

/** Closest known name, for "did you mean" (edit distance ≤ 3, case-insensitive). */
export function suggest(word: string, known: string[]): string {
  const dist = (a: string, b: string) => {
    const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array(b.length).fill(0)]);
    for (let j = 1; j <= b.length; j++) d[0][j] = j;
    for (let i = 1; i <= a.length; i++) for (let j = 1; j <= b.length; j++) {
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1].toLowerCase() === b[j - 1].toLowerCase() ? 0 : 1));
    }
    return d[a.length][b.length];
  };
  const best = known.map((k) => [k, dist(word, k)] as const).sort((x, y) => x[1] - y[1])[0];
  return best && best[1] <= 3 ? ` (did you mean '${best[0]}'?)` : "";
}

/**
 * An object of known fields: any other field is reported as `unknown field (did you mean …)`,
 * together with the known fields' own problems (zod's strictObject would report it alone, without
 * the suggestion).
 */
export function fields<T extends z.ZodRawShape>(shape: T, required: (keyof T)[] = []) {
  const known = Object.keys(shape);
  // Optional unless named: refinements forbid zod's .partial() afterwards.
  const opt = Object.fromEntries(Object.entries(shape).map(([k, v]) => [k, required.includes(k) ? v : (v as z.ZodType).optional()])) as T;
  return z.looseObject(opt, { error: "must be an object" }).superRefine((v, ctx) => {
    if (!v || typeof v !== "object") return;
    for (const k of Object.keys(v)) if (!known.includes(k)) ctx.addIssue({ code: "custom", path: [k], message: `unknown field${suggest(k, known)}` });
  }, { when: () => true });
}

/** A value shown in a message: strings quoted, the rest as JSON (short). */
function shown(v: unknown): string {
  const s = typeof v === "string" ? JSON.stringify(v) : JSON.stringify(v) ?? String(v);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

/**
 * Every problem of `value` against `schema`, as `ROOT.path.to.field: what it must be (got X)`;
 * empty when valid. Messages of custom checks are used as they are.
 */
export function problems(schema: z.ZodType, value: unknown, root: string): string[] {
  const r = schema.safeParse(value, { reportInput: true });
  if (r.success) return [];
  const out: string[] = [];
  for (const i of r.error.issues) {
    const where = [root, ...i.path.map(String)].join(".");
    if (i.code === "custom" && i.message.startsWith("!")) out.push(i.message.slice(1));
    else if (i.code === "custom") out.push(`${where}: ${i.message}${i.input !== undefined && (typeof i.input !== "object" || i.input === null) ? ` (got ${shown(i.input)})` : ""}`);
    else if (i.code === "invalid_type" && i.input === undefined) out.push(`${where}: required (${i.message})`);
    else out.push(`${where}: ${i.message} (got ${shown(i.input)})`);
  }
  return [...new Set(out)];
}

/** A custom problem whose message is already complete (its own path): `!network.machines: …`. */
export function whole(message: string): string {
  return `!${message}`;
}
