/**
 * pulumi-nixos: deploy NixOS fleets with Pulumi. Machines, deployment keys and channel pins are
 * dynamic resources; the work happens in plain modules (nix/, ssh/, host/) loaded at run time.
 */
export { Machine, MachineArgs } from "./resources/machine";
export { DeploymentKey, DeploymentKeyArgs, vault } from "./resources/deployment-key";
export { ConnectionArgs, Connection } from "./connection";
export { VaultRef } from "./secrets/vault";
export { KeySource } from "./secrets/sources";
