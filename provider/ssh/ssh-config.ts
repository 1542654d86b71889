/**
 * The operator's OpenSSH client config (`~/.ssh/config`), applied to a connection at connect time
 * as `ssh` would: `Host`/`Match host` patterns, first value wins, `Include` (globs, relative to
 * ~/.ssh). Parsed by the maintained `ssh-config` package; this module adds Include and maps the
 * directives we honour onto the connection. Nothing read here is stored in state: key files are
 * read when connecting.
 */
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import SSHConfig from "ssh-config";
import { Connection, ConnectionLike, jumpKey, normalizeConnection, portOf, userOf } from "../connection";

/** Directives applied to a connection (anything else that changes how ssh connects is refused). */
const HONOURED = ["host", "hostname", "user", "port", "identityfile", "proxyjump", "identityagent", "userknownhostsfile", "stricthostkeychecking", "match", "include"];

/** Directives that change where or how ssh connects, which we cannot do the same way: an error, naming them. */
const REFUSED = ["proxycommand", "hostkeyalias", "certificatefile", "pkcs11provider", "securitykeyprovider", "knownhostscommand", "remotecommand", "localforward", "dynamicforward", "remoteforward", "controlpath", "controlmaster"];

/** What applied config says for one host (only the directives we use). */
export interface SshHostConfig {
  hostName?: string;
  user?: string;
  port?: number;
  identityFiles: string[];
  /** `ProxyJump` hops, first hop first (`none` → empty). */
  proxyJump: { user?: string; host: string; port?: number }[];
  identityAgent?: string;
  userKnownHostsFiles?: string[];
  strictHostKeyChecking?: string;
  /** Directives in effect that we neither honour nor refuse (they change nothing essential). */
  ignored: string[];
}

/** The default config file of the current HOME. */
export function defaultSshConfigFile(): string {
  return path.join(process.env.HOME || os.homedir(), ".ssh", "config");
}

const home = () => process.env.HOME || os.homedir();
const expandTilde = (p: string) => (p === "~" ? home() : p.startsWith("~/") ? path.join(home(), p.slice(2)) : p);

/** Files an Include names (globs; relative paths are relative to ~/.ssh, as for the user config). */
function includeFiles(pattern: string): string[] {
  const p = expandTilde(pattern);
  const abs = path.isAbsolute(p) ? p : path.join(home(), ".ssh", p);
  if (!/[*?[]/.test(abs)) return fs.existsSync(abs) ? [abs] : [];
  // Glob on the last component only (what Include patterns use in practice).
  const dir = path.dirname(abs);
  const re = new RegExp(`^${path.basename(abs).replace(/[.+^${}()|\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".")}$`);
  try { return fs.readdirSync(dir).filter((f) => re.test(f)).sort().map((f) => path.join(dir, f)); } catch { return []; }
}

type Line = { type: number; param?: string; value?: unknown; config?: Line[] };

/**
 * Parses a config file with its Includes spliced in where they stand: a top-level Include's
 * lines (global options and sections) in place; one inside a Host/Match block adds its global
 * options to that block and its sections after it.
 */
function parseWithIncludes(file: string, depth = 0): Line[] {
  if (depth > 16) throw new Error(`ssh config: Include nested more than 16 deep at ${file}`);
  const parsed = SSHConfig.parse(fs.readFileSync(file, "utf8")) as unknown as Line[];
  const values = (l: Line) => (Array.isArray(l.value) ? (l.value as { val: string }[]).map((v) => v.val) : String(l.value).split(/\s+/));
  const out: Line[] = [];
  for (const line of parsed) {
    if (line.param && /^include$/i.test(line.param)) {
      for (const f of values(line).flatMap(includeFiles)) out.push(...parseWithIncludes(f, depth + 1));
      continue;
    }
    if (line.config) {
      const inner: Line[] = [];
      const after: Line[] = [];
      for (const sub of line.config) {
        if (sub.param && /^include$/i.test(sub.param)) {
          for (const f of values(sub).flatMap(includeFiles)) {
            for (const l of parseWithIncludes(f, depth + 1)) (l.config ? after : inner).push(l);
          }
        } else inner.push(sub);
      }
      line.config = inner;
      out.push(line, ...after);
    } else out.push(line);
  }
  return out;
}

/** Parses `[user@]host[:port]` (also `[v6addr]:port`). */
function parseJump(spec: string): { user?: string; host: string; port?: number } {
  const m = /^(?:([^@]+)@)?(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(spec.trim());
  if (!m) throw new Error(`ssh config: cannot read ProxyJump host '${spec}'`);
  return { user: m[1], host: m[2].replace(/^\[|\]$/g, ""), port: m[3] ? Number(m[3]) : undefined };
}

/** `%h`, `%p`, `%r`, `%u`, `%d`, `%%` in IdentityFile/IdentityAgent/UserKnownHostsFile, then `~`. */
function expandTokens(s: string, t: { h: string; p: number; r: string }): string {
  return expandTilde(s.replace(/%([hprud%])/g, (_, c: string) => ({ h: t.h, p: String(t.p), r: t.r, u: os.userInfo().username, d: home(), "%": "%" } as Record<string, string>)[c]));
}

/** What `file` says for `host` (as `ssh -G host` computes it, for the directives we use). */
export function sshHostConfig(host: string, file: string): SshHostConfig {
  const lines = parseWithIncludes(file);
  // compute() is SSHConfig's (an Array subclass): the spliced lines take its prototype.
  Object.setPrototypeOf(lines, SSHConfig.prototype);
  // `Match exec` would run commands from the config here: refused below instead.
  const raw = (lines as unknown as SSHConfig).compute(host, { matchExec: false, ignoreCase: true }) as Record<string, unknown>;
  const first = (k: string) => { const v = raw[k]; return v === undefined ? undefined : String(Array.isArray(v) ? v[0] : v); };
  const list = (k: string) => { const v = raw[k]; return v === undefined ? [] : (Array.isArray(v) ? v : [v]).flatMap((x) => String(x).split(/\s+/)).filter(Boolean); };
  const refused = Object.keys(raw).filter((k) => REFUSED.includes(k) && !(k === "proxycommand" && first(k) === "none"));
  if (lines.some((l) => l.param && /^match$/i.test(l.param) && JSON.stringify(l.value ?? "").toLowerCase().includes("exec"))) refused.push("match exec");
  if (refused.length) {
    throw new Error(`ssh config ${file}: ${refused.map((k) => k === "match exec" ? "Match exec" : canonical(k)).join(", ")} ${refused.length > 1 ? "are" : "is"} not supported ` +
      `(pulumi-nixos connects with its own SSH client: use ProxyJump or connection.proxy for bastions, and HostName/User/Port/IdentityFile). ` +
      `Turn the config off for this connection with sshConfig: false, or move those lines to a Host block that does not match '${host}'.`);
  }
  const hostName = first("hostname");
  const port = first("port") ? Number(first("port")) : undefined;
  const user = first("user");
  const jump = first("proxyjump");
  const t = { h: hostName ?? host, p: port ?? 22, r: user ?? "root" };
  return {
    hostName, user, port,
    identityFiles: list("identityfile").map((f) => expandTokens(f, t)),
    proxyJump: !jump || jump.toLowerCase() === "none" ? [] : jump.split(",").map(parseJump),
    identityAgent: first("identityagent") && first("identityagent")!.toLowerCase() !== "none" && first("identityagent") !== "SSH_AUTH_SOCK"
      ? expandTokens(first("identityagent")!.replace(/^\$SSH_AUTH_SOCK$/, process.env.SSH_AUTH_SOCK ?? ""), t) : undefined,
    userKnownHostsFiles: raw.userknownhostsfile ? list("userknownhostsfile").map((f) => expandTokens(f, t)) : undefined,
    strictHostKeyChecking: first("stricthostkeychecking")?.toLowerCase(),
    ignored: Object.keys(raw).filter((k) => !HONOURED.includes(k)).map(canonical),
  };
}

const canonical = (k: string): string => ({ proxycommand: "ProxyCommand", hostkeyalias: "HostKeyAlias", certificatefile: "CertificateFile", pkcs11provider: "PKCS11Provider",
  securitykeyprovider: "SecurityKeyProvider", knownhostscommand: "KnownHostsCommand", remotecommand: "RemoteCommand", localforward: "LocalForward",
  dynamicforward: "DynamicForward", remoteforward: "RemoteForward", controlpath: "ControlPath", controlmaster: "ControlMaster" } as Record<string, string>)[k] ?? k;

/** The config file a connection uses, or undefined (sshConfig: false, or no file). */
export function sshConfigFile(c: { sshConfig?: boolean | string }): string | undefined {
  if (c.sshConfig === false) return undefined;
  const file = typeof c.sshConfig === "string" ? expandTilde(c.sshConfig) : defaultSshConfigFile();
  if (!fs.existsSync(file)) {
    if (typeof c.sshConfig === "string") throw new Error(`connection.sshConfig: no such file '${c.sshConfig}'`);
    return undefined;
  }
  return file;
}

/** Every hop with its port and user resolved to the defaults (22, root) where absent. */
function withDefaults(c: Connection): Connection {
  // A bastion without a key of its own is tried with the target's, as with an ssh config.
  const proxy = c.proxy && withDefaults(c.proxy.privateKey || !c.privateKey ? c.proxy : { ...c.proxy, privateKey: c.privateKey });
  return { ...c, port: portOf(c), user: userOf(c), ...(proxy ? { proxy } : {}) };
}

/**
 * The connection with the ssh config applied to each hop, port and user resolved: a field the
 * connection leaves unset (port, user, key, proxy, agent socket) takes the config's value;
 * `ProxyJump` becomes `proxy` (each jump host resolved through the config too, logging in with
 * its IdentityFile, else the target's key). Identity files are read here, at connect time.
 */
export function applySshConfig(conn: Connection, onIgnored?: (msg: string) => void): Connection {
  const file = sshConfigFile(conn);
  if (!file) return withDefaults(conn);
  /** One hop by its config; `proxy`: the hops before it, already resolved (else its own ProxyJump / proxy). */
  const apply = (c: Connection, fallback: Pick<Connection, "privateKey" | "identityFiles"> | undefined, depth: number, proxy?: Connection): Connection => {
    if (depth > 8) throw new Error(`ssh config ${file}: ProxyJump chain longer than 8 hops (a loop?)`);
    const h = sshHostConfig(c.host, file);
    if (h.ignored.length && onIgnored) onIgnored(`ssh config ${file}: for '${c.host}', ${h.ignored.join(", ")} ${h.ignored.length > 1 ? "are" : "is"} not used by pulumi-nixos`);
    // The explicit key (a bastion without one: the target's); the IdentityFiles are read when
    // dialling, after the agent, as ssh tries them (provider/ssh/auth.ts). A ProxyJump hop with no
    // IdentityFile of its own also gets the target's.
    const key = c.privateKey ?? fallback?.privateKey;
    const identityFiles = h.identityFiles.length ? h.identityFiles : fallback?.identityFiles;
    const out: Connection = normalizeConnection({
      ...c,
      proxy: undefined,
      host: h.hostName ?? c.host,
      port: c.port ?? h.port ?? 22,
      user: c.user ?? h.user ?? "root",
      privateKey: key,
      identityFiles,
      agentSocketPath: c.agentSocketPath ?? h.identityAgent,
      knownHostsFiles: c.knownHostsFiles ?? h.userKnownHostsFiles,
      hostKeyPolicy: c.hostKeyPolicy ?? (h.strictHostKeyChecking === "yes" ? "strict" : undefined),
      sshConfig: c.sshConfig,
    } as ConnectionLike);
    if (proxy) out.proxy = proxy;
    else if (c.proxy) out.proxy = apply({ ...c.proxy, sshConfig: c.sshConfig }, { privateKey: key, identityFiles }, depth + 1);
    else if (h.proxyJump.length) {
      // "a,b": a (with its own ProxyJump, as `ssh a` would), then b through a, then the target.
      let prev: Connection | undefined;
      for (const j of h.proxyJump) {
        const hop = normalizeConnection({ host: j.host, port: j.port, user: j.user, hostKeyPolicy: out.hostKeyPolicy, sshConfig: c.sshConfig } as ConnectionLike);
        prev = apply(hop, { privateKey: key, identityFiles }, depth + 1, prev);
        // Pinned by the key recorded at first contact (else known_hosts / TOFU, then recorded).
        prev.fromSshConfig = true;
        const recorded = conn.jumpHostKeys?.[jumpKey(prev)];
        if (recorded && !prev.hostPublicKey) { prev.hostPublicKey = recorded; prev.hostKey = recorded; }
      }
      out.proxy = prev;
    }
    return out;
  };
  return apply(conn, undefined, 0);
}
