import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import { ConnectionArgs, Connection } from "../connection";
import { evaluateSystem } from "../nix/evaluate";
import { machineProvider } from "./machine-provider";
import { connectionInputs } from "./connection-inputs";

/** Inputs of a {@link Machine}: a host and the NixOS system it should run. */
export interface MachineArgs {
  /** How to reach the host. */
  connection: pulumi.Input<ConnectionArgs>;
  /**
   * Path of the machine's configuration.nix (a NixOS module), evaluated with `<nixpkgs/nixos>`.
   * Exactly one of `configuration`, `flake`, `systemPath`.
   */
  configuration?: pulumi.Input<string>;
  /** NIX_PATH entries for `configuration`, e.g. `["nixpkgs=/path/to/nixpkgs"]` (channel pins fill this). */
  nixPath?: pulumi.Input<pulumi.Input<string>[]>;
  /** `<flakeref>#<name>`: deploys `nixosConfigurations.<name>.config.system.build.toplevel`. */
  flake?: pulumi.Input<string>;
  /** An already built system (a store path in the local store or on the host). */
  systemPath?: pulumi.Input<string>;
  /** switch-to-configuration action: `switch` (default), `boot` or `test`. */
  action?: pulumi.Input<"switch" | "boot" | "test">;
  /** Where to build: `local` (default) or `target` (the .drv closure is copied and built on the host). */
  buildOn?: pulumi.Input<"local" | "target">;
  /** Let the host fetch paths from its own binary caches before copying (default false). */
  substituteOnTarget?: pulumi.Input<boolean>;
  /** Compress the copy stream with zstd (default false: fast links lose by compressing). */
  compress?: pulumi.Input<boolean>;
  /** Seconds to wait for the SSH connection (default 15). */
  connectTimeout?: pulumi.Input<number>;
  /** Seconds switch-to-configuration may run (default 600). */
  activationTimeout?: pulumi.Input<number>;
  /**
   * Metadata of this machine's deployment keys (names, owners, modes: never content), given to its
   * evaluation as `deployment.keys` so provider/nix/keys.nix can create `<name>-key.service` units.
   */
  keys?: pulumi.Input<Record<string, { name?: string; destDir?: string; user?: string; group?: string; permissions?: string }>>;
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
  /** Units the last activation reported failed (exit 4). */
  declare readonly failedUnits: pulumi.Output<string[]>;

  constructor(name: string, args: MachineArgs, opts?: pulumi.CustomResourceOptions) {
    const system = pulumi.all([args.configuration, args.flake, args.systemPath, args.nixPath, args.keys]).apply(
      async ([configuration, flake, systemPath, nixPath, keys]) => {
        const given = [configuration, flake, systemPath].filter((v) => v !== undefined && v !== "");
        if (given.length !== 1) throw new Error(`Machine ${name}: give exactly one of configuration, flake or systemPath`);
        if (systemPath) return { outPath: systemPath, drvPath: "" };
        return evaluateSystem(name, { configuration: configuration ? path.resolve(configuration) : undefined, flake, nixPath: nixPath ?? [], keys });
      });
    super(machineProvider, name, {
      kind: "machine",
      name,
      connection: connectionInputs(args.connection),
      systemPath: system.outPath,
      drvPath: system.drvPath,
      configuration: args.configuration ? pulumi.output(args.configuration).apply((c) => path.resolve(c)) : undefined,
      flake: args.flake,
      action: args.action ?? "switch",
      buildOn: args.buildOn ?? "local",
      substituteOnTarget: args.substituteOnTarget ?? false,
      compress: args.compress ?? false,
      connectTimeout: args.connectTimeout ?? 15,
      activationTimeout: args.activationTimeout ?? 600,
      generation: undefined, previousSystemPath: undefined, nixosVersion: undefined, hostPublicKey: undefined,
      activatedAt: undefined, closureSize: undefined, bytesCopied: undefined, failedUnits: undefined,
    }, opts);
  }
}
