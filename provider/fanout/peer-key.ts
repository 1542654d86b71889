/**
 * The per-deploy key one site host uses to send paths to another: an ed25519 pair made in memory
 * on the deployer, in OpenSSH's own formats (PROTOCOL.key "openssh-key-v1", unencrypted; the
 * public key as in RFC 8709). Never written on the deployer; its private half goes only to the
 * sending host's /run for the time of one transfer.
 */
import { generateKeyPairSync, randomBytes } from "crypto";

/** An ephemeral SSH key pair. */
export interface PeerKey {
  /** `ssh-ed25519 AAAA… comment`, for an authorized_keys line. */
  publicLine: string;
  /** The private key file's text (openssh-key-v1 PEM). */
  privatePem: string;
}

const str = (b: Buffer | string) => { const x = Buffer.from(b); const l = Buffer.alloc(4); l.writeUInt32BE(x.length); return Buffer.concat([l, x]); };
const u32 = (n: number) => { const l = Buffer.alloc(4); l.writeUInt32BE(n); return l; };

/** A new ed25519 key pair; `comment` names it in authorized_keys (so it can be removed by name). */
export function newPeerKey(comment: string): PeerKey {
  const { publicKey, privateKey } = generateKeyPairSync("ed25519");
  const pub = Buffer.from(publicKey.export({ format: "jwk" }).x!, "base64url");
  const seed = Buffer.from(privateKey.export({ format: "jwk" }).d!, "base64url");
  const pubBlob = Buffer.concat([str("ssh-ed25519"), str(pub)]);
  const check = randomBytes(4);
  let priv = Buffer.concat([check, check, str("ssh-ed25519"), str(pub), str(Buffer.concat([seed, pub])), str(comment)]);
  // Padded to the cipher block size ("none": 8) with 1, 2, 3, …
  const pad = (8 - (priv.length % 8)) % 8;
  priv = Buffer.concat([priv, Buffer.from(Array.from({ length: pad }, (_, i) => i + 1))]);
  const body = Buffer.concat([Buffer.from("openssh-key-v1\0"), str("none"), str("none"), str(""), u32(1), str(pubBlob), str(priv)]);
  const b64 = body.toString("base64").replace(/(.{70})/g, "$1\n").replace(/\n$/, "");
  return {
    publicLine: `ssh-ed25519 ${pubBlob.toString("base64")} ${comment}`,
    privatePem: `-----BEGIN OPENSSH PRIVATE KEY-----\n${b64}\n-----END OPENSSH PRIVATE KEY-----\n`,
  };
}
