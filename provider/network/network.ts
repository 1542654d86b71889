import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import { Machine } from "../resources/machine";
import { DeploymentKey } from "../resources/deployment-key";
import { ChannelPin } from "../resources/channel-pin";
import { ConnectionArgs } from "../connection";
import { NetworkDescription, machineSpec, validateDescription } from "./description";
import { getSecretConfig } from "../util/secret-config";

/** A key's `config:` source: must exist and be set with `--secret`. */
function requireSecretConfig(config: pulumi.Config, key: string, keyName: string): pulumi.Output<string> {
  const v = getSecretConfig(config, key, `the content of key ${keyName}`);
  if (!v) throw new Error(`key ${keyName}: config ${config.name}:${key} is not set (\`pulumi config set --secret ${key} <value>\`)`);
  return v;
}

/** Options of a {@link Network}. */
export interface NetworkArgs {
  /** The network description (usually parsed from stack config YAML). */
  network: NetworkDescription;
  /** Relative paths in the description resolve against this directory (default: cwd). */
  baseDir?: string;
  /** SSH private key for every machine (a secret); absent = ssh-agent. */
  privateKey?: pulumi.Input<string>;
  /** Extra NIX_PATH entries for machines without a pin. */
  nixPath?: string[];
  /** Allow machines without a pin to use the operator's NIX_PATH. */
  allowUnpinned?: boolean;
}

/**
 * A NixOps network as Pulumi resources: a Machine per machine, a DeploymentKey per key (pre-activation
 * keys before the machine, post-activation keys after it) and a ChannelPin per pinned machine.
 * One stack = one deployment.
 */
export class Network extends pulumi.ComponentResource {
  /** Machines by name. */
  readonly machines: Record<string, Machine> = {};
  /** Keys by machine, then key name. */
  readonly keys: Record<string, Record<string, DeploymentKey>> = {};
  /** Channel pins by machine. */
  readonly channels: Record<string, ChannelPin> = {};

  constructor(name: string, args: NetworkArgs, opts?: pulumi.ComponentResourceOptions) {
    super("pulumi-nixos:index:Network", name, {}, opts);
    const net = args.network;
    validateDescription(net);
    const base = args.baseDir ?? process.cwd();
    const abs = (p: string) => path.resolve(base, p);
    const config = new pulumi.Config();
    for (const mName of Object.keys(net.machines)) {
      const m = machineSpec(net, mName);
      const connection: ConnectionArgs = { host: m.targetHost, port: m.targetPort, user: m.targetUser, privateKey: args.privateKey, hostPublicKey: m.hostPublicKey };
      const pin = m.pin ? net.pins![m.pin] : undefined;
      const child = { parent: this };
      const keySpecs = Object.entries(m.keys ?? {});
      const makeKey = (kName: string, k: NonNullable<typeof m.keys>[string], conn: pulumi.Input<ConnectionArgs>, deps: pulumi.Resource[]) =>
        new DeploymentKey(`${mName}/${kName}`, {
          connection: conn, name: k.name ?? kName,
          text: k.config ? requireSecretConfig(config, k.config, `${mName}/${kName}`) : k.text,
          file: k.file ? abs(k.file) : undefined, command: k.command, vault: k.vault,
          destDir: k.destDir, user: k.user, group: k.group, permissions: k.permissions, uploadAt: k.uploadAt,
        }, { ...child, dependsOn: deps });
      const preKeys = keySpecs.filter(([, k]) => k.uploadAt !== "post-activation").map(([k, spec]) => [k, makeKey(k, spec, connection, [])] as const);
      const channel = pin && m.channel !== false
        ? new ChannelPin(`${mName}/channel`, { connection, url: pin.url, sha256: pin.sha256 }, child) : undefined;
      const machine = new Machine(mName, {
        connection,
        configuration: m.configuration ? abs(m.configuration) : undefined,
        imports: m.imports?.map(abs),
        flake: m.flake ? (m.flake.startsWith(".") ? abs(m.flake.slice(0, m.flake.lastIndexOf("#"))) + m.flake.slice(m.flake.lastIndexOf("#")) : m.flake) : undefined,
        pin,
        nixPath: pin ? [] : args.nixPath,
        allowUnpinned: args.allowUnpinned,
        action: m.action, buildOn: m.buildOn, substituteOnTarget: m.substituteOnTarget, compress: m.compress,
        connectTimeout: m.connectTimeout, activationTimeout: m.activationTimeout,
        enableRollback: net.enableRollback ?? true,
        tags: m.tags ?? [],
        keys: Object.fromEntries(keySpecs.map(([k, s]) => [k, { name: s.name ?? k, user: s.user ?? "root", group: s.group ?? "root", permissions: s.permissions ?? "0600", destDir: s.destDir ?? "/run/keys" }])),
      }, { ...child, dependsOn: [...preKeys.map(([, k]) => k), ...(channel ? [channel] : [])] });
      const postKeys = keySpecs.filter(([, k]) => k.uploadAt === "post-activation").map(([k, spec]) => [k, makeKey(k, spec, machine.connection, [machine])] as const);
      this.machines[mName] = machine;
      this.keys[mName] = Object.fromEntries([...preKeys, ...postKeys]);
      if (channel) this.channels[mName] = channel;
    }
    this.registerOutputs({
      description: net.description ?? "",
      machines: Object.fromEntries(Object.entries(this.machines).map(([n, m]) => [n, m.systemPath])),
    });
  }
}
