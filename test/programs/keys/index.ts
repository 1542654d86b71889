/**
 * Test program for deployment keys: one machine on a lab host and keys from every source,
 * described in stack config (pulumi-nixos-keys:*). Run through the engine harness by test/keys.test.ts.
 */
import * as fs from "fs";
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import { DeploymentKey, Machine } from "../../../provider";

interface KeySpec {
  name?: string;
  source: "secret" | "text" | "file" | "command" | "vault";
  file?: string;
  command?: string[];
  vault?: { path: string; field: string; mount?: string; kvVersion?: 1 | 2 };
  user?: string;
  group?: string;
  permissions?: string;
  destDir?: string;
  uploadAt?: "pre-activation" | "post-activation";
}

const config = new pulumi.Config();
const host = config.require("host");
const privateKey = pulumi.secret(fs.readFileSync(config.require("keyPath"), "utf8"));
const keys = config.requireObject<Record<string, KeySpec>>("keys");
const connection = { host, privateKey };

const make = (name: string, k: KeySpec, opts?: pulumi.CustomResourceOptions) => new DeploymentKey(name, {
  connection: k.uploadAt === "post-activation" ? machine!.connection : connection,
  name: k.name,
  text: k.source === "secret" ? config.requireSecret("secretText") : k.source === "text" ? config.require("plainText") : undefined,
  file: k.file, command: k.command, vault: k.vault,
  user: k.user, group: k.group, permissions: k.permissions, destDir: k.destDir, uploadAt: k.uploadAt,
}, opts);

let machine: Machine | undefined;
const pre = Object.entries(keys).filter(([, k]) => k.uploadAt !== "post-activation").map(([n, k]) => make(n, k));
const machineConfig = config.get("machineConfig");
if (machineConfig) {
  machine = new Machine("m", {
    connection,
    configuration: path.resolve(machineConfig),
    nixPath: [`nixpkgs=${config.require("nixpkgs")}`],
    keys: Object.fromEntries(Object.entries(keys).map(([n, k]) => [n, { name: k.name ?? n, user: k.user ?? "root", group: k.group ?? "root", permissions: k.permissions ?? "0600" }])),
  }, { dependsOn: pre });
}
const post = Object.entries(keys).filter(([, k]) => k.uploadAt === "post-activation").map(([n, k]) => make(n, k, { dependsOn: machine ? [machine] : [] }));

export const keyCount = pre.length + post.length;
