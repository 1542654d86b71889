/**
 * Pulumi's passphrase secrets manager (pkg/secrets/passphrase): a key from PBKDF2-SHA256 (1,000,000
 * iterations, 32 bytes) of the passphrase and an 8-byte salt; values sealed as
 * `v1:<nonce>:<AES-256-GCM ciphertext+tag>`. Its state — the stack file's `encryptionsalt` and the
 * export's `secrets_providers.state.salt` — is `v1:<salt>:<the sealed word "pulumi">`, which checks
 * the passphrase. One implementation serves stack config, the engine harness's state and the fleet
 * commands' reader, so what one writes the real CLI (and the others) can read.
 */
import * as crypto from "crypto";
import * as fs from "fs";

const ITERATIONS = 1_000_000;
const CHECK_WORD = "pulumi";

/** The passphrase as the CLI takes it: PULUMI_CONFIG_PASSPHRASE, else PULUMI_CONFIG_PASSPHRASE_FILE. */
export function passphraseFromEnv(): string | undefined {
  if (process.env.PULUMI_CONFIG_PASSPHRASE !== undefined) return process.env.PULUMI_CONFIG_PASSPHRASE;
  const file = process.env.PULUMI_CONFIG_PASSPHRASE_FILE;
  return file ? fs.readFileSync(file, "utf8").replace(/\r?\n$/, "") : undefined;
}

/** The CLI's message when a passphrase stack runs without one (non-interactive). */
export const MISSING_PASSPHRASE = "passphrase must be set with PULUMI_CONFIG_PASSPHRASE or PULUMI_CONFIG_PASSPHRASE_FILE environment variables";

/** Seals a string with a 32-byte key in Pulumi's v1 format. */
export function sealV1(key: Buffer, plaintext: string): string {
  const nonce = crypto.randomBytes(12);
  const c = crypto.createCipheriv("aes-256-gcm", key, nonce);
  const ct = Buffer.concat([c.update(plaintext, "utf8"), c.final(), c.getAuthTag()]);
  return `v1:${nonce.toString("base64")}:${ct.toString("base64")}`;
}

/** Opens a {@link sealV1} value; throws `wrongKey` when it does not authenticate. */
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

// PBKDF2 with a million rounds costs ~0.3 s: one derivation per (passphrase, salt) and process.
const keys = new Map<string, Buffer>();

/** A passphrase secrets manager bound to its state string. */
export class PassphraseSecrets {
  private constructor(readonly state: string, private readonly key: Buffer) {}

  /** Opens the manager of `state` (`v1:salt:check`), verifying the passphrase. */
  static open(state: string, passphrase = passphraseFromEnv(), where = "the stack"): PassphraseSecrets {
    if (passphrase === undefined) throw new Error(`${where} uses the passphrase secrets provider: ${MISSING_PASSPHRASE}`);
    const [v, salt, ...check] = state.split(":");
    if (v !== "v1" || !salt || !check.length) throw new Error(`${where}: unrecognized passphrase salt '${state}'`);
    const id = `${passphrase}\0${salt}`;
    let key = keys.get(id);
    if (!key) {
      key = crypto.pbkdf2Sync(passphrase, Buffer.from(salt, "base64"), ITERATIONS, 32, "sha256");
      keys.set(id, key);
    }
    const m = new PassphraseSecrets(state, key);
    if (m.decrypt(check.join(":"), `incorrect passphrase for ${where} (PULUMI_CONFIG_PASSPHRASE)`) !== CHECK_WORD) {
      throw new Error(`incorrect passphrase for ${where} (PULUMI_CONFIG_PASSPHRASE)`);
    }
    return m;
  }

  /** A new manager with a fresh salt, as `pulumi stack init --secrets-provider passphrase` makes. */
  static create(passphrase = passphraseFromEnv()): PassphraseSecrets {
    if (passphrase === undefined) throw new Error(`a new passphrase stack: ${MISSING_PASSPHRASE}`);
    const salt = crypto.randomBytes(8);
    const key = crypto.pbkdf2Sync(passphrase, salt, ITERATIONS, 32, "sha256");
    keys.set(`${passphrase}\0${salt.toString("base64")}`, key);
    return new PassphraseSecrets(`v1:${salt.toString("base64")}:${sealV1(key, CHECK_WORD)}`, key);
  }

  encrypt(plaintext: string): string { return sealV1(this.key, plaintext); }

  decrypt(ciphertext: string, wrongKey = "cannot decrypt a secret: wrong PULUMI_CONFIG_PASSPHRASE"): string {
    return openV1(this.key, ciphertext, wrongKey);
  }
}
