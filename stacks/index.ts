/**
 * The stack program: one stack = one deployment (`nixops create -d NAME` ≈ `pulumi stack init NAME`).
 * Machines come from stack config (Pulumi.<stack>.yaml), with NixOps's names:
 *
 *   pulumi-nixos:machines:
 *     heron: { targetHost: 10.0.0.2, targetPort: 22, targetUser: root, configuration: ./heron.nix }
 *   pulumi-nixos:nixPath: ["nixpkgs=/path/to/nixpkgs"]
 *   pulumi-nixos:sshPrivateKey: { secure: … }      # or sshPrivateKeyFile: /path (read at run time)
 */
import * as fs from "fs";
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import { Machine } from "../provider";

interface MachineSpec {
  targetHost: string;
  targetPort?: number;
  targetUser?: string;
  hostPublicKey?: string;
  configuration?: string;
  flake?: string;
  action?: "switch" | "boot" | "test";
  buildOn?: "local" | "target";
  connectTimeout?: number;
  activationTimeout?: number;
}

const config = new pulumi.Config("pulumi-nixos");
const machines = config.requireObject<Record<string, MachineSpec>>("machines");
const nixPath = (config.getObject<string[]>("nixPath") ?? []).map(resolveEntry);
const keyFile = config.get("sshPrivateKeyFile");
const privateKey = config.getSecret("sshPrivateKey")
  ?? (keyFile ? pulumi.secret(fs.readFileSync(path.resolve(keyFile), "utf8")) : undefined);

/** `name=relative/path` → absolute, relative to the project directory. */
function resolveEntry(e: string): string {
  const i = e.indexOf("=");
  const [k, v] = i < 0 ? ["", e] : [e.slice(0, i + 1), e.slice(i + 1)];
  return /^[a-z]+:\/\//.test(v) ? e : k + path.resolve(v);
}

const deployed: Record<string, pulumi.Output<string>> = {};
for (const [name, m] of Object.entries(machines)) {
  if (!m.targetHost) throw new Error(`pulumi-nixos:machines.${name}.targetHost is required`);
  const machine = new Machine(name, {
    connection: { host: m.targetHost, port: m.targetPort, user: m.targetUser, privateKey, hostPublicKey: m.hostPublicKey },
    configuration: m.configuration,
    flake: m.flake,
    nixPath,
    action: m.action,
    buildOn: m.buildOn,
    connectTimeout: m.connectTimeout,
    activationTimeout: m.activationTimeout,
  });
  deployed[name] = pulumi.interpolate`generation ${machine.generation}: ${machine.systemPath}`;
}

export const systems = deployed;
