import * as pulumi from "@pulumi/pulumi";
import { ConnectionArgs } from "../connection";
import { KeyPlacement, keySpecProblems } from "../keys/spec";
import { KeySource, readKeySource, sourceKind } from "../secrets/sources";
import { VaultRef } from "../secrets/vault";
import { getSecretConfig } from "../util/secret-config";
import { connectionInputs } from "./connection-inputs";
import { runtimeProvider } from "./runtime-provider";
import { engineUrn } from "./engine-urn";
import { checkArgs, SchemaError } from "../schema";
import { TYPE_MODULE, withOldTypeAlias } from "./type-tokens";

const keyProvider = runtimeProvider("key");

/** Inputs of a {@link DeploymentKey}: one secret file on one host (NixOps `deployment.keys.<name>`). */
export interface DeploymentKeyArgs extends KeyPlacement {
  /** The host (a `pre-activation` key takes the machine's connection inputs; `post-activation` can take `machine.connection`). */
  connection: pulumi.Input<ConnectionArgs>;
  /** Content as text or a Pulumi secret (e.g. `config.requireSecret("dbPassword")`). */
  text?: pulumi.Input<string>;
  /** A file on the operator's machine, read at program time. */
  file?: string;
  /** argv of a command run at program time; its stdout is the content. */
  command?: string[];
  /** A field of a Vault KV secret (VAULT_ADDR / VAULT_TOKEN, or stack config pulumi-nixos:vaultAddr / vaultToken). */
  vault?: VaultRef;
  /**
   * How logs, errors and `pulumi-nixos targets` name the key (default: the resource name). A
   * {@link Network} names its keys `<network>-<machine>-<key>` and labels them `<machine>/<key>`.
   */
  label?: string;
}

/**
 * One deployment key: a secret file uploaded over SSH (never through the Nix store, the operator's
 * disk or process arguments). Content changes re-upload atomically; renames replace; delete removes
 * the file; refresh finds a key missing after a reboot, and the next `up` puts it back.
 */
export class DeploymentKey extends pulumi.dynamic.Resource {
  /** Full path of the key file on the host. */
  declare readonly path: pulumi.Output<string>;
  declare readonly user: pulumi.Output<string>;
  declare readonly group: pulumi.Output<string>;
  declare readonly permissions: pulumi.Output<string>;
  /** sha256 of the content (a Pulumi secret). */
  declare readonly digest: pulumi.Output<string>;
  /** When the key goes up relative to its machine's activation. */
  declare readonly uploadAt: pulumi.Output<string>;

  constructor(resourceName: string, args: DeploymentKeyArgs, opts?: pulumi.CustomResourceOptions) {
    // Every field type-checked before anything runs (provider/schema: one schema for all inputs).
    checkArgs("DeploymentKey", resourceName, args);
    const label = args.label ?? resourceName;
    const spec = {
      name: args.name ?? resourceName,
      destDir: args.destDir ?? "/run/keys",
      user: args.user ?? "root",
      group: args.group ?? "root",
      permissions: args.permissions ?? "0600",
    };
    // Bad input fails the program before anything reaches a host.
    const problems = keySpecProblems(label, spec);
    if (problems.length) throw new SchemaError(problems.map((p) => p.reason).join("; "));
    const source: KeySource = { text: args.text as string | undefined, file: args.file, command: args.command, vault: args.vault };
    const kind = sourceKind(label, source);
    const config = new pulumi.Config("pulumi-nixos");
    const vaultToken = getSecretConfig(config, "vaultToken", "the Vault token");
    const content: pulumi.Output<string> = kind === "text"
      ? pulumi.secret(args.text!)
      : pulumi.secret(pulumi.all([config.get("vaultAddr"), vaultToken]).apply(([addr, token]) =>
        readKeySource(label, source, { addr, token })));
    const urn = engineUrn();
    super(keyProvider, resourceName, {
      kind: "deploymentKey",
      resource: label,
      __urn: urn.input,
      connection: connectionInputs(args.connection),
      content,
      ...spec,
      uploadAt: args.uploadAt ?? "pre-activation",
      path: undefined,
      digest: undefined,
    }, withOldTypeAlias({ ...opts, additionalSecretOutputs: [...(opts?.additionalSecretOutputs ?? []), "digest"] }), TYPE_MODULE, "DeploymentKey");
    urn.resolve(this, opts);
  }
}

/** Reads like the seed's `builtins.extraBuiltins.vault "thedroneely/" "cockpit_api_token"`. */
export const vault = {
  /** A Vault source for a DeploymentKey: `{ vault: vault.ref("thedroneely/", "cockpit_api_token") }`. */
  ref(path: string, field: string, opts: { mount?: string; kvVersion?: 1 | 2 } = {}): VaultRef {
    return { path, field, ...opts };
  },
  /** Reads the field now, as a Pulumi secret. */
  read(path: string, field: string, opts: { mount?: string; kvVersion?: 1 | 2 } = {}): pulumi.Output<string> {
    const config = new pulumi.Config("pulumi-nixos");
    return pulumi.secret(pulumi.all([config.get("vaultAddr"), getSecretConfig(config, "vaultToken", "the Vault token")]).apply(([addr, token]) =>
      readKeySource(`vault:${path}#${field}`, { vault: { path, field, ...opts } }, { addr, token })));
  },
};
