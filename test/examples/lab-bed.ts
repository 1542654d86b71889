/**
 * A lab test bed for the examples: lab hosts, the test Vault (thedroneely/ secrets), a channel
 * server for pins, and a stack config that points an example program at them.
 */
import * as fs from "fs";
import * as path from "path";
import YAML from "yaml";
import { Lab } from "../../provider/lab/lab";
import { startVaultServer, VaultServer } from "../vault/server";
import { startChannelServer, ChannelServer } from "../channels/server";
import { StackRef } from "../helpers/engine";
import { ROOT } from "../helpers/env";

/** Secrets of the seed's Vault, as the test Vault serves them. */
export const THEDRONEELY_SECRETS = {
  cockpit_api_token: "cockpit-token-from-vault",
  pgsql_database_password: "pgsql-password-from-vault",
  ssh_known_hosts: "heron.local ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleKnownHost",
};

/** Everything a bed runs; stop() ends it all. */
export interface Bed {
  lab: Lab;
  vault?: VaultServer;
  channels?: ChannelServer;
  stack: StackRef;
  stop(): Promise<void>;
}

/** Brings up the seed's network on lab hosts heron…pigeon. */
export async function nixopsNetworkBed(tmp: string): Promise<Bed> {
  const names = ["heron", "talon", "tiger", "hound", "pigeon"];
  const lab = await Lab.up({ dir: path.join(tmp, "lab"), names });
  let vault: VaultServer | undefined;
  let channels: ChannelServer | undefined;
  try {
    const hosts = await lab.status();
    // On NixOS the configuration creates these (users.users.thedroneely); lab hosts are not NixOS.
    await Promise.all(names.map((n) => lab.exec(n, ["sh", "-c", "id thedroneely >/dev/null 2>&1 || useradd -M -G keys thedroneely; groupadd -f postgres"])));
    vault = await startVaultServer({ mounts: { secret: { version: 2, secrets: { thedroneely: THEDRONEELY_SECRETS } } }, tokens: { "s.thedroneely": ["secret/data/thedroneely"] } });
    const gateway = JSON.parse(fs.readFileSync(path.join(tmp, "lab", "lab.json"), "utf8")).hosts[0].gateway;
    channels = await startChannelServer(path.join(tmp, "channels"), gateway, ["24.05.7376"]);
    const prog = path.join(tmp, "nixops-network");
    fs.mkdirSync(prog, { recursive: true });
    fs.writeFileSync(path.join(prog, "Pulumi.yaml"), `name: nixops-network\nruntime:\n  name: nodejs\n  options:\n    typescript: true\nmain: ${path.join(ROOT, "examples/nixops-network/index.ts")}\n`);
    const c = channels.channels["24.05.7376"];
    fs.writeFileSync(path.join(prog, "Pulumi.lab.yaml"), YAML.stringify({ config: {
      "nixops-network:hosts": Object.fromEntries(hosts.map((h) => [h.name, h.address])),
      "nixops-network:pins": { nixos: { url: c.url, sha256: c.sha256 } },
      "nixops-network:sshPrivateKeyFile": lab.privateKeyPath,
      "pulumi-nixos:vaultAddr": vault.addr,
    } }));
    process.env.VAULT_TOKEN = "s.thedroneely";
    const v = vault, ch = channels;
    return {
      lab, vault: v, channels: ch,
      stack: { cwd: prog, stack: "lab", state: path.join(prog, "lab.state.json") },
      stop: async () => { await ch.close(); await v.close(); await lab.down(); },
    };
  } catch (e) {
    await channels?.close();
    await vault?.close();
    await lab.down();
    throw e;
  }
}

/**
 * The seed's network as NixOps files (examples/nixops-network-nix/network.nix, unchanged) on lab
 * hosts heron…pigeon through the stack program (`pulumi-nixos:networkNix`), with the test Vault
 * and a pinned channel; `pulumi-nixos:hosts` points the seed's *.local names at the lab.
 */
export async function nixopsNetworkNixBed(tmp: string): Promise<Bed> {
  const names = ["heron", "talon", "tiger", "hound", "pigeon"];
  const lab = await Lab.up({ dir: path.join(tmp, "lab"), names });
  let vault: VaultServer | undefined;
  let channels: ChannelServer | undefined;
  try {
    const hosts = await lab.status();
    // On NixOS the configuration creates these (users.users.thedroneely); lab hosts are not NixOS.
    await Promise.all(names.map((n) => lab.exec(n, ["sh", "-c", "id thedroneely >/dev/null 2>&1 || useradd -M -G keys thedroneely; groupadd -f postgres"])));
    vault = await startVaultServer({ mounts: { secret: { version: 2, secrets: { thedroneely: THEDRONEELY_SECRETS } } }, tokens: { "s.thedroneely": ["secret/data/thedroneely"] } });
    const gateway = JSON.parse(fs.readFileSync(path.join(tmp, "lab", "lab.json"), "utf8")).hosts[0].gateway;
    channels = await startChannelServer(path.join(tmp, "channels"), gateway, ["24.05.7376"]);
    const prog = path.join(tmp, "nixops-network-nix");
    fs.mkdirSync(prog, { recursive: true });
    fs.writeFileSync(path.join(prog, "Pulumi.yaml"), `name: nixops-network-nix\nruntime:\n  name: nodejs\n  options:\n    typescript: true\nmain: ${path.join(ROOT, "stacks/index.ts")}\n`);
    const c = channels.channels["24.05.7376"];
    fs.writeFileSync(path.join(prog, "Pulumi.lab.yaml"), YAML.stringify({ config: {
      "pulumi-nixos:networkNix": path.join(ROOT, "examples/nixops-network-nix/network.nix"),
      "pulumi-nixos:pins": { nixos: { url: c.url, sha256: c.sha256 } },
      "pulumi-nixos:pin": "nixos",
      "pulumi-nixos:hosts": Object.fromEntries(hosts.map((h) => [h.name, h.address])),
      "pulumi-nixos:sshPrivateKeyFile": lab.privateKeyPath,
      "pulumi-nixos:vaultAddr": vault.addr,
    } }));
    process.env.VAULT_TOKEN = "s.thedroneely";
    const v = vault, ch = channels;
    return {
      lab, vault: v, channels: ch,
      stack: { cwd: prog, stack: "lab", state: path.join(prog, "lab.state.json") },
      stop: async () => { await ch.close(); await v.close(); await lab.down(); },
    };
  } catch (e) {
    await channels?.close();
    await vault?.close();
    await lab.down();
    throw e;
  }
}

/** The flake example on lab hosts alpha and beta. */
export async function flakeBed(tmp: string): Promise<Bed> {
  const lab = await Lab.up({ dir: path.join(tmp, "lab"), names: ["alpha", "beta"] });
  const hosts = await lab.status();
  const prog = path.join(tmp, "flake");
  fs.mkdirSync(prog, { recursive: true });
  fs.writeFileSync(path.join(prog, "Pulumi.yaml"), `name: flake-example\nruntime:\n  name: nodejs\n  options:\n    typescript: true\nmain: ${path.join(ROOT, "examples/flake/index.ts")}\n`);
  fs.writeFileSync(path.join(prog, "Pulumi.lab.yaml"), YAML.stringify({ config: {
    "flake-example:machines": Object.fromEntries(hosts.map((h) => [h.name, { host: h.address }])),
    "flake-example:sshPrivateKeyFile": lab.privateKeyPath,
  } }));
  return { lab, stack: { cwd: prog, stack: "lab", state: path.join(prog, "lab.state.json") }, stop: () => lab.down() };
}
