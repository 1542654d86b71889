/**
 * The fleet as recorded in a stack's state: machines, keys and channel pins with their
 * connections. Reads `pulumi stack export --show-secrets` (secrets as plaintext) or the engine
 * harness's state file (secrets sealed with PULUMI_CONFIG_PASSPHRASE).
 */
import * as fs from "fs";
import { spawnSync } from "child_process";
import { Connection, chainKey, normalizeConnection, withRecordedProxyKeys } from "../connection";
import type { KeyInputs } from "../handlers/key";
import { PassphraseSecrets } from "../state/passphrase";
import type { ClosureManifest } from "../nix/manifest";
import { describeTimeout, timeoutMs } from "../util/timeouts";
import { UsageError } from "../cli/usage";

const SIG = "4dabf18193072939515e22adb298388d";

/** A machine of the stack. */
export interface FleetMachine {
  name: string;
  urn: string;
  connection: Connection;
  hostPublicKey?: string;
  systemPath: string;
  generation?: number;
  tags: string[];
  /** The deployed closure's manifest (outputs.closureManifest), when the state has one. */
  closureManifest?: ClosureManifest;
}

/** What the fleet commands work on. */
export interface Fleet {
  machines: FleetMachine[];
  /** Keys (state inputs, with content) by machine host:port. */
  keys: KeyInputs[];
}

/** Loads a stack export (from `--state FILE` or `pulumi stack export --show-secrets --stack NAME`). */
/** The resources of a stack export (`pulumi stack export` v3, an older checkpoint, or the harness's state). */
export function exportResources(data: any): any[] {
  return (data.deployment ?? data.checkpoint?.latest ?? data).resources ?? [];
}

export function loadFleet(opts: { state?: string; stack?: string; cwd?: string }): Fleet {
  let raw: string;
  if (opts.state) raw = fs.readFileSync(opts.state, "utf8");
  else if (opts.stack) {
    // The backend may be remote: the export is bounded like a remote command.
    const r = spawnSync("pulumi", ["stack", "export", "--show-secrets", "--stack", opts.stack, ...(opts.cwd ? ["--cwd", opts.cwd] : [])],
      { encoding: "utf8", timeout: timeoutMs("command"), killSignal: "SIGKILL", maxBuffer: 256 << 20 });
    if ((r.error as NodeJS.ErrnoException | undefined)?.code === "ETIMEDOUT") throw new Error(`pulumi stack export did not finish within ${describeTimeout("command")}`);
    if (r.error || r.status !== 0) throw new Error(`pulumi stack export failed (${r.error?.message ?? r.stderr.trim()}); with the engine harness use --state FILE`);
    raw = r.stdout;
  } else throw new UsageError("which stack? give --stack NAME (needs the pulumi CLI) or --state FILE");
  const data = JSON.parse(raw);
  const resources: any[] = exportResources(data);
  const open = opener(data);
  const machines: FleetMachine[] = [];
  const keys: KeyInputs[] = [];
  for (const r of resources) {
    const inputs = open(r.inputs ?? {});
    const outputs = open(r.outputs ?? {});
    const kind = outputs.kind ?? inputs.kind;
    if (kind === "machine") {
      // The machine's own name (a Network's `<network>-heron` is `heron`; before typed tokens, the URN's name).
      const name = String(inputs.name ?? outputs.name ?? String(r.urn).split("::").pop());
      machines.push({
        name, urn: r.urn,
        connection: normalizeConnection({ ...(outputs.connection ?? inputs.connection), privateKey: (inputs.connection ?? outputs.connection)?.privateKey }),
        hostPublicKey: outputs.hostPublicKey, systemPath: outputs.systemPath, generation: outputs.generation, tags: outputs.tags ?? inputs.tags ?? [],
        closureManifest: outputs.closureManifest,
      });
    } else if (kind === "deploymentKey") {
      // Bastion keys recorded at first contact (outputs) stay pinned.
      keys.push({ ...inputs, connection: withRecordedProxyKeys(normalizeConnection({ ...inputs.connection, hostPublicKey: inputs.connection?.hostPublicKey || outputs.hostPublicKey }),
        outputs.connection?.host ? normalizeConnection(outputs.connection) : undefined) });
    }
  }
  return { machines, keys };
}

/**
 * Secrets → plain values: `{sig, plaintext}` (`stack export --show-secrets`), `{sig, ciphertext}`
 * (a plain export or the engine harness's state: opened with the passphrase secrets provider whose
 * state the export carries).
 */
function opener(data: any): (v: any) => any {
  let secrets: PassphraseSecrets | undefined;
  const decrypt = (c: string) => {
    const sp = data.deployment?.secrets_providers;
    if (sp?.type !== "passphrase") throw new Error(`secrets of the ${sp?.type ?? "unknown"} secrets provider: export with --show-secrets`);
    secrets ??= PassphraseSecrets.open(String(sp.state?.salt ?? ""), undefined, "the stack state");
    return secrets.decrypt(c);
  };
  const open = (v: any): any => {
    if (v && typeof v === "object" && !Array.isArray(v) && v[SIG]) {
      if ("plaintext" in v) return JSON.parse(v.plaintext);
      if ("ciphertext" in v) return JSON.parse(decrypt(v.ciphertext));
      if ("value" in v) return open(v.value);
    }
    if (Array.isArray(v)) return v.map(open);
    if (v && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, open(x)]));
    return v;
  };
  return open;
}

/** Machines picked by --include / --exclude / --tag (NixOps semantics: include first, then exclude). */
export function selectMachines(all: FleetMachine[], sel: { include?: string[]; exclude?: string[]; tag?: string[] }): FleetMachine[] {
  const unknown = [...(sel.include ?? []), ...(sel.exclude ?? [])].filter((n) => !all.some((m) => m.name === n));
  if (unknown.length) throw new UsageError(`no machine named ${unknown.join(", ")} in the stack (machines: ${all.map((m) => m.name).join(", ")})`);
  return [...all].sort((a, b) => a.name.localeCompare(b.name)).filter((m) => (!sel.include?.length || sel.include.includes(m.name))
    && !sel.exclude?.includes(m.name)
    && (!sel.tag?.length || sel.tag.some((t) => m.tags.includes(t))));
}

/** The keys of a machine (same host and port). */
export function keysOf(fleet: Fleet, m: FleetMachine): KeyInputs[] {
  return fleet.keys.filter((k) => chainKey(k.connection) === chainKey(m.connection))
    .sort((a, b) => a.name.localeCompare(b.name));
}
