/**
 * The seed's network: reads network.yaml (with the yaml package) and deploys it with Network.
 * Stack config may override hosts for a test bed (`nixops-network:hosts: { heron: 10.231.1.2 }`)
 * and pins (`nixops-network:pins`), as the lab runner does.
 */
import * as fs from "fs";
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import YAML from "yaml";
import { Network, NetworkDescription } from "pulumi-nixos";

const config = new pulumi.Config();
const network: NetworkDescription = YAML.parse(fs.readFileSync(path.join(__dirname, "network.yaml"), "utf8"));
for (const [name, host] of Object.entries(config.getObject<Record<string, string>>("hosts") ?? {})) {
  if (!network.machines[name]) throw new Error(`nixops-network:hosts.${name}: no such machine`);
  network.machines[name].targetHost = host;
}
network.pins = { ...network.pins, ...(config.getObject<NetworkDescription["pins"]>("pins") ?? {}) };
const keyFile = config.get("sshPrivateKeyFile");
const privateKey = config.getSecret("sshPrivateKey") ?? (keyFile ? pulumi.secret(fs.readFileSync(keyFile, "utf8")) : undefined);

const nixos = new Network("nixos", { network, baseDir: __dirname, privateKey });
export const machines = Object.fromEntries(Object.entries(nixos.machines).map(([n, m]) => [n, m.systemPath]));
