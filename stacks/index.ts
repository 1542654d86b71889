/**
 * The stack program: one stack = one deployment (`nixops create -d nixos` ≈ `pulumi stack init nixos`).
 * The network comes from stack config (Pulumi.<stack>.yaml), with NixOps's names:
 *
 *   pulumi-nixos:network:                      # or pulumi-nixos:networkFile: ./network.yaml
 *     description: nixos
 *     enableRollback: true
 *     pins: { nixos: { url: …, sha256: … } }   # pulumi-nixos pin add nixos URL
 *     machines:
 *       heron: { targetHost: heron.local, imports: [./hardware/heron.nix, ./configuration/heron.nix], pin: nixos }
 *   pulumi-nixos:sshPrivateKey: { secure: … }  # or sshPrivateKeyFile: /path (read at run time)
 *
 * `pulumi-nixos:machines` (+ `pins`, `nixPath`) is accepted as a short form of `network`.
 */
import * as fs from "fs";
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import YAML from "yaml";
import { Network, NetworkDescription } from "../provider";

const config = new pulumi.Config("pulumi-nixos");
const networkFile = config.get("networkFile");
let network: NetworkDescription;
let baseDir = process.cwd();
if (networkFile) {
  const file = path.resolve(networkFile);
  network = YAML.parse(fs.readFileSync(file, "utf8"));
  baseDir = path.dirname(file);
} else {
  network = config.getObject<NetworkDescription>("network")
    ?? { machines: config.requireObject("machines"), pins: config.getObject("pins") };
}
const keyFile = config.get("sshPrivateKeyFile");
const privateKey = config.getSecret("sshPrivateKey")
  ?? (keyFile ? pulumi.secret(fs.readFileSync(path.resolve(keyFile), "utf8")) : undefined);
const nixPath = (config.getObject<string[]>("nixPath") ?? []).map((e) => {
  const i = e.indexOf("=");
  const v = i < 0 ? e : e.slice(i + 1);
  return /^[a-z]+:\/\//.test(v) ? e : `${i < 0 ? "" : e.slice(0, i + 1)}${path.resolve(v)}`;
});

const net = new Network(network.description ?? "network", {
  network, baseDir, privateKey, nixPath, allowUnpinned: config.getBoolean("allowUnpinned") ?? false,
});

export const systems = Object.fromEntries(Object.entries(net.machines).map(([n, m]) =>
  [n, pulumi.interpolate`generation ${m.generation}: ${m.systemPath}`]));
