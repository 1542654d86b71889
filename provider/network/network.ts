import * as path from "path";
import { SchemaError } from "../schema";
import * as pulumi from "@pulumi/pulumi";
import { Machine } from "../resources/machine";
import { DeploymentKey } from "../resources/deployment-key";
import { ChannelPin } from "../resources/channel-pin";
import { ConnectionArgs, ProxyConnectionArgs } from "../connection";
import { NetworkDescription, NetworkNixDescription, ProxySpec, machineSpec, validateDescription, validateNetworkNix } from "./description";
import { getSecretConfig } from "../util/secret-config";
import { evaluateNetworkNix, networkNotes, networkOwnNixpkgs, nixKeySource, unsupportedProblems } from "./network-nix";
import { stackDeploymentUuid } from "../nixops/deployment-id";
import { fetchPinSync } from "../pins/pin";
import { configSecretRef } from "../secrets/sources";
import { PACKAGE_NAME } from "../resources/handler-path";
import { OLD_TYPE } from "../resources/type-tokens";
import { RolloutSpec, machineRollouts, validateRollout } from "../rollout/settings";

/** A key's `config:` source (see {@link configSecretRef}): must exist and be set with `--secret`. */
function requireSecretConfig(ref: string, keyName: string): pulumi.Output<string> {
  const { namespace, key } = configSecretRef(ref);
  const config = new pulumi.Config(namespace);
  const v = getSecretConfig(config, key, `the content of key ${keyName}`);
  const set = namespace ? `${config.name}:${key}` : key;
  if (!v) throw new SchemaError(`key ${keyName}: config ${config.name}:${key} is not set (\`pulumi config set --secret ${set} <value>\`)`);
  return v;
}

/** The package's own settings (sshConfig, hostKeyPolicy, vaultAddr, vaultToken): `pulumi-nixos:…` in any project. */
const packageConfig = () => new pulumi.Config(PACKAGE_NAME);

/** Names of a Network's children: unique per network, so two networks (or a user's own resources) never collide. */
const childNames = (net: string, m: string) => ({
  machine: `${net}-${m}`, key: (k: string) => `${net}-${m}-${k}`, channel: `${net}-${m}-channel`,
});
/** The child's name before the network's name was part of it (`m`, `m/k`, `m/channel`), under the old type: no replace on upgrade. */
const oldName = (name: string): pulumi.Alias => ({ name, type: OLD_TYPE });

/** Options of a {@link Network}. */
export interface NetworkArgs {
  /** The network description (usually parsed from stack config YAML). Exactly one of `network`, `networkNix`. */
  network?: NetworkDescription;
  /**
   * A NixOps network expression as it is (network.nix and the files it imports, unchanged):
   * evaluated as NixOps does, `deployment.*` read from one evaluation, keys' `extraBuiltins.vault`
   * read at deploy time. Relative paths resolve against `baseDir`.
   */
  networkNix?: NetworkNixDescription;
  /** Relative paths in the description resolve against this directory (default: cwd). */
  baseDir?: string;
  /** SSH private key for every machine (a secret); absent = ssh-agent. */
  privateKey?: pulumi.Input<string>;
  /** Per-machine SSH private keys (secrets), over `privateKey` (NixOps's `none` backend had one per machine). */
  privateKeys?: Record<string, pulumi.Input<string>>;
  /** Extra NIX_PATH entries for machines without a pin. */
  nixPath?: string[];
  /** Allow machines without a pin to use the operator's NIX_PATH. */
  allowUnpinned?: boolean;
  /**
   * Earlier identities of the network's children, by label — `<machine>`, `<machine>/<key>`,
   * `<machine>/channel` — for resources moved into the network or renamed with it: Pulumi then
   * keeps them (no create, no delete, nothing redone on the host). A resource made at the top of
   * the program before is `{ name: "<its old name>", parent: pulumi.rootStackResource }`; one of a
   * network called differently before is `{ name: "<old network>-<machine>" }` with that
   * network as `parent`. Each label must name a child.
   */
  aliases?: Record<string, pulumi.Input<string | pulumi.Alias>[]>;
  /**
   * Module arguments for every machine of the network (see Machine's `specialArgs`); a
   * machine's own `specialArgs` in the description win by name.
   */
  specialArgs?: Record<string, pulumi.Input<unknown>>;
  /**
   * Waves: a canary first, then batches, stopping before a bad system reaches the rest (over the
   * description's `rollout`; stack config `pulumi-nixos:rollout` for networkNix). Default: all at once.
   */
  rollout?: RolloutSpec;
}

/** A child's aliases: the name it had before networks were named, and those the program gives. */
function childAliases(args: NetworkArgs, label: string): pulumi.Input<string | pulumi.Alias>[] {
  return [oldName(label), ...(args.aliases?.[label] ?? [])];
}

/** Every label of `aliases` names a child (a typo would silently replace what it meant to keep). */
function checkAliases(name: string, args: NetworkArgs, labels: string[]): void {
  const unknown = Object.keys(args.aliases ?? {}).filter((l) => !labels.includes(l));
  if (unknown.length) {
    throw new SchemaError(`Network ${name}: aliases: ${unknown.map((l) => JSON.stringify(l)).join(", ")} ${unknown.length > 1 ? "name" : "names"} no machine, key or channel of the network (its children: ${labels.join(", ") || "none"})`);
  }
}

/**
 * A NixOps network as Pulumi resources: a Machine per machine, a DeploymentKey per key (pre-activation
 * keys before the machine, post-activation keys after it) and a ChannelPin per pinned machine,
 * named `<name>-<machine>`, `<name>-<machine>-<key>`, `<name>-<machine>-channel` (so two networks
 * never collide), aliased to the names they had before (`<machine>`, `<machine>/<key>`).
 * The package's settings (`sshConfig`, `hostKeyPolicy`, `vaultAddr`, `vaultToken`) are read from
 * `pulumi-nixos:` stack config whatever the project is called. One stack = one deployment.
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
    const base = args.baseDir ?? process.cwd();
    const abs = (p: string) => path.resolve(base, p);
    const config = packageConfig();
    if (!!args.network === !!args.networkNix) throw new SchemaError(`Network ${name}: give exactly one of network (a description) or networkNix (NixOps files)`);
    if (args.networkNix) {
      this.fromNix(name, args.networkNix, abs, args);
      return;
    }
    const net = args.network!;
    validateDescription(net);
    validateRollout(`rollout of Network ${name}`, args.rollout);
    const rollouts = machineRollouts(name, args.rollout ?? net.rollout, Object.fromEntries(Object.keys(net.machines).map((m) => [m, machineSpec(net, m)])));
    checkAliases(name, args, Object.keys(net.machines).flatMap((mName) => {
      const m = machineSpec(net, mName);
      return [mName, ...Object.keys(m.keys ?? {}).map((k) => `${mName}/${k}`), ...(m.pin && m.channel !== false ? [`${mName}/channel`] : [])];
    }));
    // Pre-activation keys and channel pins would otherwise register (and upload) while the fleet
    // still evaluates: they wait for every machine's evaluation, which the loop below supplies.
    let fleetEvaluated!: (o: pulumi.Output<unknown>) => void;
    const afterEvaluation: pulumi.Input<pulumi.Resource[]> = pulumi.output(new Promise<pulumi.Input<unknown>>((r) => { fleetEvaluated = r; }) as Promise<object>).apply((): pulumi.Resource[] => []);
    for (const mName of Object.keys(net.machines)) {
      const m = machineSpec(net, mName);
      const connection: ConnectionArgs = { host: m.targetHost, port: m.targetPort, user: m.targetUser, privateKey: args.privateKey, hostPublicKey: m.hostPublicKey,
        ...(m.proxy ? { proxy: proxyArgs(m.proxy, args.privateKey) } : {}), ...sshOptions(m, config) };
      const pin = m.pin ? net.pins![m.pin] : undefined;
      const child = { parent: this };
      const names = childNames(name, mName);
      const keySpecs = Object.entries(m.keys ?? {});
      const makeKey = (kName: string, k: NonNullable<typeof m.keys>[string], conn: pulumi.Input<ConnectionArgs>, deps: pulumi.Input<pulumi.Resource[]>) =>
        new DeploymentKey(names.key(kName), {
          connection: conn, name: k.name ?? kName, label: `${mName}/${kName}`,
          text: k.config ? requireSecretConfig(k.config, `${mName}/${kName}`) : k.text,
          file: k.file ? abs(k.file) : undefined, command: k.command, vault: k.vault,
          destDir: k.destDir, user: k.user, group: k.group, permissions: k.permissions, uploadAt: k.uploadAt,
        }, { ...child, dependsOn: deps, aliases: childAliases(args, `${mName}/${kName}`) });
      const preKeys = keySpecs.filter(([, k]) => k.uploadAt !== "post-activation").map(([k, spec]) => [k, makeKey(k, spec, connection, afterEvaluation)] as const);
      const channel = pin && m.channel !== false
        ? new ChannelPin(names.channel, { connection, url: pin.url, sha256: pin.sha256, label: `${mName}/channel` },
          { ...child, dependsOn: afterEvaluation, aliases: childAliases(args, `${mName}/channel`) }) : undefined;
      const machine = new Machine(names.machine, {
        machineName: mName,
        connection,
        configuration: m.configuration ? abs(m.configuration) : undefined,
        imports: m.imports?.map(abs),
        flake: m.flake ? (m.flake.startsWith(".") ? abs(m.flake.slice(0, m.flake.lastIndexOf("#"))) + m.flake.slice(m.flake.lastIndexOf("#")) : m.flake) : undefined,
        pin,
        nixPath: pin ? [] : args.nixPath,
        allowUnpinned: args.allowUnpinned,
        action: m.action, buildOn: m.buildOn, substituteOnTarget: m.substituteOnTarget, compress: m.compress, site: m.site,
        ...(m.cache ? { cache: m.cache, cacheSigningKey: cacheKey(config, mName) } : {}),
        connectTimeout: m.connectTimeout, activationTimeout: m.activationTimeout,
        magicRollback: m.magicRollback, confirmTimeout: m.confirmTimeout, healthChecks: m.healthChecks,
        enableRollback: net.enableRollback ?? true,
        keepGenerations: m.keepGenerations,
        previewDryActivate: m.previewDryActivate,
        ...mergedArgs(args.specialArgs, m.specialArgs), ...(m.waitForSsh !== undefined ? { waitForSsh: m.waitForSsh } : {}),
        tags: m.tags ?? [],
        rollout: rollouts?.[mName],
        keys: Object.fromEntries(keySpecs.map(([k, s]) => [k, { name: s.name ?? k, user: s.user ?? "root", group: s.group ?? "root", permissions: s.permissions ?? "0600", destDir: s.destDir ?? "/run/keys" }])),
      }, { ...child, dependsOn: [...preKeys.map(([, k]) => k), ...(channel ? [channel] : [])], aliases: childAliases(args, mName) });
      const postKeys = keySpecs.filter(([, k]) => k.uploadAt === "post-activation").map(([k, spec]) => [k, makeKey(k, spec, machine.connection, [machine])] as const);
      this.machines[mName] = machine;
      this.keys[mName] = Object.fromEntries([...preKeys, ...postKeys]);
      if (channel) this.channels[mName] = channel;
    }
    fleetEvaluated(pulumi.all(Object.values(this.machines).map((m) => m.evaluated)));
    this.registerOutputs({
      description: net.description ?? "",
      machines: Object.fromEntries(Object.entries(this.machines).map(([n, m]) => [n, m.systemPath])),
    });
  }

  /**
   * The machines of a NixOps network expression: one evaluation gives every machine's
   * `deployment.*` (host, port, user, tags, keys); each Machine evaluates its system from the same
   * modules (`nodes.<name>.config.system.build.toplevel`), against the network's pin.
   */
  private fromNix(name: string, nn: NetworkNixDescription, abs: (p: string) => string, args: NetworkArgs): void {
    validateNetworkNix(nn);
    const files = (typeof nn.files === "string" ? [nn.files] : nn.files).map(abs);
    const src = {
      files, args: nn.args, nixArgs: nn.nixArgs, rootAuthorizedKeys: nn.rootAuthorizedKeys, extraBuiltinsFile: nn.extraBuiltinsFile ? abs(nn.extraBuiltinsFile) : undefined,
      // What NixOps gave modules (nixops/deployment.py `eval`): the deployment's UUID and name;
      // without an import, the stack's own (the UUID derived, so every checkout evaluates alike).
      uuid: nn.deploymentUuid ?? stackDeploymentUuid(pulumi.getProject(), pulumi.getStack()),
      deploymentName: nn.deploymentName ?? pulumi.getStack(),
      stateVersions: nn.stateVersions,
    };
    const pin = nn.pin ? nn.pins![nn.pin] : undefined;
    let nixPath = pin ? [`nixpkgs=${fetchPinSync(`networkNix.pin ${nn.pin}`, pin)}`] : args.nixPath ?? [];
    if (!nixPath.some((e) => e.startsWith("nixpkgs=")) && !args.allowUnpinned) {
      // NixOps 2's `network.nixpkgs` pins the network's evaluation; <nixpkgs> in its files is then that tree too.
      const own = networkOwnNixpkgs(src);
      if (!own) throw new SchemaError("networkNix: not pinned: set pin (pulumi-nixos:pin, one of pulumi-nixos:pins), a nixpkgs= entry in nixPath, network.nixpkgs in the network, or allowUnpinned: true to evaluate against the operator's NIX_PATH");
      nixPath = [`nixpkgs=${own}`, ...nixPath];
    }
    const info = evaluateNetworkNix(src, nixPath);
    validateRollout(`rollout of Network ${name}`, args.rollout);
    const rollouts = machineRollouts(name, args.rollout, info.machines);
    for (const n of networkNotes(info, nn.pin)) pulumi.log.info(`networkNix: ${n}`, this);
    const problems = [...unsupportedProblems(info),
      ...([["hosts", nn.hosts], ["hostPublicKeys", nn.hostPublicKeys], ["rootAuthorizedKeys", nn.rootAuthorizedKeys], ["stateVersions", nn.stateVersions], ["privateKeys", args.privateKeys]] as const)
        .flatMap(([field, byMachine]) => Object.keys(byMachine ?? {}).filter((m) => !info.machines[m]).map((m) => `networkNix.${field}.${m}: no such machine in the network`))];
    if (problems.length) throw new SchemaError(`networkNix ${files.join(" + ")}: not supported here:\n  ${problems.join("\n  ")}`);
    const sites = stackSites(packageConfig());
    const strays = Object.keys(sites).filter((m) => !info.machines[m]);
    if (strays.length) throw new SchemaError(`config pulumi-nixos:sites: ${strays.map((m) => `${m}: no such machine in the network`).join("; ")}`);
    checkAliases(name, args, Object.entries(info.machines).flatMap(([mName, d]) =>
      [mName, ...Object.keys(d.keys).map((k) => `${mName}/${k}`), ...(pin && nn.channel !== false ? [`${mName}/channel`] : [])]));
    const config = packageConfig();
    const vaultAccess = () => pulumi.all([config.get("vaultAddr"), getSecretConfig(config, "vaultToken", "the Vault token")])
      .apply(([addr, token]) => ({ addr, token }));
    // As for a description: keys and channel pins wait until every machine's system evaluated,
    // so a network that does not evaluate touches no host.
    let fleetEvaluated!: (o: pulumi.Output<unknown>) => void;
    const afterEvaluation: pulumi.Input<pulumi.Resource[]> = pulumi.output(new Promise<pulumi.Input<unknown>>((r) => { fleetEvaluated = r; }) as Promise<object>).apply((): pulumi.Resource[] => []);
    for (const [mName, d] of Object.entries(info.machines)) {
      const connection: ConnectionArgs = {
        host: nn.hosts?.[mName] ?? d.targetHost, port: d.targetPort, user: d.targetUser,
        privateKey: args.privateKeys?.[mName] ?? args.privateKey, hostPublicKey: nn.hostPublicKeys?.[mName], ...sshOptions({}, config),
        // NixOps's default (`sudo -H --`) is what a connection does without one: recorded only when another.
        ...(JSON.stringify(d.privilegeEscalationCommand ?? NIXOPS_ESCALATION) !== JSON.stringify(NIXOPS_ESCALATION) ? { privilegeEscalationCommand: d.privilegeEscalationCommand } : {}),
      };
      const child = { parent: this };
      const names = childNames(name, mName);
      const keys = Object.entries(d.keys).map(([kName, k]) => {
        const label = `${mName}/${kName}`;
        const source = nixKeySource(`DeploymentKey ${label}`, k, vaultAccess);
        if (source.literal) {
          pulumi.log.warn(`networkNix: ${label}: deployment.keys.${kName}.text is written in a Nix file; it is kept as a Pulumi secret from here on, but it sat in clear text in the network's files (use builtins.extraBuiltins.vault, keyFile or keyCommand)`, this);
        }
        return [kName, new DeploymentKey(names.key(kName), {
          connection, name: k.name, label, text: source.text, file: source.file, command: source.command, vault: source.vault,
          destDir: k.destDir, user: k.user, group: k.group, permissions: k.permissions,
        }, { ...child, dependsOn: afterEvaluation, aliases: childAliases(args, label) })] as const;
      });
      const channel = pin && nn.channel !== false
        ? new ChannelPin(names.channel, { connection, url: pin.url, sha256: pin.sha256, label: `${mName}/channel` },
          { ...child, dependsOn: afterEvaluation, aliases: childAliases(args, `${mName}/channel`) }) : undefined;
      this.machines[mName] = new Machine(names.machine, {
        machineName: mName,
        connection,
        nixopsNetwork: src,
        nixPath,
        allowUnpinned: args.allowUnpinned,
        // NixOps copied without compression to hosts on a fast connection, and otherwise let them
        // fetch what they can from their own binary caches first (backends/__init__.py
        // copy_closure_to: nix-copy-closure `--use-substitutes` unless hasFastConnection).
        compress: d.hasFastConnection ? false : "auto",
        substituteOnTarget: !d.hasFastConnection,
        site: sites[mName],
        enableRollback: info.network.enableRollback,
        keepGenerations: stackKeepGenerations(config),
        ...mergedArgs(args.specialArgs, undefined),
        tags: d.tags,
        rollout: rollouts?.[mName],
      }, { ...child, dependsOn: [...keys.map(([, k]) => k), ...(channel ? [channel] : [])], aliases: childAliases(args, mName) });
      this.keys[mName] = Object.fromEntries(keys);
      if (channel) this.channels[mName] = channel;
    }
    fleetEvaluated(pulumi.all(Object.values(this.machines).map((m) => m.evaluated)));
    this.registerOutputs({
      description: info.network.description,
      machines: Object.fromEntries(Object.entries(this.machines).map(([n, m]) => [n, m.systemPath])),
    });
  }
}

/** The Network's specialArgs with the machine's over them (by name); nothing when neither has any. */
function mergedArgs(network: Record<string, pulumi.Input<unknown>> | undefined, machine: Record<string, unknown> | undefined): { specialArgs?: Record<string, pulumi.Input<unknown>> } {
  return network || machine ? { specialArgs: { ...(network ?? {}), ...(machine ?? {}) } } : {};
}

/** NixOps's default `deployment.privilegeEscalationCommand` (nix/options.nix). */
const NIXOPS_ESCALATION = ["sudo", "-H", "--"];

/** Stack config `pulumi-nixos:keepGenerations` (a count or "all") for a networkNix network's machines. */
function stackKeepGenerations(config: pulumi.Config): number | "all" | undefined {
  const raw = config.get("keepGenerations");
  if (raw === undefined || raw === "all") return raw;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new Error(`config ${config.name}:keepGenerations: a whole number >= 1 or "all" (got ${JSON.stringify(raw)})`);
  return n;
}

/** The stack secret `pulumi-nixos:cacheSigningKey`, required by a machine with a cache. */
function cacheKey(config: pulumi.Config, machine: string): pulumi.Output<string> {
  const k = getSecretConfig(config, "cacheSigningKey", "the binary cache signing key");
  if (!k) throw new SchemaError(`network.machines.${machine}.cache: needs the signing key in the stack secret ${config.name}:cacheSigningKey (pulumi config set --secret cacheSigningKey …)`);
  return k;
}

/** Stack config `pulumi-nixos:sites` (`{ <machine>: <site> }`) for a networkNix network's machines. */
function stackSites(config: pulumi.Config): Record<string, string> {
  const raw = config.getObject<unknown>("sites");
  if (raw === undefined) return {};
  const bad = typeof raw !== "object" || raw === null || Array.isArray(raw) ? "an object of site names by machine"
    : Object.entries(raw).map(([m, s]) => typeof s === "string" && /^[a-z][a-z0-9-]{0,62}$/.test(s) ? "" : `${m}: a site name (lowercase letters, digits, '-'), got ${JSON.stringify(s)}`).find(Boolean);
  if (bad) throw new Error(`config ${config.name}:sites: ${bad}`);
  return raw as Record<string, string>;
}

/** A description's bastion as a connection's `proxy`: each hop logs in with the network's key. */
function proxyArgs(p: ProxySpec, privateKey: pulumi.Input<string> | undefined): ProxyConnectionArgs {
  return { host: p.host, port: p.port, user: p.user, hostKey: p.hostKey, privateKey, ...(p.proxy ? { proxy: proxyArgs(p.proxy, privateKey) } : {}) };
}

/** A machine's hostKeyPolicy and sshConfig; the stack config `pulumi-nixos:sshConfig` / `hostKeyPolicy` are the defaults. */
function sshOptions(m: { hostKeyPolicy?: "strict" | "tofu"; sshConfig?: boolean | string }, config: pulumi.Config): Pick<ConnectionArgs, "hostKeyPolicy" | "sshConfig"> {
  const raw = config.get("sshConfig");
  const stackSsh = raw === undefined ? undefined : raw === "false" ? false : raw === "true" ? true : raw;
  const policy = m.hostKeyPolicy ?? (config.get("hostKeyPolicy") as "strict" | "tofu" | undefined);
  const ssh = m.sshConfig ?? stackSsh;
  return { ...(policy ? { hostKeyPolicy: policy } : {}), ...(ssh !== undefined ? { sshConfig: ssh } : {}) };
}
