/**
 * Where a deployment key's content comes from, resolved at program time into a Pulumi secret:
 * plain text / a Pulumi secret, a file on the operator's machine, a command's stdout, or a Vault
 * KV field. Errors name the key and the source, and never include the content.
 */
import * as fs from "fs";
import { SchemaError } from "../schema";
import { spawn } from "child_process";
import { readVaultField, VaultAccess, VaultRef } from "./vault";

/** Exactly one of these gives a key its content. */
export interface KeySource {
  /** The content itself (pass a Pulumi secret, e.g. `config.requireSecret(...)`). */
  text?: string;
  /** A file on the operator's machine. */
  file?: string;
  /** argv of a command whose stdout is the content (like NixOps 2's keyCommand). */
  command?: string[];
  /** A field of a Vault KV secret, read with VAULT_ADDR / VAULT_TOKEN. */
  vault?: VaultRef;
}

/** Which source a spec uses; throws unless exactly one is given. */
export function sourceKind(keyName: string, s: KeySource): keyof KeySource {
  const given = (["text", "file", "command", "vault"] as const).filter((k) => s[k] !== undefined && s[k] !== null);
  if (given.length !== 1) {
    throw new SchemaError(`DeploymentKey ${keyName}: give exactly one of text, file, command, vault (got ${given.length ? given.join(" and ") : "none"})`);
  }
  return given[0];
}

/** Reads the content of a key from its (non-text) source. */
export async function readKeySource(keyName: string, s: KeySource, vaultAccess?: VaultAccess): Promise<string> {
  switch (sourceKind(keyName, s)) {
    case "text":
      return s.text!;
    case "file":
      try {
        return fs.readFileSync(s.file!, "utf8");
      } catch (e: any) {
        throw new Error(`DeploymentKey ${keyName}: cannot read file ${s.file}: ${e.code === "ENOENT" ? "no such file" : e.code === "EACCES" ? "permission denied" : e.message}`);
      }
    case "command":
      return runKeyCommand(keyName, s.command!);
    case "vault":
      try {
        return await readVaultField(s.vault!, vaultAccess);
      } catch (e) {
        throw new Error(`DeploymentKey ${keyName}: ${(e as Error).message}`);
      }
  }
  throw new Error("unreachable");
}

function runKeyCommand(keyName: string, argv: string[]): Promise<string> {
  if (!Array.isArray(argv) || !argv.length) return Promise.reject(new Error(`DeploymentKey ${keyName}: command must be a non-empty argv list`));
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0], argv.slice(1), { stdio: ["ignore", "pipe", "pipe"] });
    const out: Buffer[] = [];
    let err = "";
    child.stdout.on("data", (d: Buffer) => out.push(d));
    child.stderr.on("data", (d: Buffer) => { err += d.toString(); });
    child.on("error", (e) => reject(new Error(`DeploymentKey ${keyName}: cannot run ${argv[0]}: ${e.message}`)));
    child.on("close", (code) => {
      // stdout is the secret: it never goes into the message.
      if (code !== 0) return reject(new Error(`DeploymentKey ${keyName}: command ${argv[0]} exited with ${code}: ${err.trim().slice(0, 500)}`));
      resolve(Buffer.concat(out).toString("utf8"));
    });
  });
}

/**
 * A key's `config:` source in a network description, as the config key it names: `ns:name` as
 * written; a bare `name` is in the project's namespace (`namespace` undefined), where
 * `pulumi config set --secret name` stores it, whatever the project is called.
 */
export function configSecretRef(ref: string): { namespace?: string; key: string } {
  const i = ref.indexOf(":");
  return i < 0 ? { key: ref } : { namespace: ref.slice(0, i), key: ref.slice(i + 1) };
}
