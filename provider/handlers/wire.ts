/**
 * What every handler result passes through before the SDK's dynamic-provider plugin serializes it.
 * The plugin turns results (Check inputs, Create/Update/Read outputs, a partial failure's
 * `properties`) into a protobuf Struct with `Struct.fromJavaScript`, which throws "Unexpected
 * struct type" on `undefined` (and on functions, symbols, bigints): the host has then been
 * changed, nothing is recorded, and a partial failure's RPC is never answered. Handlers build
 * results without such values; this is the net that names the field if one slips by.
 */

import { flushLog } from "../util/log";

/** The path of the first value protobuf's Struct cannot hold, or undefined when there is none. */
export function unwirable(v: unknown, at = ""): string | undefined {
  if (v === null || typeof v === "string" || typeof v === "boolean") return undefined;
  if (typeof v === "number") return Number.isFinite(v) ? undefined : `${at || "(value)"} is ${v}`;
  if (v === undefined || typeof v === "function" || typeof v === "symbol" || typeof v === "bigint") return `${at || "(value)"} is ${v === undefined ? "undefined" : `a ${typeof v}`}`;
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) { const p = unwirable(v[i], `${at}[${i}]`); if (p) return p; }
    return undefined;
  }
  if (typeof v === "object") {
    // Only plain data: a Date, a Buffer or a class instance would not come back as it went.
    const proto = Object.getPrototypeOf(v);
    if (proto !== Object.prototype && proto !== null) return `${at || "(value)"} is a ${(v as object).constructor?.name ?? "non-plain object"}`;
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) { const p = unwirable(x, at ? `${at}.${k}` : k); if (p) return p; }
    return undefined;
  }
  return `${at} has an unsupported type`;
}

/**
 * `value` unchanged when Pulumi can record it; otherwise an error naming the resource, the
 * result and the offending field (a bug of ours: the message says so).
 */
export function wireSafe<T>(value: T, resource: string, what: string): T {
  const bad = unwirable(value);
  if (bad) throw new Error(`${resource}: internal error: the ${what} cannot be recorded by Pulumi: ${bad} (please report this to pulumi-nixos)`);
  return value;
}

/** Handler functions of one resource kind, as the serialized provider calls them. */
type Handlers = {
  check?: (olds: any, news: any) => any;
  diff?: (id: string, olds: any, news: any) => any;
  create?: (inputs: any) => any;
  update?: (id: string, olds: any, news: any) => any;
  read?: (id: string, props: any) => any;
  remove?: (id: string, props: any) => any;
};

/**
 * The handlers with every result checked by {@link wireSafe}: Check's `inputs`, Create/Update's
 * `outs`, Read's `props` and `inputs`, and the `properties` of a partial failure (an error with
 * an `id`, which the plugin records as "created but unhealthy"); and each step's log delivered
 * before it answers.
 */
export function wired<H extends Handlers>(kind: string, h: H): H {
  const label = (x: any) => `${kind} ${x?.resource ?? x?.name ?? ""}`.trim();
  const guard = async <R>(who: any, run: () => Promise<R> | R): Promise<R> => {
    try {
      return await run();
    } catch (e: any) {
      if (e && typeof e === "object" && e.id && e.properties) wireSafe(e.properties, label(who), "partial failure's properties");
      throw e;
    } finally {
      // The step's progress (Engine.Log, its own connection) is delivered before its answer:
      // an engine that ends after a failed step would otherwise drop the last lines (a build log).
      await flushLog();
    }
  };
  const out: Handlers = { ...h };
  if (h.check) out.check = (o, n) => guard(n, async () => { const r = await h.check!(o, n); wireSafe(r?.inputs, label(n), "checked inputs"); return r; });
  if (h.create) out.create = (i) => guard(i, async () => { const r = await h.create!(i); wireSafe(r?.outs, label(i), "outputs"); return r; });
  if (h.update) out.update = (id, o, n) => guard(n, async () => { const r = await h.update!(id, o, n); wireSafe(r?.outs, label(n), "outputs"); return r; });
  if (h.read) {
    out.read = (id, p) => guard(p, async () => {
      const r = await h.read!(id, p);
      wireSafe(r?.props, label(p), "refreshed outputs");
      if (r?.inputs !== undefined) wireSafe(r.inputs, label(p), "refreshed inputs");
      return r;
    });
  }
  if (h.remove) out.remove = (id, p) => guard(p, () => h.remove!(id, p));
  return out as H;
}
