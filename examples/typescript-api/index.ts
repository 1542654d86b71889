/**
 * Using the resources directly: a Machine, a DeploymentKey uploaded before activation, and an
 * @pulumi/command remote.Command chained on the machine's `connection` output (host key filled
 * in, private key secret). Runs where the command provider plugin is installed (the real pulumi
 * CLI installs it); in CI it is compile-checked.
 */
import * as fs from "fs";
import * as pulumi from "@pulumi/pulumi";
import * as command from "@pulumi/command";
import { DeploymentKey, Machine } from "pulumi-nixos";

const config = new pulumi.Config();
const connection = {
  host: config.require("host"),
  privateKey: config.getSecret("sshPrivateKey") ?? pulumi.secret(fs.readFileSync(config.require("sshPrivateKeyFile"), "utf8")),
};

const dbPassword = new DeploymentKey("db-password", {
  connection,
  text: config.requireSecret("dbPassword"),
  user: "postgres",
  group: "postgres",
  permissions: "0640",
});

const web = new Machine("web", {
  connection,
  configuration: "./configuration.nix",
  pin: { url: config.require("nixpkgsUrl"), sha256: config.require("nixpkgsSha256") },
  keys: { "db-password": { user: "postgres", group: "postgres", permissions: "0640" } },
}, { dependsOn: [dbPassword] });

// After each deploy, ask the host what it runs, over the same connection: `hostKey` (the key
// recorded at first contact, or the pin) makes remote.Command refuse any other host key, and a
// bastion (`proxy`, one hop as remote.ProxyConnection has) comes along with its recorded key.
const probe = new command.remote.Command("nixos-version", {
  connection: web.connection.apply((c) => ({
    host: c.host, port: c.port, user: c.user, privateKey: c.privateKey, hostKey: c.hostKey,
    ...(c.proxy ? { proxy: { host: c.proxy.host, port: c.proxy.port, user: c.proxy.user, privateKey: c.proxy.privateKey, hostKey: c.proxy.hostKey } } : {}),
  })),
  create: "cat /run/current-system/nixos-version",
  triggers: [web.systemPath],
});

export const systemPath = web.systemPath;
export const runningVersion = probe.stdout;
