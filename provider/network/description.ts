/**
 * A network description (what NixOps's network expression held). Validated by the one schema
 * (provider/schema): every field type-checked, with errors that name the field (unknown fields with
 * "did you mean", machines without a host, keys with two sources, unknown pins).
 */
import { Pin } from "../pins/pin";
import { SchemaError, descriptionProblems as schemaDescriptionProblems, networkNixProblems as schemaNetworkNixProblems } from "../schema";
import { VaultRef } from "../secrets/vault";
import { KeyPlacement } from "../keys/spec";
import { HealthCheck } from "../host/health";
import type { RolloutSpec } from "../rollout/settings";

/** One deployment key of a machine, as written in YAML. Exactly one source. */
export interface KeySpec extends KeyPlacement {
  /** Plain text (prefer `config`: plain text sits in the stack file). */
  text?: string;
  /**
   * A secret stack config value: a bare `NAME` is in the project's namespace (`pulumi config set
   * --secret NAME`), `ns:NAME` names the namespace (e.g. `pulumi-nixos:dbPassword`).
   */
  config?: string;
  /** A file on the operator's machine. */
  file?: string;
  /** argv of a command whose stdout is the content. */
  command?: string[];
  /** A field of a Vault KV secret. */
  vault?: VaultRef;
}

/**
 * A bastion on the way to a machine (`@pulumi/command`'s `remote.ProxyConnection`, without
 * secrets: it logs in with the network's private key or the ssh-agent).
 */
export interface ProxySpec {
  host: string;
  port?: number;
  user?: string;
  /** Pin of the bastion's SSH key; absent: recorded at first contact, then required. */
  hostKey?: string;
  /** The bastion's own bastion (chains). */
  proxy?: ProxySpec;
}

/** One machine of the network (NixOps names). */
export interface MachineSpec {
  targetHost: string;
  targetPort?: number;
  targetUser?: string;
  /** Pin of the host's SSH key (`ssh-ed25519 AAAA…`). */
  hostPublicKey?: string;
  /** Bastion to reach the machine through (`proxy.proxy` for a chain); `targetHost` is then as the bastion sees it. */
  proxy?: ProxySpec;
  /** Without a pinned key: `tofu` (default) or `strict` (a host not in known_hosts is refused). */
  hostKeyPolicy?: "strict" | "tofu";
  /** The ssh config applied to `targetHost` (default ~/.ssh/config; a path; false for none). Stack config `pulumi-nixos:sshConfig` sets it for all. */
  sshConfig?: boolean | string;
  configuration?: string;
  /** More modules, e.g. `[./hardware/heron.nix, ./configuration/heron.nix]`. */
  imports?: string[];
  flake?: string;
  tags?: string[];
  keys?: Record<string, KeySpec>;
  /** Name of a pin in `pins`. */
  pin?: string;
  /** Pin the host's `nixos` channel to the machine's pin (default true when pinned). */
  channel?: boolean;
  action?: "switch" | "boot" | "test";
  buildOn?: "local" | "target";
  substituteOnTarget?: boolean;
  compress?: boolean | "auto";
  /** The machine's site: hosts on one LAN behind one uplink, each path crossing it once (fan-out). */
  site?: string;
  /** A binary cache the deployer puts the closure into once and the host substitutes from (signed with the stack secret pulumi-nixos:cacheSigningKey). */
  cache?: { url: string; publicKey: string };
  connectTimeout?: number;
  activationTimeout?: number;
  /** Arm a rollback before switching; only a confirmation over a new SSH connection cancels it (default true; not for `boot`). */
  magicRollback?: boolean;
  /** Seconds to confirm after the switch (default 30); the host rolls back after activationTimeout + this. */
  confirmTimeout?: number;
  /** Checks run on the host before confirming: `{ command }` or `{ http, status?, bodyContains? }` (GET from the host). */
  healthChecks?: HealthCheck[];
  /** System generations kept on the host after each deploy: a count (the newest N) or "all" (default). */
  keepGenerations?: number | "all";
  /** In a preview, dry-activate on the host for the plan's `unitChanges` (copies the closure; default: stack config `pulumi-nixos:previewDryActivate`). */
  previewDryActivate?: boolean;
  /**
   * Module arguments of the machine's NixOS modules (JSON values), over the Network's own
   * `specialArgs` and `defaults.specialArgs` by name. Never secrets: see Machine's `specialArgs`.
   */
  specialArgs?: Record<string, unknown>;
  /** Seconds to keep dialing while the host comes up (default 0). See Machine's `waitForSsh`. */
  waitForSsh?: number;
}

/** The whole network. */
export interface NetworkDescription {
  /** `network.description`. */
  description?: string;
  /** NixOps's `network.enableRollback` (default true): recorded; deletes no host generation (see `keepGenerations`). */
  enableRollback?: boolean;
  /** Applied to every machine (a machine's own fields win). */
  defaults?: Partial<MachineSpec>;
  pins?: Record<string, Pin>;
  machines: Record<string, MachineSpec>;
  /** Waves of machines: a canary first, then batches, stopping at failures (provider/rollout/settings.ts). */
  rollout?: RolloutSpec;
}

/** Every problem of a description (empty when valid). Paths read like `network.machines.heron.keys.x.vault`. */
export function descriptionProblems(d: unknown): string[] {
  return schemaDescriptionProblems(d);
}

/** Throws one error listing every problem. */
export function validateDescription(d: unknown): asserts d is NetworkDescription {
  const p = descriptionProblems(d);
  if (p.length) throw new SchemaError(`invalid network description:\n  ${p.join("\n  ")}`);
}

/** A machine's spec with the network defaults applied. */
export function machineSpec(net: NetworkDescription, name: string): MachineSpec {
  return { ...(net.defaults ?? {}), ...net.machines[name], keys: { ...(net.defaults?.keys ?? {}), ...(net.machines[name].keys ?? {}) },
    ...(net.defaults?.specialArgs || net.machines[name].specialArgs ? { specialArgs: { ...(net.defaults?.specialArgs ?? {}), ...(net.machines[name].specialArgs ?? {}) } } : {}) };
}

/**
 * A network given as NixOps files (`networkNix`): the files are the description; these fields
 * say how to evaluate and reach it.
 */
export interface NetworkNixDescription {
  /** The network files (`nixops create a.nix b.nix`): one path or a list, merged as NixOps merges them. */
  files: string | string[];
  /** The network's arguments when its files are functions (`nixops set-args`): JSON values. */
  args?: Record<string, unknown>;
  /** Arguments as Nix expressions (`nixops set-args --arg NAME EXPR`; import-nixops writes these). */
  nixArgs?: Record<string, string>;
  /** Host keys by machine (`ssh-ed25519 AAAA…`), e.g. from the operator's known_hosts; absent: trust on first use. */
  hostPublicKeys?: Record<string, string>;
  /**
   * Public keys kept in root's authorized keys, by machine (NixOps's `none` backend added its
   * per-machine key there; import-nixops carries it over so nobody is locked out).
   */
  rootAuthorizedKeys?: Record<string, string[]>;
  /** nix-plugins' extra-builtins-file, for extra builtins other than `vault` (their `exec` commands run at deploy time). */
  extraBuiltinsFile?: string;
  /** Pins by name (`pulumi-nixos pin add` writes them). */
  pins?: Record<string, Pin>;
  /** The pin whose nixpkgs evaluates the whole network (NixOps used one NIX_PATH for all machines). */
  pin?: string;
  /** Pin each host's `nixos` channel to `pin` (default true when pinned). */
  channel?: boolean;
  /** Overrides of `deployment.targetHost` by machine (a test bed whose names do not resolve). */
  hosts?: Record<string, string>;
  /** The deployment's UUID (`uuid` in modules; import-nixops writes NixOps's). Default: derived from project and stack. */
  deploymentUuid?: string;
  /** The deployment's name (`deploymentName` in modules; import-nixops writes NixOps's). Default: the stack name. */
  deploymentName?: string;
  /** The `system.stateVersion` NixOps recorded, by machine (import-nixops writes them): applied with mkDefault. */
  stateVersions?: Record<string, string>;
}

/** Every problem of a networkNix description (empty when valid); paths read like `networkNix.pin`. */
export function networkNixProblems(d: unknown): string[] {
  return schemaNetworkNixProblems(d);
}

/** Throws one error listing every problem. */
export function validateNetworkNix(d: unknown): asserts d is NetworkNixDescription {
  const p = networkNixProblems(d);
  if (p.length) throw new SchemaError(`invalid networkNix:\n  ${p.join("\n  ")}`);
}
