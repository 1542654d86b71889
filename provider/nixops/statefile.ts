/**
 * Reading NixOps's state file (`~/.nixops/deployments.nixops`, SQLite, schema version 3 as in
 * NixOS/nixops `nixops/statefile.py`: Deployments, DeploymentAttrs, Resources, ResourceAttrs).
 * Read-only: the file's bytes are read once and opened in memory with sql.js (SQLite compiled to
 * WebAssembly, shipped in its npm package: no install script, no download at install time).
 */
import * as fs from "fs";
import * as os from "os";
import * as path from "path";

/** The schema version this reader understands (NixOps's `current_schema`). */
export const NIXOPS_SCHEMA = 3;

/** One machine (or other resource) of a deployment. */
export interface NixopsResource {
  name: string;
  /** The backend (`none` for existing hosts) or resource type (`ssh-keypair`, …). */
  type: string;
  /** ResourceAttrs: `targetHost`, `toplevel`, `none.sshPrivateKey`, `none.sshPublicKey`, … */
  attrs: Record<string, string>;
}

/** One deployment. */
export interface NixopsDeployment {
  uuid: string;
  name?: string;
  description?: string;
  /** Network files (`nixExprs`, JSON in DeploymentAttrs). */
  nixExprs: string[];
  /** `nixops set-args` values: name → Nix expression. */
  args: Record<string, string>;
  /** Other DeploymentAttrs (nixPath, rollbackEnabled, configsPath, …). */
  attrs: Record<string, string>;
  resources: NixopsResource[];
}

/** Backends whose resources are machines (NixOps `MachineState` types); others are resources. */
const MACHINE_TYPES = ["none", "ec2", "gce", "azure", "hetzner", "virtualbox", "libvirtd", "container", "digitalOcean", "hetznercloud", "vultr", "aws", "packet"];

/** Whether a resource is a machine (a backend type, or one that has a toplevel / targetHost). */
export function isMachine(r: NixopsResource): boolean {
  return MACHINE_TYPES.includes(r.type) || "toplevel" in r.attrs || "targetHost" in r.attrs;
}

/** `--state`, else `$NIXOPS_STATE`, else `~/.nixops/deployments.nixops`, as NixOps chooses it. */
export function defaultStateFile(explicit?: string): string {
  return path.resolve(explicit ?? process.env.NIXOPS_STATE ?? path.join(os.homedir(), ".nixops", "deployments.nixops"));
}

// sql.js's typings are not shipped; the few calls used here.
interface SqlDb { exec(sql: string, params?: unknown[]): { columns: string[]; values: unknown[][] }[]; close(): void }
interface SqlJs { Database: new (data?: Uint8Array) => SqlDb }

let sqlJs: Promise<SqlJs> | undefined;
function loadSqlJs(): Promise<SqlJs> {
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  sqlJs ??= (require("sql.js") as (cfg?: object) => Promise<SqlJs>)();
  return sqlJs;
}

function rows(db: SqlDb, sql: string, params: unknown[] = []): Record<string, unknown>[] {
  const r = db.exec(sql, params)[0];
  return r ? r.values.map((v) => Object.fromEntries(r.columns.map((c, i) => [c, v[i]]))) : [];
}

/** Every deployment of a state file; errors name the file and what is wrong with it. */
export async function readStateFile(file: string): Promise<NixopsDeployment[]> {
  if (!fs.existsSync(file)) throw new Error(`NixOps state file ${file} does not exist (give --state FILE, or set NIXOPS_STATE)`);
  const wal = `${file}-wal`;
  // NixOps writes in WAL mode: changes not yet checkpointed live in the -wal file, which a copy of
  // the main file alone would miss. A clean NixOps exit leaves it empty or removes it.
  if (fs.existsSync(wal) && fs.statSync(wal).size > 0) {
    throw new Error(`${file} has changes not yet written back from ${wal} (a nixops command is running, or one ended uncleanly); run \`nixops list\` once, then import`);
  }
  const bytes = new Uint8Array(fs.readFileSync(file));
  if (bytes.length < 100 || Buffer.from(bytes.subarray(0, 16)).toString("latin1") !== "SQLite format 3\0") {
    throw new Error(`${file} is not a NixOps state file (not an SQLite database)`);
  }
  // Our copy is read in memory: mark it a rollback-journal database (header bytes 18–19) so
  // SQLite does not look for the WAL's shared memory. The file itself is never written.
  if (bytes[18] === 2) bytes[18] = 1;
  if (bytes[19] === 2) bytes[19] = 1;
  const SQL = await loadSqlJs();
  let db: SqlDb;
  try {
    db = new SQL.Database(bytes);
  } catch (e) {
    throw new Error(`${file}: cannot open as SQLite: ${(e as Error).message}`);
  }
  try {
    const tables = rows(db, "select name from sqlite_master where type = 'table'").map((r) => String(r.name));
    let version = 0;
    if (tables.includes("SchemaVersion")) version = Number(rows(db, "select version from SchemaVersion")[0]?.version ?? 0);
    else if (tables.includes("Deployments")) version = 1;
    if (version !== NIXOPS_SCHEMA) {
      throw new Error(`${file}: NixOps state schema version ${version || "(none)"} is not supported (pulumi-nixos reads version ${NIXOPS_SCHEMA}; ` +
        (version && version < NIXOPS_SCHEMA ? "run any nixops command once to upgrade the file" : "is this a NixOps state file?") + ")");
    }
    for (const t of ["Deployments", "DeploymentAttrs", "Resources", "ResourceAttrs"]) {
      if (!tables.includes(t)) throw new Error(`${file}: table ${t} is missing (not a NixOps schema version ${NIXOPS_SCHEMA} state file)`);
    }
    return rows(db, "select uuid from Deployments order by uuid").map((d) => {
      const uuid = String(d.uuid);
      const attrs = Object.fromEntries(rows(db, "select name, value from DeploymentAttrs where deployment = ?", [uuid]).map((a) => [String(a.name), String(a.value)]));
      const json = <T>(key: string, fallback: T): T => {
        if (attrs[key] === undefined) return fallback;
        try { return JSON.parse(attrs[key]) as T; } catch { throw new Error(`${file}: deployment ${uuid}: attribute ${key} is not JSON`); }
      };
      const resources = rows(db, "select id, name, type from Resources where deployment = ? order by name", [uuid]).map((r) => ({
        name: String(r.name),
        type: String(r.type),
        attrs: Object.fromEntries(rows(db, "select name, value from ResourceAttrs where machine = ?", [r.id]).map((a) => [String(a.name), String(a.value)])),
      }));
      const { name, description, nixExprs: _e, args: _a, ...rest } = attrs;
      return { uuid, name, description, nixExprs: json<string[]>("nixExprs", []), args: json<Record<string, string>>("args", {}), attrs: rest, resources };
    });
  } finally {
    db.close();
  }
}

/** The deployment named NAME or with UUID; unknown or ambiguous names list what there is. */
export function findDeployment(file: string, all: NixopsDeployment[], nameOrUuid: string): NixopsDeployment {
  const byUuid = all.find((d) => d.uuid === nameOrUuid);
  if (byUuid) return byUuid;
  const byName = all.filter((d) => d.name === nameOrUuid);
  if (byName.length === 1) return byName[0];
  const known = all.map((d) => `${d.name ?? "(unnamed)"} (${d.uuid})`).join(", ") || "none";
  if (byName.length > 1) throw new Error(`${file}: ${byName.length} deployments are named '${nameOrUuid}'; give its UUID (${byName.map((d) => d.uuid).join(", ")})`);
  throw new Error(`${file}: no deployment '${nameOrUuid}' (deployments: ${known})`);
}
