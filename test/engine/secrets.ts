/**
 * Pulumi's secret wire form and the engine's secret bookkeeping, as the real engine does it:
 * the dynamic provider answers Configure with acceptSecrets=false, so it gets plain values and the
 * engine re-marks outputs afterwards (annotateSecrets + additionalSecretOutputs).
 */
import * as crypto from "crypto";

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

/** Pulumi's `v1:<nonce>:<ciphertext+tag>` AES-256-GCM format (passphrase secrets provider). */
export function sealV1(key: Buffer, plaintext: string): string {
  const nonce = crypto.randomBytes(12);
  const c = crypto.createCipheriv("aes-256-gcm", key, nonce);
  const ct = Buffer.concat([c.update(plaintext, "utf8"), c.final(), c.getAuthTag()]);
  return `v1:${nonce.toString("base64")}:${ct.toString("base64")}`;
}

/** Opens a {@link sealV1} value; `wrongKey` is the message when authentication fails. */
export function openV1(key: Buffer, value: string, wrongKey: string): string {
  const [v, n, b] = value.split(":");
  if (v !== "v1" || !n || !b) throw new Error("unrecognized ciphertext (expected v1:nonce:data)");
  const data = Buffer.from(b, "base64");
  const d = crypto.createDecipheriv("aes-256-gcm", key, Buffer.from(n, "base64"));
  d.setAuthTag(data.subarray(data.length - 16));
  try {
    return Buffer.concat([d.update(data.subarray(0, data.length - 16)), d.final()]).toString("utf8");
  } catch {
    throw new Error(wrongKey);
  }
}

/**
 * Encrypts secrets for the state file the way a passphrase secrets provider does
 * (AES-256-GCM, key from PBKDF2 of PULUMI_CONFIG_PASSPHRASE and a per-stack salt).
 */
export class PassphraseCrypter {
  private readonly key: Buffer;
  constructor(passphrase: string, readonly salt: Buffer) {
    this.key = crypto.pbkdf2Sync(passphrase, salt, 100_000, 32, "sha256");
  }

  /** Uses PULUMI_CONFIG_PASSPHRASE, as Pulumi's passphrase provider does. */
  static fromEnv(salt: Buffer): PassphraseCrypter {
    const p = process.env.PULUMI_CONFIG_PASSPHRASE;
    if (p === undefined) {
      throw new Error("secrets need a passphrase: set PULUMI_CONFIG_PASSPHRASE (it may be empty), as with `pulumi login file://`");
    }
    return new PassphraseCrypter(p, salt);
  }

  encrypt(plaintext: string): string { return sealV1(this.key, plaintext); }

  decrypt(ciphertext: string): string {
    return openV1(this.key, ciphertext, "cannot decrypt the state's secrets: wrong PULUMI_CONFIG_PASSPHRASE");
  }

  /** Wire-form secrets → `{sig, ciphertext}` as in `pulumi stack export`. */
  seal(v: Json): Json {
    if (isSecret(v)) return { [SIG]: SECRET_SIG, ciphertext: this.encrypt(JSON.stringify(v.value)) };
    if (Array.isArray(v)) return v.map((x) => this.seal(x));
    if (v && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, this.seal(x)]));
    return v;
  }

  /** `{sig, ciphertext}` → wire-form secrets. */
  open(v: Json): Json {
    if (v && typeof v === "object" && !Array.isArray(v) && v[SIG] === SECRET_SIG && typeof v.ciphertext === "string") {
      return secret(JSON.parse(this.decrypt(v.ciphertext)));
    }
    if (Array.isArray(v)) return v.map((x) => this.open(x));
    if (v && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, this.open(x)]));
    return v;
  }
}
