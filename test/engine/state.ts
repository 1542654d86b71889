/**
 * The stack's state, held as `pulumi stack export` writes it (apitype.DeploymentV3 in
 * sdk/go/common/apitype/core.go): `{version: 3, deployment: {manifest, secrets_providers,
 * resources}}`, secrets as `{sig, ciphertext}` sealed by the passphrase secrets provider whose
 * state (`v1:salt:check`, the stack file's encryptionsalt) the export carries. So `pulumi stack
 * import` takes it, and the fleet commands read it and a real export with the same code.
 */
import * as crypto from "crypto";
import * as fs from "fs";
import { PassphraseSecrets } from "../../provider/state/passphrase";
import { Json, containsSecret, openSecrets, sealSecrets } from "./secrets";

/** One resource (apitype.ResourceV3); inputs/outputs in wire form (secrets marked, not sealed). */
export interface StateResource {
  urn: string;
  custom: boolean;
  /** A resource waiting to be deleted (the old half of a create-before-delete replacement). */
  delete?: boolean;
  id?: string;
  type: string;
  inputs: Record<string, Json>;
  outputs: Record<string, Json>;
  parent?: string;
  protect?: boolean;
  dependencies: string[];
  propertyDependencies?: Record<string, string[]>;
  initErrors?: string[];
  /** Provider reference `urn::id`. */
  provider?: string;
  additionalSecretOutputs?: string[];
  retainOnDelete?: boolean;
  ignoreChanges?: string[];
  replaceOnChanges?: string[];
  created?: string;
  modified?: string;
}

interface ExportFile {
  version: 3;
  deployment: {
    manifest: { time: string; magic: string; version: string };
    secrets_providers?: { type: string; state: { salt: string } };
    resources?: Json[];
  };
}

/** The engine version whose export format this writes. */
export const ENGINE_VERSION = "v3.248.0";

/** Stack state in memory, written atomically (temp file + rename) after every change. */
export class StackState {
  private resources: StateResource[] = [];

  private constructor(readonly file: string, private secretsState: string | undefined) {}

  /**
   * Loads the state file (an empty state when missing). `salt` is the stack's encryptionsalt:
   * secrets are sealed with it, and opened with the salt the file records.
   */
  static load(file: string, salt: string | undefined): StackState {
    if (!fs.existsSync(file)) return new StackState(file, salt);
    const data = JSON.parse(fs.readFileSync(file, "utf8")) as ExportFile;
    if (data.version !== 3) throw new Error(`${file}: unsupported state version ${data.version} (expected 3)`);
    const sp = data.deployment.secrets_providers;
    if (sp && sp.type !== "passphrase") throw new Error(`${file}: secrets provider '${sp.type}' is not supported by the harness (passphrase only)`);
    const st = new StackState(file, sp?.state?.salt ?? salt);
    const manager = () => st.secrets("open");
    st.resources = (data.deployment.resources ?? []).map((raw) => {
      const r = openSecrets(raw, manager) as unknown as StateResource;
      return { ...r, dependencies: r.dependencies ?? [], inputs: r.inputs ?? {}, outputs: r.outputs ?? {} };
    });
    return st;
  }

  private manager?: PassphraseSecrets;

  private secrets(why: "open" | "seal"): PassphraseSecrets {
    if (!this.secretsState) throw new Error(`${this.file}: cannot ${why} secrets: the stack has no passphrase salt (encryptionsalt)`);
    this.manager ??= PassphraseSecrets.open(this.secretsState, undefined, "the stack");
    return this.manager;
  }

  /** The live (not pending-delete) resource with this URN. */
  get(urn: string): StateResource | undefined { return this.resources.find((r) => r.urn === urn && !r.delete); }

  /** Every resource, in state order (dependencies before dependents). */
  all(): StateResource[] { return [...this.resources]; }

  /** Records a resource: replaces the live entry with its URN in place, or appends it. */
  set(r: StateResource): void {
    const i = this.resources.findIndex((x) => x.urn === r.urn && !x.delete);
    if (i >= 0) this.resources[i] = r;
    else this.resources.push(r);
    this.save();
  }

  /** Removes one entry (by identity, so a pending delete and its replacement stay apart). */
  remove(r: StateResource): void {
    this.resources = this.resources.filter((x) => x !== r);
    this.save();
  }

  /** Points parents and dependencies at a resource's new URN (an alias matched). */
  renameReferences(from: string, to: string): void {
    const swap = (u: string) => (u === from ? to : u);
    for (const r of this.resources) {
      if (r.parent === from) r.parent = to;
      r.dependencies = r.dependencies.map(swap);
      if (r.propertyDependencies) for (const k of Object.keys(r.propertyDependencies)) r.propertyDependencies[k] = r.propertyDependencies[k].map(swap);
    }
  }

  /** Marks the live entry pending deletion (create-before-delete: the replacement comes next). */
  markPendingDelete(urn: string): StateResource | undefined {
    const old = this.get(urn);
    if (old) old.delete = true;
    this.save();
    return old;
  }

  /** Reorders: the given URNs first in this order, then the rest as they were (end of an update). */
  reorder(first: string[]): void {
    const rank = new Map(first.map((u, i) => [u, i]));
    const keyed = this.resources.map((r, i) => ({ r, k: rank.has(r.urn) && !r.delete ? rank.get(r.urn)! : first.length + i }));
    this.resources = keyed.sort((a, b) => a.k - b.k).map((x) => x.r);
    this.save();
  }

  /** Writes the file atomically (mode 0600), sealing secrets. */
  save(): void {
    const resources = this.resources.map((r) => {
      const clean = JSON.parse(JSON.stringify(r)) as Json;
      return containsSecret(clean) ? sealSecrets(clean, this.secrets("seal")) : clean;
    });
    const out: ExportFile = {
      version: 3,
      deployment: {
        manifest: { time: new Date().toISOString(), magic: crypto.createHash("sha256").update(ENGINE_VERSION).digest("hex"), version: ENGINE_VERSION },
        ...(this.secretsState ? { secrets_providers: { type: "passphrase", state: { salt: this.secretsState } } } : {}),
        resources,
      },
    };
    const tmp = `${this.file}.tmp-${process.pid}`;
    fs.writeFileSync(tmp, JSON.stringify(out, null, 4) + "\n", { mode: 0o600 });
    fs.renameSync(tmp, this.file);
  }
}
