/**
 * Test program for specialArgs and waitForSsh (test/special-args.test.ts). Stack config
 * `special-args-test:`
 * - `hosts`: machine → lab address; `configs`: machine → configuration.nix path; `nixpkgs`;
 *   `privateKeyFile` (read here and passed as a secret, as a user's program does);
 * - `wires`: machine → { argument → "<machine>.<output>" }: that machine's module argument is the
 *   other Machine's output (e.g. `{ b: { aSystem: "a.systemPath" } }`); `plain`: machine →
 *   { argument → JSON value };
 * - `secretArg`: machine → argument name given a nested `pulumi.secret` (must be refused);
 * - `waitForSsh`: machine → seconds; `key`: machine whose configuration gets a DeploymentKey's path;
 * - `network`: `{ machines, specialArgs, wires }`: a Network `net` of that description, with
 *   `specialArgs` for all its machines and `wires` (argument → "<machine>.<output>") among them.
 */
import * as fs from "fs";
import * as pulumi from "@pulumi/pulumi";
import { DeploymentKey, Machine, Network } from "../../../provider";

const config = new pulumi.Config();
const hosts = config.requireObject<Record<string, string>>("hosts");
const configs = config.requireObject<Record<string, string>>("configs");
const wires = config.getObject<Record<string, Record<string, string>>>("wires") ?? {};
const plain = config.getObject<Record<string, Record<string, unknown>>>("plain") ?? {};
const secretArg = config.getObject<Record<string, string>>("secretArg") ?? {};
const waitForSsh = config.getObject<Record<string, number>>("waitForSsh") ?? {};
const keyFor = config.get("key");
const privateKey = pulumi.secret(fs.readFileSync(config.require("privateKeyFile"), "utf8"));

const machines: Record<string, Machine> = {};
// Producers first: a machine whose arguments are another's outputs is constructed after it.
const order = [...Object.keys(hosts).filter((m) => !wires[m]), ...Object.keys(hosts).filter((m) => wires[m])];

for (const name of order) {
  const connection = { host: hosts[name], privateKey };
  const key = keyFor === name ? new DeploymentKey(`key-${name}`, { connection, name: "db-password", text: pulumi.secret("s3cret-for-the-key"), permissions: "0600" }) : undefined;
  const args: Record<string, pulumi.Input<unknown>> = { ...(plain[name] ?? {}) };
  for (const [arg, wire] of Object.entries(wires[name] ?? {})) {
    const [producer, output] = wire.split(".");
    args[arg] = (machines[producer] as unknown as Record<string, pulumi.Output<unknown>>)[output];
  }
  if (key) args.dbPasswordFile = key.path;
  // Nested, as a user would put a password inside a settings object.
  if (secretArg[name]) args[secretArg[name]] = { host: "db.internal", password: pulumi.secret("hunter2") };
  machines[name] = new Machine(name, {
    connection,
    configuration: configs[name],
    nixPath: [`nixpkgs=${config.require("nixpkgs")}`],
    ...(Object.keys(args).length ? { specialArgs: args } : {}),
    ...(waitForSsh[name] !== undefined ? { waitForSsh: waitForSsh[name] } : {}),
  }, key ? { dependsOn: [key] } : {});
}

const net = config.getObject<{ machines: Record<string, never>; specialArgs?: Record<string, unknown>; wires?: Record<string, string> }>("network");
if (net) {
  const wired = Object.fromEntries(Object.entries(net.wires ?? {}).map(([arg, wire]) => {
    const [producer, output] = wire.split(".");
    return [arg, (machines[producer] as unknown as Record<string, pulumi.Output<unknown>>)[output]];
  }));
  new Network("net", { network: { machines: net.machines }, specialArgs: { ...(net.specialArgs ?? {}), ...wired }, privateKey, nixPath: [`nixpkgs=${config.require("nixpkgs")}`] });
}

export const systems = Object.fromEntries(Object.entries(machines).map(([n, m]) => [n, m.systemPath]));
