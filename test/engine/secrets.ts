/**
 * Pulumi's secret wire form and the engine's secret bookkeeping, as the real engine does it:
 * the dynamic provider answers Configure with acceptSecrets=false, so it gets plain values and the
 * engine re-marks outputs afterwards (annotateSecrets + additionalSecretOutputs).
 */
import type { PassphraseSecrets } from "../../provider/state/passphrase";

/** Signature key of Pulumi's special objects. */
export const SIG = "4dabf18193072939515e22adb298388d";
/** Signature value of a secret. */
export const SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270";
/** The engine's "unknown during preview" marker. */
export const UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9";

/** A JSON value as it crosses the wire. */
export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

export const isSecret = (v: unknown): v is { [SIG]: string; value: Json } =>
  !!v && typeof v === "object" && (v as Record<string, unknown>)[SIG] === SECRET_SIG;

export const secret = (value: Json): Json => ({ [SIG]: SECRET_SIG, value });

/** True when v is or contains a secret. */
export const containsSecret = (v: unknown): boolean =>
  isSecret(v) || (!!v && typeof v === "object" && Object.values(v as object).some(containsSecret));

/** Removes secret markers (what the engine sends to a provider that does not accept secrets). */
export function strip(v: Json): Json {
  if (isSecret(v)) return strip(v.value);
  if (Array.isArray(v)) return v.map(strip);
  if (v && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, strip(x)]));
  return v;
}

/**
 * Re-marks outputs as secret where the matching input (same key path) held a secret, as the
 * engine's annotateSecrets does; then applies additionalSecretOutputs at the top level.
 */
export function annotate(outs: Record<string, Json>, ins: Record<string, Json>, additional: string[] = []): Record<string, Json> {
  const walk = (o: Record<string, Json>, i: Record<string, Json>) => {
    for (const [k, inV] of Object.entries(i)) {
      if (!(k in o)) continue;
      const ov = o[k];
      if (isPlainObject(ov) && isPlainObject(inV)) walk(ov, inV);
      else if (!isSecret(ov) && containsSecret(inV)) o[k] = secret(ov);
    }
  };
  const copy = JSON.parse(JSON.stringify(outs)) as Record<string, Json>;
  walk(copy, ins);
  for (const k of additional) if (k in copy && !isSecret(copy[k])) copy[k] = secret(copy[k]);
  return copy;
}

function isPlainObject(v: unknown): v is Record<string, Json> {
  return !!v && typeof v === "object" && !Array.isArray(v) && !isSecret(v);
}

/** Wire-form secrets → `{sig, ciphertext}` as in `pulumi stack export`. */
export function sealSecrets(v: Json, m: PassphraseSecrets): Json {
  if (isSecret(v)) return { [SIG]: SECRET_SIG, ciphertext: m.encrypt(JSON.stringify(v.value)) };
  if (Array.isArray(v)) return v.map((x) => sealSecrets(x, m));
  if (v && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, sealSecrets(x, m)]));
  return v;
}

/** `{sig, ciphertext}` → wire-form secrets. */
export function openSecrets(v: Json, m: () => PassphraseSecrets): Json {
  if (v && typeof v === "object" && !Array.isArray(v) && v[SIG] === SECRET_SIG && typeof v.ciphertext === "string") {
    return secret(JSON.parse(m().decrypt(v.ciphertext, "cannot decrypt the state's secrets: wrong PULUMI_CONFIG_PASSPHRASE")));
  }
  if (Array.isArray(v)) return v.map((x) => openSecrets(x, m));
  if (v && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, openSecrets(x, m)]));
  return v;
}
