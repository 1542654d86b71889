/**
 * The cache step of a deploy: what the host lacks goes into the machine's binary cache (once per
 * run and cache), then the host substitutes it from there, trusting only the cache's public key
 * (`require-sigs`, Nix's default: a path whose signature does not verify is refused, "lacks a
 * valid signature"). What the host still lacks afterwards is copied the usual way.
 */
import { ClosurePath } from "../nix/closure";
import { missingOnHost } from "../host/copy";
import { SshSession } from "../ssh/session";
import { Logger, plural } from "../util/log";
import { timeoutMs } from "../util/timeouts";
import { parseSigningKey } from "./cache-sign";
import { publishToCache } from "./cache-publish";

/** Inputs of a Machine with a cache. */
export interface CacheInputs { name: string; cache?: { url: string; publicKey: string }; cacheSigningKey?: string }

/** Gets `missing` onto the host through the cache; resolves with what it still lacks. */
export async function throughCache(s: SshSession, inputs: CacheInputs, closure: ClosurePath[], missing: string[], log: Logger): Promise<string[]> {
  const cache = inputs.cache!;
  if (!inputs.cacheSigningKey) throw new Error(`Machine ${inputs.name}: cache needs cacheSigningKey (the stack secret pulumi-nixos:cacheSigningKey)`);
  const key = parseSigningKey(inputs.cacheSigningKey, `Machine ${inputs.name}: cacheSigningKey`);
  const wanted = new Set(missing);
  await publishToCache(cache.url, key, closure.filter((p) => wanted.has(p.path)), log, timeoutMs("command"));
  const q = (v: string) => `'${v.replace(/'/g, `'\\''`)}'`;
  // Only this cache, only its key: the host's own substituters and keys are not asked.
  const r = await s.exec(`xargs -r nix-store --realise --option substituters ${q(cache.url)} --option trusted-public-keys ${q(cache.publicKey)} --option require-sigs true >/dev/null`,
    { stdin: missing.join("\n") + "\n", privileged: true, check: false, what: "substitution from the cache", timeoutMs: timeoutMs("command") });
  const left = await missingOnHost(s, missing);
  // Nix's SubstitutionGoal warns per path: "does not have a valid signature" (2.8), "is not signed by any of the keys" (later).
  const refused = /valid signature|not signed by any of the keys/.test(r.stderr);
  log(`cache ${cache.url}: ${plural(missing.length - left.length, "path")} substituted${left.length ? `, ${left.length} not (${refused ? "refused: no valid signature by " + cache.publicKey.split(":")[0] : "not there"}); copying those` : ""}`);
  return left;
}
