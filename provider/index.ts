/**
 * pulumi-nixos: deploy NixOS fleets with Pulumi. Machines, deployment keys and channel pins are
 * dynamic resources (`pulumi-nodejs:dynamic/nixos:Machine`, `…:DeploymentKey`, `…:ChannelPin`);
 * the work happens in plain modules (nix/, ssh/, host/) loaded at run time. The stack program that
 * reads a network from stack config is `pulumi-nixos/stack` (provider/stack.ts), not exported here:
 * importing it declares the resources.
 */
export { Machine, MachineArgs } from "./resources/machine";
export { DeploymentKey, DeploymentKeyArgs, vault } from "./resources/deployment-key";
export { ChannelPin, ChannelPinArgs } from "./resources/channel-pin";
export { Network, NetworkArgs } from "./network/network";
export { NetworkDescription, NetworkNixDescription, MachineSpec, KeySpec, descriptionProblems, validateDescription, networkNixProblems } from "./network/description";
export { ConnectionArgs, Connection } from "./connection";
export { CommandConnection, CommandHop } from "./command-connection";
export { Pin } from "./pins/pin";
export { VaultRef } from "./secrets/vault";
export { KeySource } from "./secrets/sources";
