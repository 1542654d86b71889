/**
 * `pulumi-nixos import-nixops`: a deployment of NixOps's state file becomes a stack config
 * (`networkNix` = its network files), read-only. Each `none` machine's own SSH key pair — the one
 * NixOps deployed with — comes along: the private key as a per-machine secret of the stack, the
 * public key kept in root's authorized keys (NixOps's physical spec) so nobody is locked out.
 */
import * as os from "os";
import * as path from "path";
import { Command } from "commander";
import { defaultStateFile, findDeployment, isMachine, NixopsDeployment, readStateFile } from "../nixops/statefile";
import { knownHostKey } from "../nixops/known-hosts";
import { PassphraseSecrets } from "../state/passphrase";
import { editStackFile, stackConfigFile } from "./stack-file";
import { printTable } from "./table";

const NS = "pulumi-nixos";

interface ImportOpts {
  state?: string; list?: boolean; json?: boolean; deployment?: string; stack?: string; cwd?: string; configFile?: string;
  knownHosts?: string; keepNixopsKeys?: boolean; force?: boolean;
}

/** What `-d` writes and what it could not carry over. */
export interface ImportPlan {
  file: string;
  machines: string[];
  hostKeys: string[];
  tofu: string[];
  notCarried: string[];
}

/** Registers the command. */
export function registerImportNixopsCommand(program: Command): void {
  program.command("import-nixops")
    .description("a NixOps deployment (deployments.nixops) as a stack: networkNix, per-machine SSH keys (secrets), host keys (read-only)")
    .option("--state <file>", "NixOps state file (default $NIXOPS_STATE, then ~/.nixops/deployments.nixops)")
    .option("--list", "list the deployments, like `nixops list`")
    .option("--json", "with --list: machine-readable")
    .option("-d, --deployment <name|uuid>", "the deployment to import")
    .option("--stack <name>", "stack whose Pulumi.<stack>.yaml is written")
    .option("--cwd <dir>", "project directory (Pulumi.yaml)", ".")
    .option("--config-file <file>", "write this stack file instead")
    .option("--known-hosts <file>", "host keys from this file (default ~/.ssh/known_hosts)")
    .option("--no-keep-nixops-keys", "do not keep NixOps's per-machine public keys in root's authorized keys")
    .option("--force", "replace a network already in the stack file")
    .action(async (o: ImportOpts) => {
      const file = defaultStateFile(o.state);
      const all = await readStateFile(file);
      if (o.list || !o.deployment) {
        if (!o.list) throw new Error("give --list, or -d NAME|UUID --stack STACK");
        listDeployments(all, o.json);
        return;
      }
      const plan = importDeployment(file, findDeployment(file, all, o.deployment), o);
      console.log(`${plan.file}: stack config for NixOps deployment '${o.deployment}' (${plan.machines.length} machines: ${plan.machines.join(", ")})`);
      if (plan.hostKeys.length) console.log(`host keys from known_hosts: ${plan.hostKeys.join(", ")}`);
      for (const m of plan.tofu) console.log(`${m}: no host key in known_hosts: the first deploy records the key it sees (trust on first use)`);
      if (plan.notCarried.length) console.log(`not carried over:\n  ${plan.notCarried.join("\n  ")}`);
      console.log(`the state file was only read; next: pulumi up --stack ${o.stack ?? "<stack>"} (hosts already running their system copy nothing and re-activate)`);
    });
}

function listDeployments(all: NixopsDeployment[], json?: boolean): void {
  const rows = all.map((d) => ({
    uuid: d.uuid, name: d.name ?? "", description: d.description ?? "",
    machines: d.resources.filter(isMachine).length, types: [...new Set(d.resources.filter(isMachine).map((r) => r.type))].join(", "),
    nixExprs: d.nixExprs,
  }));
  if (json) { console.log(JSON.stringify(rows, null, 2)); return; }
  printTable(["UUID", "Name", "Description", "# Machines", "Type", "Network files"],
    rows.map((r) => [r.uuid, r.name, r.description, r.machines, r.types, r.nixExprs.join(" ")]));
}

/** Writes the stack file; returns what it did. Never writes the NixOps state file. */
export function importDeployment(stateFile: string, d: NixopsDeployment, o: ImportOpts): ImportPlan {
  const { file } = stackConfigFile({ cwd: o.cwd, stack: o.stack, configFile: o.configFile });
  const label = `deployment ${d.name ?? d.uuid}`;
  if (!d.nixExprs.length) throw new Error(`${stateFile}: ${label} has no network files (nixExprs)`);
  const knownHosts = o.knownHosts ?? path.join(os.homedir(), ".ssh", "known_hosts");
  const machines = d.resources.filter(isMachine);
  const notCarried: string[] = [];
  const secrets: Record<string, string> = {};
  const authorized: Record<string, string[]> = {};
  // Each machine's `stateVersion` attribute (nixops/backends/__init__.py `state_version`), which
  // NixOps's physical spec applied as `system.stateVersion = mkDefault …` (deployment.py `get_physical_spec`).
  const stateVersions: Record<string, string> = {};
  const hostKeys: Record<string, string> = {};
  const tofu: string[] = [];
  for (const r of d.resources.filter((x) => !isMachine(x))) notCarried.push(`resource ${r.name} (${r.type}): NixOps resources are not supported`);
  for (const m of machines) {
    if (m.type !== "none") { notCarried.push(`machine ${m.name} (${m.type}): only existing hosts (targetEnv "none") are deployed`); continue; }
    const priv = m.attrs["none.sshPrivateKey"];
    const pub = m.attrs["none.sshPublicKey"];
    if (priv) secrets[m.name] = priv;
    else notCarried.push(`machine ${m.name}: no NixOps key pair (provisionSSHKey was off): give pulumi-nixos:sshPrivateKey`);
    if (pub && o.keepNixopsKeys !== false) authorized[m.name] = [pub.trim()];
    if (m.attrs.stateVersion) stateVersions[m.name] = m.attrs.stateVersion;
    const host = m.attrs.targetHost;
    const key = host ? knownHostKey(knownHosts, host, Number(m.attrs.targetPort ?? 22) || 22) : undefined;
    if (key) hostKeys[m.name] = key; else tofu.push(m.name);
  }
  if (d.attrs.nixPath && JSON.parse(d.attrs.nixPath).length) notCarried.push(`nixPath ${d.attrs.nixPath}: written as pulumi-nixos:nixPath; prefer a pin (pulumi-nixos pin add nixos URL, pulumi-nixos:pin: nixos)`);
  else notCarried.push("the nixpkgs NixOps used (the operator's NIX_PATH): pin one with `pulumi-nixos pin add nixos URL` and pulumi-nixos:pin: nixos");
  notCarried.push("generations: they stay on the hosts (pulumi-nixos list-generations, rollback read them there)");

  editStackFile(file, (doc) => {
    const has = (k: string) => doc.hasIn(["config", `${NS}:${k}`]);
    const existing = ["networkNix", "network", "networkFile", "machines"].filter(has);
    if (existing.length && !o.force) throw new Error(`${file} already has ${existing.map((k) => `${NS}:${k}`).join(", ")} (--force replaces it)`);
    for (const k of [...existing, ...["deploymentUuid", "deploymentName", "stateVersions"].filter(has)]) doc.deleteIn(["config", `${NS}:${k}`]);
    const provider = doc.get("secretsprovider") as string | undefined;
    if (provider && provider !== "passphrase" && !provider.startsWith("passphrase")) {
      throw new Error(`${file}: secrets provider ${provider}: import-nixops seals keys with the passphrase provider only; set them with \`pulumi config set --secret ${NS}:sshPrivateKey.<machine>\``);
    }
    let sealer: PassphraseSecrets | undefined;
    if (Object.keys(secrets).length) {
      const salt = doc.get("encryptionsalt") as string | undefined;
      sealer = salt ? PassphraseSecrets.open(salt, undefined, `stack config ${file}`) : PassphraseSecrets.create();
      doc.set("encryptionsalt", sealer.state);
    }
    doc.setIn(["config", `${NS}:networkNix`], d.nixExprs.length === 1 ? d.nixExprs[0] : d.nixExprs);
    // What NixOps gave the network's modules (deployment.py `eval`: uuid, `self.name or ""`).
    doc.setIn(["config", `${NS}:deploymentUuid`], d.uuid);
    doc.setIn(["config", `${NS}:deploymentName`], d.name ?? "");
    if (Object.keys(stateVersions).length) doc.setIn(["config", `${NS}:stateVersions`], stateVersions);
    if (Object.keys(d.args).length) doc.setIn(["config", `${NS}:networkArgsNix`], d.args);
    if (d.attrs.nixPath && JSON.parse(d.attrs.nixPath).length) doc.setIn(["config", `${NS}:nixPath`], JSON.parse(d.attrs.nixPath));
    if (Object.keys(hostKeys).length) doc.setIn(["config", `${NS}:hostPublicKeys`], hostKeys);
    if (Object.keys(authorized).length) doc.setIn(["config", `${NS}:rootAuthorizedKeys`], authorized);
    // Each machine's key sealed on its own (`pulumi config set --secret`): never clear text on disk.
    for (const [m, k] of Object.entries(secrets)) doc.setIn(["config", `${NS}:sshPrivateKey.${m}`], { secure: sealer!.encrypt(k) });
  });
  return { file, machines: machines.map((m) => m.name), hostKeys: Object.keys(hostKeys), tofu, notCarried };
}
