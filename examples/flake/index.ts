/**
 * Machines from a flake. Stack config `flake-example:machines` maps a machine to its host and
 * flake output, e.g. `{ alpha: { host: alpha.example.org, flake: "github:me/infra#alpha" } }`.
 * Against the lab it deploys the test flake (test/fixtures#alpha, #beta; built with the stand-in
 * nixpkgs, since nothing can be fetched here).
 */
import * as fs from "fs";
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import { Machine } from "pulumi-nixos";

const config = new pulumi.Config();
const machines = config.requireObject<Record<string, { host: string; flake?: string }>>("machines");
const privateKey = pulumi.secret(fs.readFileSync(config.require("sshPrivateKeyFile"), "utf8"));
const testFlake = path.resolve(__dirname, "../../test/fixtures");

export const systems = Object.fromEntries(Object.entries(machines).map(([name, m]) => {
  const machine = new Machine(name, { connection: { host: m.host, privateKey }, flake: m.flake ?? `${testFlake}#${name}` });
  return [name, machine.systemPath];
}));
