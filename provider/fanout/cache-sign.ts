/**
 * Signing binary-cache entries in-process: the key is parsed from the stack secret in memory,
 * never written to disk or passed in argv (as `nix store sign --key-file` would need). A
 * signature is ed25519 over Nix's path fingerprint (libstore/path-info.cc,
 * ValidPathInfo::fingerprint: `1;<store path>;<narHash in base32>;<narSize>;<references, sorted
 * full paths, comma-separated>`), written as a `Sig: <key name>:<base64>` line of the .narinfo
 * (libstore/nar-info.cc). Keys are Nix's format (libutil/crypto.cc, SecretKey): `name:` and the
 * base64 of libsodium's 64-byte secret key (seed, then public key).
 */
import { KeyObject, createPrivateKey, createPublicKey, sign } from "crypto";
import { narHashBytes, toBase32 } from "./nar-hash";

/** A cache signing key, in memory only. */
export interface SigningKey {
  name: string;
  privateKey: KeyObject;
  /** `name:base64(public key)`: what hosts trust (trusted-public-keys). */
  publicKey: string;
}

/** Parses a Nix secret key (`nix-store --generate-binary-cache-key`); the error never quotes it. */
export function parseSigningKey(secret: string, field = "signing key"): SigningKey {
  const m = /^([^:\s]+):([A-Za-z0-9+/=]+)$/.exec(secret.trim());
  const raw = m ? Buffer.from(m[2], "base64") : Buffer.alloc(0);
  if (!m || raw.length !== 64) throw new Error(`${field}: not a Nix binary-cache secret key (name:base64 of 64 bytes, as nix-store --generate-binary-cache-key writes)`);
  const [seed, pub] = [raw.subarray(0, 32), raw.subarray(32)];
  const privateKey = createPrivateKey({ key: { kty: "OKP", crv: "Ed25519", d: seed.toString("base64url"), x: pub.toString("base64url") }, format: "jwk" });
  // The public half must be the seed's: a mangled key would sign what no host verifies.
  const derived = Buffer.from(createPublicKey(privateKey).export({ format: "jwk" }).x!, "base64url");
  if (!derived.equals(pub)) throw new Error(`${field}: its public half does not belong to its seed`);
  return { name: m[1], privateKey, publicKey: `${m[1]}:${pub.toString("base64")}` };
}

/** Nix's fingerprint of a path (ValidPathInfo::fingerprint). */
export function pathFingerprint(storePath: string, narHash: string, narSize: number, references: string[]): string {
  const h = narHashBytes(narHash);
  if (!h) throw new Error(`${storePath}: not a SHA-256 NAR hash: ${narHash}`);
  if (!(narSize > 0)) throw new Error(`${storePath}: cannot calculate the fingerprint without its NAR size`);
  return `1;${storePath};sha256:${toBase32(h)};${narSize};${[...new Set(references)].sort().join(",")}`;
}

/** `name:base64` signature of a path, as a narinfo's Sig line carries it. */
export function signPath(key: SigningKey, storePath: string, narHash: string, narSize: number, references: string[]): string {
  return `${key.name}:${sign(null, Buffer.from(pathFingerprint(storePath, narHash, narSize, references)), key.privateKey).toString("base64")}`;
}

/** A .narinfo with this key's signature added (references there are basenames in `storeDir`). */
export function signNarInfo(text: string, key: SigningKey, storeDir = "/nix/store"): string {
  const f = new Map<string, string>();
  for (const line of text.split("\n")) { const i = line.indexOf(": "); if (i > 0) f.set(line.slice(0, i), line.slice(i + 2)); }
  const storePath = f.get("StorePath"), narHash = f.get("NarHash"), narSize = Number(f.get("NarSize"));
  if (!storePath || !narHash) throw new Error("narinfo without StorePath or NarHash");
  const refs = (f.get("References") ?? "").split(" ").filter(Boolean).map((r) => `${storeDir}/${r}`);
  const sig = signPath(key, storePath, narHash, narSize, refs);
  const kept = text.split("\n").filter((l) => l && !l.startsWith(`Sig: ${key.name}:`));
  return [...kept, `Sig: ${sig}`, ""].join("\n");
}
