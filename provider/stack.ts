/**
 * The stack program, as a module of the package: a project's whole program is the one line
 *
 *   export * from "pulumi-nixos/stack";
 *
 * (the repo's own stacks/index.ts is that line). One stack = one deployment (`nixops create -d
 * nixos` ≈ `pulumi stack init nixos`). The network comes from stack config (Pulumi.<stack>.yaml),
 * always under `pulumi-nixos:` whatever the project is called, with NixOps's names:
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
 * `pulumi-nixos:rollout: { canary: 1, batchSize: "20%" }` sets waves for it and for networkNix (over
 * a description's `network.rollout`; README "Rolling deploys").
 *
 * A NixOps network as it is (its Nix files, unchanged) instead:
 *
 *   pulumi-nixos:networkNix: ./network.nix     # or a list, merged as `nixops create a.nix b.nix`
 *   pulumi-nixos:pins: { nixos: { url: …, sha256: … } }
 *   pulumi-nixos:pin: nixos                    # the nixpkgs the whole network is evaluated with
 *   pulumi-nixos:networkArgs: { … }            # `nixops set-args`, when the files are functions
 *   pulumi-nixos:extraBuiltinsFile: ./helpers/extra-builtins.nix   # only for builtins besides vault
 *   pulumi-nixos:hosts: { heron: 10.0.0.5 }    # override deployment.targetHost (names that do not resolve)
 *   pulumi-nixos:networkArgsNix: { … }         # arguments as Nix expressions (what import-nixops writes)
 *   pulumi-nixos:hostPublicKeys: { heron: ssh-ed25519 AAAA… }
 *   pulumi-nixos:rootAuthorizedKeys: { heron: [ssh-ed25519 AAAA… NixOps client key for heron] }
 *   pulumi-nixos:sshPrivateKey.heron: { secure: … }   # a machine's own key (NixOps's per-machine key)
 *   pulumi-nixos:deploymentUuid / deploymentName       # NixOps's `uuid` / `deploymentName` (default: derived / the stack)
 *   pulumi-nixos:stateVersions: { heron: "20.03" }     # system.stateVersion NixOps recorded (mkDefault)
 *
 * Relative paths in stack config (networkFile, configuration/imports without a networkFile,
 * nixPath entries, sshPrivateKeyFile) resolve against the project root, the directory holding
 * Pulumi.yaml, whatever directory the CLI runs the program in.
 *
 * Stack outputs: `systems`, each machine's generation and system path.
 */
import * as fs from "fs";
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import YAML from "yaml";
import { Network } from "./network/network";
import { NetworkDescription, NetworkNixDescription } from "./network/description";
import { getSecretConfig, isSecretConfig, plainSecretError, requireSecretIfSet } from "./util/secret-config";
import { checkStackConfig } from "./stack-config";
import { SchemaError } from "./schema";
import { validateRollout } from "./rollout/settings";

/**
 * A key's `text:` in a network given as plain config would sit in clear text in the stack file and
 * in state: refused unless that config value was set with --secret (`--path` marks it secure).
 */
function refusePlainKeyText(net: NetworkDescription, key: "network" | "machines"): void {
  const full = `pulumi-nixos:${key}`;
  if (isSecretConfig(full)) return;
  const prefix = key === "network" ? "machines." : "";
  const specs: [string, NetworkDescription["defaults"]][] = Object.entries(net.machines ?? {}).map(([m, spec]) => [`${prefix}${m}`, spec]);
  if (key === "network" && net.defaults) specs.push(["defaults", net.defaults]);
  for (const [where, spec] of specs) {
    for (const [k, ks] of Object.entries(spec?.keys ?? {})) {
      if (ks && typeof ks === "object" && ks.text !== undefined) {
        const field = `${where}.keys.${k}.text`;
        throw plainSecretError(full, `${field} (a key's content)`, `--path '${full}.${field}'`);
      }
    }
  }
}

/**
 * Names a network's keys read as `config:` sources (`keys.db.config: dbPassword`): in a project
 * itself called pulumi-nixos they are keys of this namespace, and not typos.
 */
function keyConfigSources(net: NetworkDescription | undefined): string[] {
  const specs = [...Object.values(net?.machines ?? {}), ...(net?.defaults ? [net.defaults] : [])];
  return specs.flatMap((m) => Object.values(m?.keys ?? {}).map((k) => (k as { config?: unknown })?.config)).filter((x): x is string => typeof x === "string" && !x.includes(":"));
}

const config = new pulumi.Config("pulumi-nixos");
// The CLI passes the project root as --root-directory; a runner that does not ("rootDirectory" is
// the SDK's placeholder) runs the program in the project directory.
const rootDir = path.isAbsolute(pulumi.runtime.getRootDirectory()) ? pulumi.runtime.getRootDirectory() : process.cwd();
const fromRoot = (p: string) => path.resolve(rootDir, p);
const networkFile = config.get("networkFile");
let network: NetworkDescription | undefined;
let networkNix: NetworkNixDescription | undefined;
let baseDir = rootDir;
if (config.get("networkNix") !== undefined) {
  // A string, a list of files, or the whole networkNix object.
  const text = config.get("networkNix")!;
  let raw: unknown = text;
  try { raw = JSON.parse(text); } catch { /* a plain path */ }
  networkNix = raw && typeof raw === "object" && !Array.isArray(raw) ? raw as NetworkNixDescription : {
    files: raw as string | string[],
    args: config.getObject("networkArgs"),
    nixArgs: config.getObject("networkArgsNix"),
    hostPublicKeys: config.getObject("hostPublicKeys"),
    rootAuthorizedKeys: config.getObject("rootAuthorizedKeys"),
    extraBuiltinsFile: config.get("extraBuiltinsFile"),
    pins: config.getObject("pins"),
    pin: config.get("pin"),
    channel: config.getBoolean("channel"),
    hosts: config.getObject("hosts"),
    // What import-nixops carries over from NixOps's state file (issue 26).
    deploymentUuid: config.get("deploymentUuid"),
    deploymentName: config.get("deploymentName"),
    stateVersions: config.getObject("stateVersions"),
  };
  for (const k of Object.keys(networkNix) as (keyof NetworkNixDescription)[]) if (networkNix[k] === undefined) delete networkNix[k];
} else if (networkFile) {
  const file = fromRoot(networkFile);
  if (!fs.existsSync(file)) throw new SchemaError(`pulumi-nixos:networkFile: no such file ${file} (relative paths are from the project root, ${rootDir})`);
  network = YAML.parse(fs.readFileSync(file, "utf8"));
  baseDir = path.dirname(file);
} else {
  const key = config.get("network") !== undefined ? "network" : "machines";
  network = config.getObject<NetworkDescription>("network")
    ?? { machines: config.getObject("machines") ?? {}, pins: config.getObject("pins") };
  refusePlainKeyText(network, key);
}
// Every key checked before the network is built: a typo is named with "did you mean", a missing
// network said plainly (never the SDK's ConfigMissingError: slow, and it names the key looked for).
checkStackConfig(keyConfigSources(network));
const keyFile = config.get("sshPrivateKeyFile");
requireSecretIfSet(config, "vaultToken", "the Vault token");
const privateKey = getSecretConfig(config, "sshPrivateKey", "the SSH private key")
  ?? (keyFile ? pulumi.secret(fs.readFileSync(fromRoot(keyFile), "utf8")) : undefined);
// Per-machine keys (`pulumi-nixos:sshPrivateKey.<machine>`, each set with --secret), over sshPrivateKey.
const MACHINE_KEY = "pulumi-nixos:sshPrivateKey.";
const privateKeys = Object.fromEntries(Object.keys(pulumi.runtime.allConfig()).filter((k) => k.startsWith(MACHINE_KEY)).map((k) => {
  const m = k.slice(MACHINE_KEY.length);
  return [m, getSecretConfig(config, `sshPrivateKey.${m}`, `the SSH private key of machine ${m}`)!];
}));
const nixPath = (config.getObject<string[]>("nixPath") ?? []).map((e) => {
  const i = e.indexOf("=");
  const v = i < 0 ? e : e.slice(i + 1);
  return /^[a-z]+:\/\//.test(v) ? e : `${i < 0 ? "" : e.slice(0, i + 1)}${fromRoot(v)}`;
});

const rollout = config.getObject("rollout");
validateRollout("pulumi-nixos:rollout", rollout);
const net = new Network(network?.description ?? "network", {
  network, networkNix, rollout, baseDir, privateKey, privateKeys, nixPath, allowUnpinned: config.getBoolean("allowUnpinned") ?? false,
});

/** Each machine's deployed generation and system path (`generation 3: /nix/store/…`). */
export const systems = Object.fromEntries(Object.entries(net.machines).map(([n, m]) =>
  [n, pulumi.interpolate`generation ${m.generation}: ${m.systemPath}`]));
