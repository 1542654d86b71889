/**
 * A NixOps network expression (network.nix, unchanged) read at program time: one `nix-instantiate`
 * evaluates every machine's `deployment.*` (provider/nix/nixops/eval-network.nix), what pulumi-nixos
 * cannot do is named, and each key's content source is resolved from the references that
 * `builtins.extraBuiltins` returned in place of secrets.
 */
import { spawn, spawnSync } from "child_process";
import * as pulumi from "@pulumi/pulumi";
import { networkExpr, NixopsNetworkSource } from "../nix/network-expr";
import { includeArgs } from "../nix/nix-expr";
import { describeTimeout, timeoutMs } from "../util/timeouts";
import { readVaultField, VaultAccess, VaultRef } from "../secrets/vault";

/** A key as NixOps's `deployment.keys.<name>` declares it. */
export interface NixKeyInfo {
  name: string;
  /** Literal text, or text holding `extraBuiltins` references. */
  text: string | null;
  keyFile: string | null;
  keyCommand: string[] | null;
  user: string;
  group: string;
  permissions: string;
  destDir: string;
}

/** A machine's `deployment.*` values. */
export interface NixMachineInfo {
  targetEnv: string;
  targetHost: string;
  targetPort: number;
  targetUser: string;
  hasFastConnection: boolean;
  alwaysActivate: boolean;
  tags: string[];
  sshOptions: string[];
  /** NixOps 1.7's `deployment.storeKeysOnMachine` (keys in the Nix store): only false. */
  storeKeysOnMachine: boolean;
  /** NixOps 1.7's `deployment.encryptedLinksTo` (SSH tunnels): only empty. */
  encryptedLinksTo: string[];
  /** argv before a privileged command for a non-root targetUser (NixOps's default `sudo -H --`). */
  privilegeEscalationCommand: string[];
  keys: Record<string, NixKeyInfo>;
  /** Every deployment option name the machine has. */
  options: string[];
}

/** The network's deployment data, from one evaluation. */
export interface NetworkNixInfo {
  network: {
    description: string; enableRollback: boolean; attributes: string[];
    /** NixOps 2's `network.storage` / `network.lock` backends (their names). */
    storage: string[]; lock: string[];
    /** The path of `network.nixpkgs` (NixOps 2: the nixpkgs the whole network is evaluated with), or null. */
    nixpkgs: string | null;
  };
  /** `resources.<type>.<name>` the network declares (unsupported). */
  resources: string[];
  machines: Record<string, NixMachineInfo>;
}

/** Deployment options pulumi-nixos reads, or accepts with their NixOps meaning. */
const KNOWN_OPTIONS = ["targetEnv", "targetHost", "targetPort", "targetUser", "hasFastConnection", "alwaysActivate", "tags", "keys",
  "owners", "sshOptions", "provisionSSHKey", "privilegeEscalationCommand", "name", "uuid", "arguments", "storeKeysOnMachine", "encryptedLinksTo"];
/** `network.*` read (description, enableRollback) or accepted and ignored with a note (NixOps 2's storage, lock). */
const KNOWN_NETWORK = ["description", "enableRollback", "storage", "lock"];

/**
 * Evaluates the network's deployment data (blocking: the machines are only known after it).
 * A failure names the files and carries Nix's own message (file and line of a syntax error).
 */
export function evaluateNetworkNix(src: NixopsNetworkSource, nixPath: string[]): NetworkNixInfo {
  const env = { ...process.env };
  // A pinned network never sees the operator's NIX_PATH or channels.
  if (nixPath.length) env.NIX_PATH = "";
  // Read-only --eval: no .drv and nothing else is written to the store by this evaluation.
  const r = spawnSync("nix-instantiate", ["--eval", "--strict", "--json", ...includeArgs(nixPath), "-E", `${networkExpr(src)}.info`],
    { env, encoding: "utf8", timeout: timeoutMs("eval"), killSignal: "SIGKILL", maxBuffer: 64 << 20 });
  const what = `networkNix ${src.files.join(" + ")}`;
  if ((r.error as NodeJS.ErrnoException | undefined)?.code === "ETIMEDOUT") throw new Error(`${what}: evaluation did not finish within ${describeTimeout("eval")}`);
  if (r.error) throw new Error(`${what}: cannot run nix-instantiate: ${r.error.message}`);
  if (r.status !== 0) {
    const msg = r.stderr.split("\n").filter((l) => l.trim() && !/^warning: unknown setting/.test(l)).join("\n");
    throw new Error(`${what}: evaluation failed:\n${msg}`);
  }
  return JSON.parse(r.stdout) as NetworkNixInfo;
}

/**
 * The path of the network's own `network.nixpkgs` (NixOps 2), evaluated with an empty NIX_PATH (a
 * network that needs <nixpkgs> for it gives null): a network that brings its nixpkgs is pinned.
 */
export function networkOwnNixpkgs(src: NixopsNetworkSource): string | null {
  const r = spawnSync("nix-instantiate", ["--eval", "--strict", "--json", "-E", `${networkExpr(src)}.networkNixpkgs`],
    { env: { ...process.env, NIX_PATH: "" }, encoding: "utf8", timeout: timeoutMs("eval"), killSignal: "SIGKILL", maxBuffer: 1 << 20 });
  if (r.error || r.status !== 0) return null;
  return JSON.parse(r.stdout) as string | null;
}

/** What the network says that pulumi-nixos accepts and does otherwise (NixOps 2's storage, lock, nixpkgs beside a pin). */
export function networkNotes(info: NetworkNixInfo, pin: string | undefined): string[] {
  const out: string[] = [];
  if (info.network.storage.length) out.push(`network.storage.${info.network.storage[0]} is ignored: the stack's Pulumi backend holds the deployment's state`);
  if (info.network.lock.length) out.push(`network.lock.${info.network.lock[0]} is ignored: the stack's Pulumi backend locks the deployment during a run`);
  if (info.network.nixpkgs && pin) out.push(`network.nixpkgs (${info.network.nixpkgs}) evaluates the network, as NixOps 2 does; pin ${pin} gives <nixpkgs> and each host's channel`);
  return out;
}


/** What the network asks that pulumi-nixos does not do, each naming the machine and option. */
export function unsupportedProblems(info: NetworkNixInfo): string[] {
  const out: string[] = [];
  for (const r of info.resources) {
    out.push(`resources.${r}: NixOps resources are not supported (pulumi-nixos deploys existing hosts; declare other resources with their Pulumi providers)`);
  }
  for (const a of info.network.attributes.filter((x) => !KNOWN_NETWORK.includes(x))) out.push(`network.${a}: not supported (the stack holds the deployment's state)`);
  // As NixOps 2 (nixops/evaluation.py `eval_network`): one storage backend, at most one lock backend.
  if (info.network.storage.length > 1) out.push(`network.storage: only one storage backend (got ${info.network.storage.join(", ")}; NixOps 2 refuses this too)`);
  if (info.network.lock.length > 1) out.push(`network.lock: only one lock backend (got ${info.network.lock.join(", ")}; NixOps 2 refuses this too)`);
  if (!Object.keys(info.machines).length) out.push("the network has no machines");
  for (const [m, d] of Object.entries(info.machines)) {
    if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(m)) out.push(`${m}: machine names use letters, digits, '.', '_', '-'`);
    if (d.targetEnv !== "none") out.push(`${m}: deployment.targetEnv = "${d.targetEnv}" is not supported (only "none": an existing host reached at deployment.targetHost)`);
    for (const o of d.options.filter((x) => !KNOWN_OPTIONS.includes(x))) out.push(`${m}: deployment.${o} is not supported (only targetEnv "none" options: targetHost, targetPort, targetUser, keys, tags, hasFastConnection, alwaysActivate)`);
    if (d.sshOptions.length) out.push(`${m}: deployment.sshOptions is not supported (connections use the stack's key and pin the host key)`);
    // NixOps 1.7 nix/keys.nix: true wrote every key into the world-readable Nix store.
    if (d.storeKeysOnMachine) out.push(`${m}: deployment.storeKeysOnMachine = true is not supported (it put keys in the world-readable Nix store; pulumi-nixos uploads them into destDir, in RAM): remove it or set it to false`);
    if (d.encryptedLinksTo.length) out.push(`${m}: deployment.encryptedLinksTo is not supported (NixOps's SSH tunnels to ${d.encryptedLinksTo.join(", ")}): remove it and use a VPN module (e.g. networking.wireguard)`);
    for (const [k, key] of Object.entries(d.keys)) {
      const given = (["text", "keyFile", "keyCommand"] as const).filter((s) => key[s] !== null);
      if (given.length !== 1) out.push(`${m}: deployment.keys.${k}: give exactly one of text, keyFile, keyCommand (got ${given.length ? given.join(" and ") : "none"})`);
    }
  }
  return out;
}

/** A reference left by `builtins.extraBuiltins` in place of a secret. */
export type ExtraBuiltinRef = { kind: "vault"; value: { path: string; field: string } } | { kind: "exec"; value: string[] };

const REF = /@@pulumi-nixos-ref(\{.*?\})@@/g;

/** Splits a key's text into literal parts and references (the text of a key that holds none is one literal part). */
export function splitRefs(text: string): (string | ExtraBuiltinRef)[] {
  const parts: (string | ExtraBuiltinRef)[] = [];
  let last = 0;
  for (const m of text.matchAll(REF)) {
    if (m.index! > last) parts.push(text.slice(last, m.index));
    parts.push(JSON.parse(m[1]) as ExtraBuiltinRef);
    last = m.index! + m[0].length;
  }
  if (last < text.length || !parts.length) parts.push(text.slice(last));
  return parts;
}

/** Where a network key's content comes from, as DeploymentKey inputs. */
export interface NixKeySource {
  text?: pulumi.Input<string>;
  file?: string;
  command?: string[];
  vault?: VaultRef;
  /** The content is written in a Nix file (warned about). */
  literal?: boolean;
}

/**
 * A key's source: a lone `extraBuiltins.vault` reference → a `vault` source (node-vault at deploy
 * time); `keyFile` → `file`; `keyCommand` → `command`; literal text → a Pulumi secret; text mixing
 * references and literal parts → a secret assembled when the references are read.
 */
export function nixKeySource(label: string, key: NixKeyInfo, vault: () => pulumi.Output<VaultAccess>): NixKeySource {
  if (key.keyFile !== null) return { file: key.keyFile };
  if (key.keyCommand !== null) return { command: key.keyCommand };
  const parts = splitRefs(key.text ?? "");
  if (parts.length === 1 && typeof parts[0] !== "string" && parts[0].kind === "vault") return { vault: { path: parts[0].value.path, field: parts[0].value.field } };
  if (parts.every((p) => typeof p === "string")) return { text: pulumi.secret(key.text ?? ""), literal: true };
  return { text: pulumi.secret(vault().apply((access) => resolveKeyText(label, parts, access))) };
}

/** The content of a text with references: each read (Vault, exec command), the literal parts kept. */
export async function resolveKeyText(label: string, parts: (string | ExtraBuiltinRef)[], access: VaultAccess): Promise<string> {
  return (await Promise.all(parts.map((p) => typeof p === "string" ? p : resolveRef(label, p, access)))).join("");
}

/** Reads one reference: Vault with node-vault, an `exec` builtin by running its command. */
async function resolveRef(label: string, ref: ExtraBuiltinRef, access: VaultAccess): Promise<string> {
  if (ref.kind === "vault") {
    try {
      return await readVaultField({ path: ref.value.path, field: ref.value.field }, access);
    } catch (e) {
      throw new Error(`${label}: ${(e as Error).message}`);
    }
  }
  return parseNixString(label, ref.value[0], await runExec(label, ref.value));
}

/** nix-plugins' `exec`: the command's stdout is a Nix expression; here it must be a string literal. */
function runExec(label: string, argv: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0], argv.slice(1), { stdio: ["ignore", "pipe", "pipe"] });
    const out: Buffer[] = [];
    let err = "";
    const timer = setTimeout(() => { child.kill("SIGKILL"); reject(new Error(`${label}: ${argv[0]} did not finish within ${describeTimeout("command")}`)); }, timeoutMs("command"));
    child.stdout.on("data", (d: Buffer) => out.push(d));
    child.stderr.on("data", (d: Buffer) => { if (err.length < 4096) err += d.toString(); });
    child.on("error", (e) => { clearTimeout(timer); reject(new Error(`${label}: cannot run ${argv[0]}: ${e.message}`)); });
    child.on("close", (code) => {
      clearTimeout(timer);
      // stdout is the secret: never in a message.
      if (code !== 0) reject(new Error(`${label}: ${argv[0]} exited with ${code}: ${err.trim().slice(0, 500)}`));
      else resolve(Buffer.concat(out).toString("utf8"));
    });
  });
}

/** The value of a Nix double-quoted string literal (what exec wrappers such as the seed's print). */
export function parseNixString(label: string, cmd: string, out: string): string {
  const s = out.trim();
  if (!s.startsWith('"') || !s.endsWith('"') || s.length < 2) throw new Error(`${label}: the output of ${cmd} is not a Nix string literal ("…")`);
  let v = "";
  for (let i = 1; i < s.length - 1; i++) {
    const c = s[i];
    if (c === '"') throw new Error(`${label}: the output of ${cmd} is not one Nix string literal`);
    if (c !== "\\") { v += c; continue; }
    const n = s[++i];
    v += n === "n" ? "\n" : n === "t" ? "\t" : n === "r" ? "\r" : n;
  }
  return v;
}
