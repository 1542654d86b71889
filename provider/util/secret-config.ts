/**
 * Secret-bearing stack config must be set with `pulumi config set --secret`: a plain value sits in
 * clear text in the stack file and, as config, in the state's provider inputs. These helpers refuse
 * plain values with a message naming the key.
 */
import * as pulumi from "@pulumi/pulumi";
import { SchemaError } from "../schema";

/** Whether the full config key (`namespace:key`) was set as a secret (`secure:` in the stack file). */
export function isSecretConfig(fullKey: string): boolean {
  // The SDK's own check (runtime, not in its typings) reads PULUMI_CONFIG_SECRET_KEYS from its store.
  const sdk = (pulumi.runtime as unknown as { isConfigSecret?: (k: string) => boolean }).isConfigSecret;
  if (typeof sdk === "function") return sdk(fullKey);
  try {
    const keys = JSON.parse(process.env.PULUMI_CONFIG_SECRET_KEYS || "[]");
    return Array.isArray(keys) && keys.includes(fullKey);
  } catch {
    return false;
  }
}

/** The error for a secret given as plain config. */
export function plainSecretError(fullKey: string, what: string, setKey = fullKey): Error {
  return new SchemaError(`config ${fullKey}: ${what} is a secret but is set as plain text; ` +
    `set it with \`pulumi config set --secret ${setKey} <value>\` (a plain value is stored in clear text in the stack file and in state)`);
}

/** Throws when `key` of `config` is set, but not as a secret. */
export function requireSecretIfSet(config: pulumi.Config, key: string, what: string): void {
  const full = `${config.name}:${key}`;
  if (config.get(key) !== undefined && !isSecretConfig(full)) throw plainSecretError(full, what);
}

/** `config.getSecret(key)`, refusing a value that was not set with `--secret`. */
export function getSecretConfig(config: pulumi.Config, key: string, what: string): pulumi.Output<string> | undefined {
  requireSecretIfSet(config, key, what);
  return config.getSecret(key);
}
