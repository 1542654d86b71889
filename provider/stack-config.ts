/**
 * The stack program's own check of its stack config, before it reads any of it: every
 * `pulumi-nixos:` key must be one the package reads (a typo gets "did you mean"), and one network
 * source must be given. The SDK's `require*` on a missing key throws ConfigMissingError, which the
 * runner renders slowly and in gigabytes (util.inspect of the whole runtime) and which names the
 * key the program looked for, not the one the operator typed: never used for what may be missing.
 */
import * as pulumi from "@pulumi/pulumi";
import { suggest } from "./schema/check";
import { SchemaError } from "./schema";

/** The package's stack config keys (`pulumi-nixos:<key>`), each read somewhere in provider/. */
export const STACK_CONFIG_KEYS = [
  // The network: one of these.
  "network", "networkFile", "networkNix", "machines",
  // With `machines` and for networkNix.
  "pins", "pin", "nixPath", "allowUnpinned", "channel",
  // networkNix (NixOps's files) and what import-nixops writes.
  "networkArgs", "networkArgsNix", "extraBuiltinsFile", "hosts", "hostPublicKeys", "rootAuthorizedKeys",
  "deploymentUuid", "deploymentName", "stateVersions", "keepGenerations", "sites", "cacheSigningKey",
  // Connections and secrets.
  "sshPrivateKey", "sshPrivateKeyFile", "sshConfig", "hostKeyPolicy", "vaultAddr", "vaultToken",
  // Plans.
  "previewBuild", "previewDryActivate",
  // Waves (for networkNix and `machines`; a description has network.rollout).
  "rollout",
];
/** Keys with a per-machine suffix (`pulumi-nixos:sshPrivateKey.heron`). */
const PER_MACHINE = ["sshPrivateKey."];
const NETWORK_SOURCES = ["network", "networkFile", "networkNix", "machines"];

/**
 * Problems of a stack config (`allConfig()`'s keys), each naming the key; empty when fine.
 * `alsoKnown`: keys of ours the network names as key sources (`keys.db.config: dbPassword` in a
 * project itself called pulumi-nixos).
 */
export function stackConfigProblems(keys: string[], alsoKnown: string[] = [], ns = "pulumi-nixos"): string[] {
  const ours = keys.filter((k) => k.startsWith(`${ns}:`)).map((k) => k.slice(ns.length + 1));
  const p: string[] = [];
  for (const k of ours) {
    if (STACK_CONFIG_KEYS.includes(k) || alsoKnown.includes(k) || PER_MACHINE.some((pre) => k.startsWith(pre) && k.length > pre.length)) continue;
    p.push(`${ns}:${k}: not a setting of pulumi-nixos${suggest(k, STACK_CONFIG_KEYS)}`);
  }
  const sources = NETWORK_SOURCES.filter((k) => ours.includes(k));
  if (!sources.length) {
    p.push(`no network in the stack config: set ${ns}:network (a description), ${ns}:networkFile (a YAML file), ` +
      `${ns}:networkNix (NixOps's network files) or ${ns}:machines (see \`pulumi-nixos import-nixops\` for a NixOps deployment)`);
  } else if (sources.length > 1 && !(sources.length === 2 && sources.includes("network") && sources.includes("machines"))) {
    p.push(`the stack config gives the network ${sources.length} ways (${sources.map((k) => `${ns}:${k}`).join(", ")}): keep one`);
  }
  return p;
}

/** Checks this stack's config; throws one message listing every problem (no stack trace). */
export function checkStackConfig(alsoKnown: string[] = []): void {
  const p = stackConfigProblems(Object.keys(pulumi.runtime.allConfig()), alsoKnown);
  if (p.length) throw new SchemaError(`stack config of ${pulumi.getStack()}:\n  ${p.join("\n  ")}`);
}
