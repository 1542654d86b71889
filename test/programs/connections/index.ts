/**
 * Test program for connection forms (test/connections.test.ts): one Machine, one DeploymentKey and
 * one ChannelPin on one host, reached with the connection given in stack config
 * (`connections-test:connection`, JSON; `privateKeyFile`/`passwordFile` are read here and passed as
 * secrets, as a user's program passes `config.requireSecret`). Everything else (agent, ssh config,
 * default identities) is the operator's environment.
 */
import * as fs from "fs";
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import { ChannelPin, ConnectionArgs, DeploymentKey, Machine, Network } from "../../../provider";

interface Hop { host: string; user?: string; port?: number; privateKeyFile?: string; passwordFile?: string; perDialTimeout?: number; proxy?: Hop }

const config = new pulumi.Config();
const hop = (h: Hop): ConnectionArgs => ({
  host: h.host,
  ...(h.user ? { user: h.user } : {}),
  ...(h.port ? { port: h.port } : {}),
  ...(h.perDialTimeout ? { perDialTimeout: h.perDialTimeout } : {}),
  ...(h.privateKeyFile ? { privateKey: pulumi.secret(fs.readFileSync(h.privateKeyFile, "utf8")) } : {}),
  ...(h.passwordFile ? { password: pulumi.secret(fs.readFileSync(h.passwordFile, "utf8").trim()) } : {}),
  ...(h.proxy ? { proxy: hop(h.proxy) } : {}),
});
// One Machine, DeploymentKey and ChannelPin per named connection (e.g. `direct` and `behind` a bastion).
const connections = config.requireObject<Record<string, Hop>>("connections");
const pin = config.getObject<{ url: string; sha256: string }>("pin");
const machineConfigs = config.requireObject<Record<string, string>>("machineConfigs");
const systems: Record<string, pulumi.Output<string>> = {};
// `renamedFrom: { new: old }`: the resources of `new` were `old`'s, moved with `aliases`.
const renamedFrom = config.getObject<Record<string, string>>("renamedFrom") ?? {};
// `inNetwork: { aliases }`: the same machines and keys moved into a Network `fleet` (no bastion, no
// pin), with `aliases` naming the top-level resources they were, or without.
const inNetwork = config.getObject<{ aliases: boolean; extraLabel?: string }>("inNetwork");
if (inNetwork) {
  const top = (name: string): pulumi.Alias => ({ name, parent: pulumi.rootStackResource });
  const net = new Network("fleet", {
    network: { machines: Object.fromEntries(Object.entries(connections).map(([n, spec]) => [n, {
      targetHost: spec.host, ...(spec.user ? { targetUser: spec.user } : {}), configuration: path.resolve(machineConfigs[n]),
      keys: { k: { name: "k", text: config.require("keyText"), permissions: "0640" } },
    }])) },
    nixPath: [`nixpkgs=${config.require("nixpkgs")}`],
    ...(inNetwork.aliases ? { aliases: Object.fromEntries([...Object.keys(connections).flatMap((n) => [[n, [top(`m-${n}`)]], [`${n}/k`, [top(`k-${n}`)]]]),
      ...(inNetwork.extraLabel ? [[inNetwork.extraLabel, [top("nothing")]]] : [])]) } : {}),
  });
  for (const [n, m] of Object.entries(net.machines)) systems[n] = m.systemPath;
}
for (const [n, spec] of Object.entries(inNetwork ? {} : connections)) {
  const connection = hop(spec);
  const alias = (prefix: string): pulumi.CustomResourceOptions => (renamedFrom[n] ? { aliases: [{ name: `${prefix}-${renamedFrom[n]}` }] } : {});
  const key = new DeploymentKey(`k-${n}`, { connection, name: "k", text: pulumi.secret(config.require("keyText")), permissions: "0640" }, alias("k"));
  const channel = pin ? new ChannelPin(`ch-${n}`, { connection, url: pin.url, sha256: pin.sha256 }, alias("ch")) : undefined;
  const machine = new Machine(`m-${n}`, {
    connection,
    configuration: path.resolve(machineConfigs[n]),
    nixPath: [`nixpkgs=${config.require("nixpkgs")}`],
    tags: config.getObject<string[]>("tags") ?? [],
    keys: { k: { name: "k", user: "root", group: "root", permissions: "0640" } },
  }, { dependsOn: [key, ...(channel ? [channel] : [])], ...alias("m") });
  systems[n] = machine.systemPath;
}

export { systems };
