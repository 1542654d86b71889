/**
 * A small HTTP server that speaks the parts of HashiCorp Vault's API that pulumi-nixos uses (no
 * Vault binary exists here): KV v1 (`GET /v1/<mount>/<path>`) and KV v2
 * (`GET /v1/<mount>/data/<path>`), `X-Vault-Token` auth, per-token path policies, and Vault's
 * response shapes and errors (403 permission denied, 404 not found). Loopback only.
 */
import * as http from "http";
import { AddressInfo } from "net";

/** A mount: its KV version and secrets (path → field → value). */
export interface VaultMount {
  version: 1 | 2;
  secrets: Record<string, Record<string, string>>;
}

/** Options of {@link startVaultServer}. */
export interface VaultServerOptions {
  mounts: Record<string, VaultMount>;
  /** token → path prefixes it may read (Vault API paths without /v1/, e.g. "secret/data/app"). */
  tokens: Record<string, string[]>;
}

/** A running test Vault. */
export interface VaultServer {
  addr: string;
  /** Tokens seen in requests (to prove they travel in headers). */
  requests: { method: string; url: string; token: string | undefined }[];
  close(): Promise<void>;
}

const json = (res: http.ServerResponse, code: number, body: unknown) => {
  res.writeHead(code, { "Content-Type": "application/json", "Cache-Control": "no-store" });
  res.end(JSON.stringify(body));
};

/** Starts the server on 127.0.0.1 (a free port). */
export async function startVaultServer(opts: VaultServerOptions): Promise<VaultServer> {
  const requests: VaultServer["requests"] = [];
  const server = http.createServer((req, res) => {
    const token = req.headers["x-vault-token"] as string | undefined;
    const url = new URL(req.url ?? "/", "http://vault");
    requests.push({ method: req.method ?? "", url: url.pathname, token });
    if (url.pathname === "/v1/sys/health") return json(res, 200, { initialized: true, sealed: false, standby: false });
    if (!url.pathname.startsWith("/v1/")) return json(res, 404, { errors: [] });
    if (req.method !== "GET") return json(res, 405, { errors: ["unsupported operation"] });
    const apiPath = url.pathname.slice(4).replace(/\/+$/, "");
    const allowed = token ? opts.tokens[token] : undefined;
    // Vault answers 403 both for a bad token and for a path outside the token's policies.
    if (!allowed || !allowed.some((p) => apiPath === p || apiPath.startsWith(p.replace(/\/?$/, "/")))) {
      return json(res, 403, { errors: ["permission denied"] });
    }
    const [mountName, ...rest] = apiPath.split("/");
    const mount = opts.mounts[mountName];
    if (!mount) return json(res, 404, { errors: [`no handler for route "${apiPath}". route entry not found.`] });
    let secretPath = rest.join("/");
    if (mount.version === 2) {
      if (rest[0] !== "data") return json(res, 404, { errors: [] });
      secretPath = rest.slice(1).join("/");
    }
    const data = mount.secrets[secretPath];
    if (!data) return json(res, 404, { errors: [] });
    const lease = { request_id: "00000000-0000-0000-0000-000000000000", lease_id: "", renewable: false, lease_duration: mount.version === 1 ? 2764800 : 0, wrap_info: null, warnings: null, auth: null };
    if (mount.version === 1) return json(res, 200, { ...lease, data });
    return json(res, 200, { ...lease, data: { data, metadata: { created_time: "2026-01-01T00:00:00Z", deletion_time: "", destroyed: false, version: 1 } } });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  return {
    addr: `http://127.0.0.1:${port}`,
    requests,
    close: () => new Promise((r) => server.close(() => r())),
  };
}
