/**
 * pulumi-nixos: deploy NixOS fleets with Pulumi. Machines, deployment keys and channel pins are
 * dynamic resources; the work happens in plain modules (nix/, ssh/, host/) loaded at run time.
 */
export { Machine, MachineArgs } from "./resources/machine";
export { ConnectionArgs, Connection } from "./connection";
