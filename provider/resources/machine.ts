import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import { ConnectionArgs, Connection } from "../connection";
import type { CommandConnection } from "../command-connection";
import { evaluateSystem } from "../nix/evaluate";
import { NixopsNetworkSource } from "../nix/network-expr";
import { fetchPin, Pin } from "../pins/pin";
import { runtimeProvider } from "./runtime-provider";
import { engineUrn } from "./engine-urn";
import type { HealthCheck } from "../host/health";
import type { MachineRollout } from "../rollout/settings";

const machineProvider = runtimeProvider("machine");
import { connectionInputs } from "./connection-inputs";
import { checkArgs, SchemaError } from "../schema";
import { claimHost } from "./host-claims";
import { projectRoot } from "./portable-path";
import { portableFlake, portablePath } from "../util/recorded-path";
import { keySpecProblems } from "../keys/spec";
import { TYPE_MODULE, withOldTypeAlias } from "./type-tokens";
import { checkSpecialArgNames, jsonArgs, refusedArgs, SpecialArgs } from "./special-args";

/** Inputs of a {@link Machine}: a host and the NixOS system it should run. */
export interface MachineArgs {
  /** How to reach the host. */
  connection: pulumi.Input<ConnectionArgs>;
  /**
   * Path of the machine's configuration.nix (a NixOS module), evaluated with `<nixpkgs/nixos>`.
   * Exactly one of `configuration`, `flake`, `systemPath`.
   */
  configuration?: pulumi.Input<string>;
  /** Labels for selecting machines (`pulumi-nixos targets --tag web`, `info --tag web`). */
  tags?: pulumi.Input<pulumi.Input<string>[]>;
  /** More module files evaluated with `configuration` (NixOps-style `imports`). */
  imports?: pulumi.Input<pulumi.Input<string>[]>;
  /**
   * NixOps's `network.enableRollback` (default true): recorded for the network; it deletes nothing
   * on the host (NixOps used it only for the deployer's network profile). See `keepGenerations`.
   */
  enableRollback?: pulumi.Input<boolean>;
  /**
   * Host system generations kept after each successful deploy: a number N keeps the newest N
   * (`nix-env --delete-generations +N`), "all" (default) keeps every one.
   */
  keepGenerations?: pulumi.Input<number | "all">;
  /** NIX_PATH entries for `configuration`, e.g. `["nixpkgs=/path/to/nixpkgs"]` (channel pins fill this). */
  nixPath?: pulumi.Input<pulumi.Input<string>[]>;
  /**
   * The pinned nixpkgs to evaluate `configuration` against (`{ url, sha256 }`): fetched and verified
   * at program time, then `<nixpkgs>` is that tree. The operator's NIX_PATH and channels are never used.
   */
  pin?: pulumi.Input<Pin>;
  /** Allow evaluating `configuration` with neither `pin` nor a `nixpkgs=` nixPath entry (the operator's NIX_PATH). */
  allowUnpinned?: boolean;
  /** `<flakeref>#<name>`: deploys `nixosConfigurations.<name>.config.system.build.toplevel`. */
  flake?: pulumi.Input<string>;
  /**
   * This machine (by its resource name) of a NixOps network expression, evaluated against `pin` /
   * `nixPath` as NixOps's eval-machine-info.nix does (the `Network` component's `networkNix` sets it).
   */
  nixopsNetwork?: NixopsNetworkSource;
  /** An already built system (a store path in the local store or on the host). */
  systemPath?: pulumi.Input<string>;
  /** switch-to-configuration action: `switch` (default), `boot` or `test`. */
  action?: pulumi.Input<"switch" | "boot" | "test">;
  /** Where to build: `local` (default) or `target` (the .drv closure is copied and built on the host). */
  buildOn?: pulumi.Input<"local" | "target">;
  /** Let the host fetch paths from its own binary caches before copying (default false). */
  substituteOnTarget?: pulumi.Input<boolean>;
  /**
   * The machine's site: hosts sharing a LAN behind one uplink (a rack, an office, a region). In one
   * run, each path the site lacks crosses the uplink once; the site's hosts pass it on to each
   * other over the LAN, each checking every path against this deployer's NAR hash and size.
   */
  site?: pulumi.Input<string>;
  /**
   * A binary cache as the medium: the deployer puts what the host lacks there once (signed
   * in-process with `cacheSigningKey`), the host substitutes from `url` trusting `publicKey` only.
   */
  cache?: pulumi.Input<{ url: string; publicKey: string }>;
  /** The cache's Nix secret key (`name:base64`); a secret in state, never on disk or in argv. */
  cacheSigningKey?: pulumi.Input<string>;
  /**
   * zstd on the copy stream: "auto" (default) measures the link and a sample of the closure when
   * over 32 MiB must be sent, and compresses only when that is faster (the choice is logged);
   * true/false force it.
   */
  compress?: pulumi.Input<boolean | "auto">;
  /** Seconds to wait for the SSH connection (default 15). */
  connectTimeout?: pulumi.Input<number>;
  /** Seconds switch-to-configuration may run (default 600). */
  activationTimeout?: pulumi.Input<number>;
  /**
   * Magic rollback (default true; never for `boot`): before switching, the host arms a timer that
   * rolls it back to the previous generation after activationTimeout + confirmTimeout, unless the
   * deployer confirms over a NEW SSH connection (and the health checks pass). A rollback fails the resource.
   */
  magicRollback?: pulumi.Input<boolean>;
  /** Seconds the deployer has to confirm after the switch (default 30). */
  confirmTimeout?: pulumi.Input<number>;
  /**
   * Checks run on the host over the confirming connection: `{ command }` (exit 0 passes) or
   * `{ http, status?, bodyContains? }` (a GET made from the host); each with `timeout` (10 s) and
   * `retries` (0). A failure rolls back, with the check's output in the error.
   */
  healthChecks?: pulumi.Input<HealthCheck[]>;
  /**
   * Metadata of this machine's deployment keys (names, owners, modes: never content), given to its
   * evaluation as `deployment.keys` so provider/nix/keys.nix can create `<attr>-key.service` units.
   */
  keys?: pulumi.Input<Record<string, { name?: string; destDir?: string; user?: string; group?: string; permissions?: string }>>;
  /**
   * Build the system locally during preview, so the plan's `closureChanges` is exact rather than
   * read from the derivations (default: stack config `pulumi-nixos:previewBuild`, else false).
   */
  previewBuild?: pulumi.Input<boolean>;
  /**
   * In a preview, copy the closure to the host and run `switch-to-configuration dry-activate`
   * there, so the plan's `unitChanges` names the units it would stop, restart, reload or start
   * (implies previewBuild; the preview then contacts the host; default: stack config
   * `pulumi-nixos:previewDryActivate`, else false).
   */
  previewDryActivate?: pulumi.Input<boolean>;
  /**
   * The machine's own name (default: the resource name): the deployment's id, its lock on the host,
   * log lines, the NixOps machine of `nixopsNetwork`, and what `pulumi-nixos` commands select with
   * --include. A {@link Network} names its Machines `<network>-<machine>` and sets this to `<machine>`.
   */
  machineName?: string;
  /**
   * Values of the program handed to the machine's modules as module arguments
   * (`{ config, pkgs, dbHost, ... }:`): JSON values, Outputs of other resources included (the
   * machine then evaluates once they are known, and a preview plans it as changing "known after
   * specialArgs.<name> is known"). `configuration` is evaluated through nixpkgs's
   * `nixos/lib/eval-config.nix` with them as `specialArgs`, a flake through `extendModules`, a
   * NixOps network machine beside the network's own arguments. Never secrets (they end up in the
   * Nix store): a secret anywhere inside is refused; deploy it as a {@link DeploymentKey} and pass
   * the key's `path`. Names NixOS or NixOps give modules (`config`, `lib`, `pkgs`, `options`,
   * `modulesPath`, `name`, `nodes`, `resources`, `uuid`, `deploymentName`) are refused.
   */
  specialArgs?: pulumi.Input<SpecialArgs>;
  /**
   * Seconds (in total) to keep dialing a host that does not answer SSH yet — one that is still
   * being created or booting — logging "waiting for SSH on <host>" once; the host key learned
   * then is pinned like any other. Default 0: one attempt within connectTimeout.
   */
  waitForSsh?: pulumi.Input<number>;
  /** Set by a {@link Network} with a `rollout`: the machine's place in the waves (recorded only, never redeploys). */
  rollout?: MachineRollout;
}

/**
 * One NixOS host, deployed as `nixops deploy` does: the system is evaluated at program time
 * (so preview shows which machines change), built, copied over SSH and activated.
 * Deleting the resource forgets the machine; the host keeps running its last system.
 */
export class Machine extends pulumi.dynamic.Resource {
  /** The deployed system toplevel (store path). */
  declare readonly systemPath: pulumi.Output<string>;
  /** The toplevel's derivation ("" for a prebuilt systemPath). */
  declare readonly drvPath: pulumi.Output<string>;
  /** Generation of /nix/var/nix/profiles/system after the deploy. */
  declare readonly generation: pulumi.Output<number>;
  /** The system the host ran before this deploy. */
  declare readonly previousSystemPath: pulumi.Output<string>;
  /** `nixos-version` of the deployed system. */
  declare readonly nixosVersion: pulumi.Output<string>;
  /** The host's SSH key (`ssh-ed25519 AAAA…`), pinned from then on. */
  declare readonly hostPublicKey: pulumi.Output<string>;
  /** When the system was last activated (ISO 8601). */
  declare readonly activatedAt: pulumi.Output<string>;
  /** Size of the system closure. */
  declare readonly closureSize: pulumi.Output<{ bytes: number; paths: number }>;
  /** Bytes sent to the host by the last deploy. */
  declare readonly bytesCopied: pulumi.Output<number>;
  /** Connection with the host key filled in (privateKey stays secret), for chaining other resources. */
  declare readonly connection: pulumi.Output<Connection>;
  /** The host as the deploy reached it (the ssh config applied): a plain output, e.g. for DNS records. */
  declare readonly host: pulumi.Output<string>;
  /** The SSH port the deploy reached. */
  declare readonly port: pulumi.Output<number>;
  /** The login user of the deploy. */
  declare readonly user: pulumi.Output<string>;
  /**
   * A ready `@pulumi/command` `remote.Command` connection: the ssh config resolved, the bastion as
   * its `proxy`, each hop's host key pinned; the private key only when given explicitly (absent
   * when the agent or ~/.ssh was used). A secret.
   */
  declare readonly commandConnection: pulumi.Output<CommandConnection>;
  /** Units the last activation reported failed (exit 4). */
  declare readonly failedUnits: pulumi.Output<string[]>;
  /** The machine's labels (`tags` input); a change is recorded without redeploying. */
  declare readonly tags: pulumi.Output<string[]>;
  /**
   * What the plan says changes inside the machine (`nginx 1.24.0 → 1.26.1`, `+ redis 7.2.4`, the
   * closure size), computed by Check; never a reason to update by itself.
   */
  declare readonly closureChanges: pulumi.Output<string[] | undefined>;
  /** With previewDryActivate, in a preview: `would restart bars-app.service` lines; never a reason to update by itself. */
  declare readonly unitChanges: pulumi.Output<string[] | undefined>;
  /** Manifest of the deployed closure: package name → versions, size and path count. */
  declare readonly closureManifest: pulumi.Output<{ system: string; exact: boolean; paths: number; bytes?: number; packages: string[] } | undefined>;
  /**
   * The program-time evaluation of this machine's system (known before the machine registers):
   * rejects when the fleet's evaluation fails. {@link Network} makes keys and channel pins wait
   * for it, so a fleet that does not evaluate touches no host.
   */
  readonly evaluated: pulumi.Output<{ outPath: string; drvPath: string }>;

  constructor(resourceName: string, args: MachineArgs, opts?: pulumi.CustomResourceOptions) {
    // Every field type-checked before anything runs (provider/schema: one schema for all inputs).
    checkArgs("Machine", resourceName, args);
    const name = args.machineName ?? resourceName;
    inlineKeyProblems(name, args.keys);
    checkSpecialArgNames(name, args.specialArgs);
    if (args.specialArgs !== undefined && args.systemPath !== undefined) {
      throw new SchemaError(`invalid arguments of Machine ${name}:\n  specialArgs: only with configuration, imports, flake or a NixOps network (a prebuilt systemPath is not evaluated)`);
    }
    // Nothing registers (so nothing runs) while two Machines of the program reach one host.
    const claimed = claimHost(name, args.connection);
    const system = pulumi.all([args.configuration, args.flake, args.systemPath, args.nixPath, args.keys, args.pin, args.imports, args.specialArgs]).apply(
      async ([configuration, flake, systemPath, nixPath, keys, pin, imports, special]) => {
        const modules = configuration || imports?.length || args.nixopsNetwork;
        const given = [modules, flake, systemPath].filter((v) => v !== undefined && v !== "" && v !== 0);
        if (given.length !== 1) throw new Error(`Machine ${name}: give exactly one of configuration (and/or imports), flake or systemPath`);
        if (systemPath) return { outPath: systemPath, drvPath: "" };
        let np = nixPath ?? [];
        if (modules && pin) np = [`nixpkgs=${await fetchPin(`Machine ${name}: pin`, pin)}`, ...np.filter((e) => !e.startsWith("nixpkgs="))];
        if (modules && !np.some((e) => e.startsWith("nixpkgs=")) && !args.allowUnpinned) {
          throw new Error(`Machine ${name}: not pinned: set pin (or a nixpkgs= entry in nixPath), or allowUnpinned: true to evaluate against the operator's NIX_PATH`);
        }
        // A refused argument (a secret, a reserved name) fails the batch it evaluates with: no host is touched.
        const refused = await refusedArgs(name, args.specialArgs, special);
        const specialArgs = refused ? undefined : jsonArgs(special as Record<string, unknown> | undefined);
        if (args.nixopsNetwork) return evaluateSystem(name, { nixops: { ...args.nixopsNetwork, machine: name }, nixPath: np, specialArgs, refused });
        return evaluateSystem(name, { configuration: configuration ? path.resolve(configuration) : undefined, imports: imports?.map((i) => path.resolve(i)), flake, nixPath: np, keys, specialArgs, refused });
      });
    const urn = engineUrn();
    super(machineProvider, resourceName, {
      kind: "machine",
      name,
      __urn: urn.input,
      connection: connectionInputs(args.connection),
      systemPath: pulumi.all([system.outPath, claimed]).apply(([p]) => p),
      drvPath: system.drvPath,
      // Recorded relative to the project root: the same on every checkout (portable-path.ts).
      configuration: args.configuration ? pulumi.output(args.configuration).apply((c) => portablePath(path.resolve(c), projectRoot())) : undefined,
      flake: args.flake ? pulumi.output(args.flake).apply((f) => portableFlake(f, projectRoot())) : undefined,
      action: args.action ?? "switch",
      buildOn: args.buildOn ?? "local",
      substituteOnTarget: args.substituteOnTarget ?? false,
      site: args.site,
      cache: args.cache,
      cacheSigningKey: args.cacheSigningKey === undefined ? undefined : pulumi.secret(args.cacheSigningKey),
      compress: args.compress ?? "auto",
      connectTimeout: args.connectTimeout ?? 15,
      activationTimeout: args.activationTimeout ?? 600,
      magicRollback: args.magicRollback ?? true,
      confirmTimeout: args.confirmTimeout ?? 30,
      healthChecks: args.healthChecks ?? [],
      enableRollback: args.enableRollback ?? true,
      keepGenerations: args.keepGenerations ?? "all",
      tags: args.tags ?? [],
      ...(args.rollout ? { rollout: args.rollout } : {}),
      previewBuild: args.previewBuild ?? new pulumi.Config("pulumi-nixos").getBoolean("previewBuild") ?? false,
      previewDryActivate: args.previewDryActivate ?? new pulumi.Config("pulumi-nixos").getBoolean("previewDryActivate") ?? false,
      // Recorded for the plan: Check names the arguments a preview does not know yet (closure-changes.ts).
      ...(args.specialArgs !== undefined ? { specialArgs: args.specialArgs } : {}),
      ...(args.waitForSsh !== undefined ? { waitForSsh: args.waitForSsh } : {}),
      generation: undefined, previousSystemPath: undefined, nixosVersion: undefined, hostPublicKey: undefined,
      host: undefined, port: undefined, user: undefined, commandConnection: undefined,
      activatedAt: undefined, closureSize: undefined, bytesCopied: undefined, failedUnits: undefined,
      closureChanges: undefined, closureManifest: undefined, unitChanges: undefined,
      // Read and removed by Check: a preview shows closureChanges, an up records the manifest.
      dryRun: pulumi.runtime.isDryRun(),
    }, withOldTypeAlias({ ...opts, additionalSecretOutputs: [...(opts?.additionalSecretOutputs ?? []), "commandConnection", "__inputConnection"] }), TYPE_MODULE, "Machine");
    urn.resolve(this, opts);
    // Keys and channel pins of a Network wait for this: refused machines stop them too.
    this.evaluated = pulumi.all([system, claimed]).apply(([s]) => s);
  }
}

/** Inline key metadata (`keys: { db: { permissions: "0640" } }`) checked as a DeploymentKey's is, before anything runs. */
function inlineKeyProblems(name: string, keys: MachineArgs["keys"]): void {
  if (!keys || typeof keys !== "object" || pulumi.Output.isInstance(keys) || keys instanceof Promise) return;
  const p: string[] = [];
  for (const [k, spec] of Object.entries(keys as Record<string, Record<string, unknown>>)) {
    if (!spec || typeof spec !== "object" || pulumi.Output.isInstance(spec)) continue;
    // Values not known yet (Outputs) are checked where they are used.
    const known = (v: unknown, d: string) => (v === undefined ? d : typeof v === "string" || typeof v === "number" ? String(v) : undefined);
    const s = { name: known(spec.name, k), destDir: known(spec.destDir, "/run/keys"), user: known(spec.user, "root"), group: known(spec.group, "root"), permissions: known(spec.permissions, "0600") };
    const given = Object.fromEntries(Object.entries(s).filter(([, v]) => v !== undefined));
    p.push(...keySpecProblems(`${name} keys.${k}`, { name: "x", destDir: "/run/keys", user: "root", group: "root", permissions: "0600", ...given }, "Machine").map((x) => x.reason));
  }
  if (p.length) throw new SchemaError(p.join("\n"));
}
