/**
 * A lab test bed for the examples: lab hosts, the test Vault (thedroneely/ secrets), a channel
 * server for pins, and a stack config that points an example program at them.
 */
import * as fs from "fs";
import { randomBytes } from "crypto";
import * as path from "path";
import YAML from "yaml";
import { Lab } from "../../provider/lab/lab";
import { startVaultServer, VaultServer } from "../vault/server";
import { startChannelServer, ChannelServer } from "../channels/server";
import { StackRef } from "../helpers/engine";
import { ROOT, STANDIN_NIXPKGS } from "../helpers/env";

/**
 * Unique to this run: the tests search the whole store for these values, and the store holds
 * copies of this repository's tracked files (a flake in a git work tree is copied whole, as
 * nixos-rebuild copies it), so a literal here would be found in them; a leak is this run's.
 */
const RUN = randomBytes(6).toString("hex");
/** Secrets of the seed's Vault, as the test Vault serves them. */
export const THEDRONEELY_SECRETS = {
  cockpit_api_token: `cockpit-token-from-vault-${RUN}`,
  pgsql_database_password: `pgsql-password-from-vault-${RUN}`,
  ssh_known_hosts: `heron.local ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleKnownHost run-${RUN}`,
};

/** Everything a bed runs; stop() ends it all. */
export interface Bed {
  lab: Lab;
  vault?: VaultServer;
  channels?: ChannelServer;
  stack: StackRef;
  stop(): Promise<void>;
}

/** What a seed bed's stack config gets to point the program at the lab, the Vault and the channel. */
interface SeedBedParts { hosts: Record<string, string>; pin: { url: string; sha256: string }; keyFile: string; vaultAddr: string }

/**
 * The seed's hosts heron…pigeon on the lab, with the seed's users, the test Vault and a pinned
 * channel; `prog` runs `main` with the stack config `config` makes. Everything stops on failure.
 */
async function seedBed(tmp: string, prog: string, main: string, config: (p: SeedBedParts) => Record<string, unknown>): Promise<Bed> {
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
    const dir = path.join(tmp, prog);
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, "Pulumi.yaml"), `name: ${prog}\nruntime:\n  name: nodejs\n  options:\n    typescript: true\nmain: ${main}\n`);
    const c = channels.channels["24.05.7376"];
    fs.writeFileSync(path.join(dir, "Pulumi.lab.yaml"), YAML.stringify({ config: config({
      hosts: Object.fromEntries(hosts.map((h) => [h.name, h.address])), pin: { url: c.url, sha256: c.sha256 },
      keyFile: lab.privateKeyPath, vaultAddr: vault.addr,
    }) }));
    process.env.VAULT_TOKEN = "s.thedroneely";
    const v = vault, ch = channels;
    return {
      lab, vault: v, channels: ch,
      stack: { cwd: dir, stack: "lab", state: path.join(dir, "lab.state.json") },
      stop: async () => { await ch.close(); await v.close(); await lab.down(); },
    };
  } catch (e) {
    await channels?.close();
    await vault?.close();
    await lab.down();
    throw e;
  }
}

/** The seed's network in its YAML form (examples/nixops-network) on lab hosts heron…pigeon. */
export function nixopsNetworkBed(tmp: string): Promise<Bed> {
  return seedBed(tmp, "nixops-network", path.join(ROOT, "examples/nixops-network/index.ts"), (p) => ({
    "nixops-network:hosts": p.hosts,
    "nixops-network:pins": { nixos: p.pin },
    "nixops-network:sshPrivateKeyFile": p.keyFile,
    "pulumi-nixos:vaultAddr": p.vaultAddr,
  }));
}

/**
 * The seed's network as NixOps files (examples/nixops-network-nix/network.nix, unchanged) on lab
 * hosts heron…pigeon through the stack program (`pulumi-nixos:networkNix`), with the test Vault
 * and a pinned channel; `pulumi-nixos:hosts` points the seed's *.local names at the lab.
 */
export function nixopsNetworkNixBed(tmp: string): Promise<Bed> {
  return seedBed(tmp, "nixops-network-nix", path.join(ROOT, "stacks/index.ts"), (p) => ({
    "pulumi-nixos:networkNix": path.join(ROOT, "examples/nixops-network-nix/network.nix"),
    "pulumi-nixos:pins": { nixos: p.pin },
    "pulumi-nixos:pin": "nixos",
    "pulumi-nixos:hosts": p.hosts,
    "pulumi-nixos:sshPrivateKeyFile": p.keyFile,
    "pulumi-nixos:vaultAddr": p.vaultAddr,
  }));
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

/** The two-tier example (specialArgs) on lab hosts db and web, against the stand-in nixpkgs. */
export async function twoTierBed(tmp: string): Promise<Bed> {
  const lab = await Lab.up({ dir: path.join(tmp, "lab"), names: ["db", "web"] });
  const hosts = Object.fromEntries((await lab.status()).map((h) => [h.name, h.address]));
  const prog = path.join(tmp, "two-tier");
  fs.mkdirSync(prog, { recursive: true });
  fs.writeFileSync(path.join(prog, "Pulumi.yaml"), `name: two-tier\nruntime:\n  name: nodejs\n  options:\n    typescript: true\nmain: ${path.join(ROOT, "examples/two-tier/index.ts")}\n`);
  fs.writeFileSync(path.join(prog, "Pulumi.lab.yaml"), YAML.stringify({ config: {
    "two-tier:hosts": hosts, "two-tier:sshPrivateKeyFile": lab.privateKeyPath, "two-tier:nixpkgs": STANDIN_NIXPKGS,
    "two-tier:dbPassword": `db-password-${RUN}`,
  } }));
  return { lab, stack: { cwd: prog, stack: "lab", state: path.join(prog, "lab.state.json") }, stop: () => lab.down() };
}
