/**
 * The harness's stack state: a JSON file shaped like `pulumi stack export` (version 3,
 * deployment.resources with urn, type, id, inputs, outputs, parent, dependencies), secrets sealed
 * with the passphrase crypter.
 */
import * as crypto from "crypto";
import * as fs from "fs";
import { Json, PassphraseCrypter, containsSecret } from "./secrets";

/** One resource in the state. Inputs/outputs are kept in wire form (secrets marked). */
export interface StateResource {
  urn: string;
  custom: boolean;
  type: string;
  id?: string;
  inputs: Record<string, Json>;
  outputs: Record<string, Json>;
  parent?: string;
  dependencies: string[];
  /** Set when the last operation failed part-way (NixOps would say "partially deployed"). */
  initErrors?: string[];
}

interface ExportFile {
  version: 3;
  deployment: {
    manifest: { time: string; magic: string; version: string };
    secrets_providers: { type: "passphrase"; state: { salt: string } };
    resources: Json[];
  };
}

/** Stack state held in memory and written atomically after every step. */
export class StackState {
  private readonly resources = new Map<string, StateResource>();
  private crypter?: PassphraseCrypter;

  private constructor(readonly file: string, private readonly salt: Buffer) {}

  static load(file: string): StackState {
    if (!fs.existsSync(file)) return new StackState(file, crypto.randomBytes(16));
    const data = JSON.parse(fs.readFileSync(file, "utf8")) as ExportFile;
    const salt = Buffer.from(data.deployment.secrets_providers?.state?.salt ?? "", "base64");
    const st = new StackState(file, salt.length ? salt : crypto.randomBytes(16));
    for (const raw of data.deployment.resources ?? []) {
      const r = raw as unknown as StateResource;
      const opened = JSON.stringify(r).includes("ciphertext") ? st.getCrypter().open(raw) as unknown as StateResource : r;
      st.resources.set(r.urn, { ...opened, dependencies: opened.dependencies ?? [], inputs: opened.inputs ?? {}, outputs: opened.outputs ?? {} });
    }
    return st;
  }

  private getCrypter(): PassphraseCrypter {
    this.crypter ??= PassphraseCrypter.fromEnv(this.salt);
    return this.crypter;
  }

  get(urn: string): StateResource | undefined { return this.resources.get(urn); }
  all(): StateResource[] { return [...this.resources.values()]; }

  set(r: StateResource): void { this.resources.set(r.urn, r); this.save(); }
  delete(urn: string): void { this.resources.delete(urn); this.save(); }

  /** Writes the file atomically (temp file + rename), sealing secrets. */
  save(): void {
    const resources = this.all().map((r) => (containsSecret(r) ? this.getCrypter().seal(r as unknown as Json) : (r as unknown as Json)));
    const out: ExportFile = {
      version: 3,
      deployment: {
        manifest: { time: new Date().toISOString(), magic: "pulumi-nixos-engine-harness", version: "v3.248.0" },
        secrets_providers: { type: "passphrase", state: { salt: this.salt.toString("base64") } },
        resources,
      },
    };
    const tmp = `${this.file}.tmp-${process.pid}`;
    fs.writeFileSync(tmp, JSON.stringify(out, null, 2), { mode: 0o600 });
    fs.renameSync(tmp, this.file);
  }
}
