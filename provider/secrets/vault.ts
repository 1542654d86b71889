/**
 * Reading a field of a Vault KV secret with node-vault (program time), with errors that say what
 * went wrong: 403 (token lacks a policy), 404 (no such secret or field), unreachable.
 * The token travels only in the X-Vault-Token header.
 */
import nodeVault from "node-vault";
import { describeTimeout, timeoutMs } from "../util/timeouts";

/** Where a secret lives in Vault. */
export interface VaultRef {
  /** Secret path inside the mount, e.g. "thedroneely/" or "apps/web". */
  path: string;
  /** Field of the secret's data. */
  field: string;
  /** KV mount (default "secret"). */
  mount?: string;
  /** KV engine version (default 2). */
  kvVersion?: 1 | 2;
}

/** Vault address and token (default: VAULT_ADDR / VAULT_TOKEN). */
export interface VaultAccess {
  addr?: string;
  token?: string;
}

/** The Vault API path of a ref (v2 inserts `data/`). */
export function vaultApiPath(ref: VaultRef): string {
  const mount = (ref.mount ?? "secret").replace(/^\/+|\/+$/g, "");
  const p = ref.path.replace(/^\/+|\/+$/g, "");
  return (ref.kvVersion ?? 2) === 2 ? `${mount}/data/${p}` : `${mount}/${p}`;
}

/** Reads one field; the value is returned, never logged. */
export async function readVaultField(ref: VaultRef, access: VaultAccess = {}): Promise<string> {
  const addr = access.addr ?? process.env.VAULT_ADDR;
  const token = access.token ?? process.env.VAULT_TOKEN;
  if (!addr) throw new Error("Vault address unknown: set VAULT_ADDR (or stack config pulumi-nixos:vaultAddr)");
  if (!token) throw new Error("Vault token unknown: set VAULT_TOKEN (or stack config pulumi-nixos:vaultToken as a secret)");
  const apiPath = vaultApiPath(ref);
  const deadline = timeoutMs("vault");
  // axios's timeout (through requestOptions) ends an idle request; the race also ends a server
  // that drips bytes. The message names the deadline and how to change it.
  const client = nodeVault({ apiVersion: "v1", endpoint: addr, token, noCustomHTTPVerbs: true, requestOptions: { timeout: deadline } } as any);
  const noAnswer = () => new Error(`Vault at ${addr} did not answer within ${describeTimeout("vault", deadline)} (reading ${apiPath})`);
  let resp: any;
  let timer: NodeJS.Timeout | undefined;
  try {
    resp = await Promise.race([
      client.read(apiPath),
      new Promise((_, reject) => { timer = setTimeout(() => reject(noAnswer()), deadline + 1000); }),
    ]);
  } catch (e: any) {
    if (e?.message === noAnswer().message) throw e;
    if (e?.code === "ECONNABORTED" || e?.code === "ETIMEDOUT" || /timeout of \d+ms exceeded/.test(e?.message ?? "")) throw noAnswer();
    const status = e?.response?.statusCode;
    if (status === 403) throw new Error(`Vault denied reading ${apiPath} (403): the token lacks a policy that allows it`);
    if (status === 404) throw new Error(`Vault has no secret at ${apiPath} (404)`);
    const code = e?.error?.code ?? e?.code ?? e?.cause?.code;
    if (!status) throw new Error(`Vault at ${addr} is unreachable (${code ?? e?.message ?? e})`);
    throw new Error(`Vault read of ${apiPath} failed (${status})`);
  } finally {
    clearTimeout(timer);
  }
  const data = (ref.kvVersion ?? 2) === 2 ? resp?.data?.data : resp?.data;
  if (!data || !(ref.field in data)) throw new Error(`Vault secret ${apiPath} has no field '${ref.field}' (404)`);
  return String(data[ref.field]);
}
