/**
 * A network description (what NixOps's network expression held), validated with errors that
 * name the field: unknown fields, machines without a host, keys with two sources, unknown pins.
 */
import { Pin, pinProblems } from "../pins/pin";
import { VaultRef } from "../secrets/vault";
import { KeyPlacement } from "../keys/spec";

/** One deployment key of a machine, as written in YAML. Exactly one source. */
export interface KeySpec extends KeyPlacement {
  /** Plain text (prefer `config`: plain text sits in the stack file). */
  text?: string;
  /** Name of a secret stack config value (`pulumi config set --secret NAME`). */
  config?: string;
  /** A file on the operator's machine. */
  file?: string;
  /** argv of a command whose stdout is the content. */
  command?: string[];
  /** A field of a Vault KV secret. */
  vault?: VaultRef;
}

/**
 * A bastion on the way to a machine (`@pulumi/command`'s `remote.ProxyConnection`, without
 * secrets: it logs in with the network's private key or the ssh-agent).
 */
export interface ProxySpec {
  host: string;
  port?: number;
  user?: string;
  /** Pin of the bastion's SSH key; absent: recorded at first contact, then required. */
  hostKey?: string;
  /** The bastion's own bastion (chains). */
  proxy?: ProxySpec;
}

/** One machine of the network (NixOps names). */
export interface MachineSpec {
  targetHost: string;
  targetPort?: number;
  targetUser?: string;
  /** Pin of the host's SSH key (`ssh-ed25519 AAAA…`). */
  hostPublicKey?: string;
  /** Bastion to reach the machine through (`proxy.proxy` for a chain); `targetHost` is then as the bastion sees it. */
  proxy?: ProxySpec;
  configuration?: string;
  /** More modules, e.g. `[./hardware/heron.nix, ./configuration/heron.nix]`. */
  imports?: string[];
  flake?: string;
  tags?: string[];
  keys?: Record<string, KeySpec>;
  /** Name of a pin in `pins`. */
  pin?: string;
  /** Pin the host's `nixos` channel to the machine's pin (default true when pinned). */
  channel?: boolean;
  action?: "switch" | "boot" | "test";
  buildOn?: "local" | "target";
  substituteOnTarget?: boolean;
  compress?: boolean | "auto";
  connectTimeout?: number;
  activationTimeout?: number;
}

/** The whole network. */
export interface NetworkDescription {
  /** `network.description`. */
  description?: string;
  /** Keep system generations for rollback (default true). */
  enableRollback?: boolean;
  /** Applied to every machine (a machine's own fields win). */
  defaults?: Partial<MachineSpec>;
  pins?: Record<string, Pin>;
  machines: Record<string, MachineSpec>;
}

const MACHINE_FIELDS = ["targetHost", "targetPort", "targetUser", "hostPublicKey", "proxy", "configuration", "imports", "flake", "tags", "keys", "pin", "channel",
  "action", "buildOn", "substituteOnTarget", "compress", "connectTimeout", "activationTimeout"];
const KEY_FIELDS = ["name", "text", "config", "file", "command", "vault", "destDir", "user", "group", "permissions", "uploadAt"];
const NETWORK_FIELDS = ["description", "enableRollback", "defaults", "pins", "machines"];
const KEY_SOURCES = ["text", "config", "file", "command", "vault"];

/** Closest known name, for "did you mean". */
function suggest(word: string, known: string[]): string {
  const dist = (a: string, b: string) => {
    const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array(b.length).fill(0)]);
    for (let j = 1; j <= b.length; j++) d[0][j] = j;
    for (let i = 1; i <= a.length; i++) for (let j = 1; j <= b.length; j++) {
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1].toLowerCase() === b[j - 1].toLowerCase() ? 0 : 1));
    }
    return d[a.length][b.length];
  };
  const best = known.map((k) => [k, dist(word, k)] as const).sort((x, y) => x[1] - y[1])[0];
  return best && best[1] <= 3 ? ` (did you mean '${best[0]}'?)` : "";
}

function unknownFields(where: string, obj: object, known: string[]): string[] {
  return Object.keys(obj).filter((k) => !known.includes(k)).map((k) => `${where}.${k}: unknown field${suggest(k, known)}`);
}

const PROXY_FIELDS = ["host", "port", "user", "hostKey", "proxy"];

/** Problems of a machine's `proxy` (and its own proxies), named by path. */
function proxyProblems(where: string, p: unknown): string[] {
  if (!p || typeof p !== "object" || Array.isArray(p)) return [`${where}: an object { host, port?, user?, hostKey?, proxy? }`];
  const x = p as ProxySpec;
  const out = unknownFields(where, x, PROXY_FIELDS);
  if (typeof x.host !== "string" || !x.host) out.push(`${where}.host: required (the bastion's host name or address)`);
  if (x.port !== undefined && !(Number.isInteger(x.port) && x.port > 0 && x.port < 65536)) out.push(`${where}.port: 1–65535`);
  if (x.hostKey !== undefined && !/^(ssh-|ecdsa-|sk-)\S+ [A-Za-z0-9+/=]+/.test(String(x.hostKey))) out.push(`${where}.hostKey: a public key as 'ssh-ed25519 AAAA…'`);
  if (x.proxy !== undefined) out.push(...proxyProblems(`${where}.proxy`, x.proxy));
  return out;
}

/** Every problem of a description (empty when valid). Paths read like `machines.heron.keys.x.vault`. */
export function descriptionProblems(d: unknown): string[] {
  if (!d || typeof d !== "object") return ["network: the description must be an object with 'machines'"];
  const net = d as NetworkDescription;
  const out = unknownFields("network", net, NETWORK_FIELDS);
  if (!net.machines || typeof net.machines !== "object" || !Object.keys(net.machines).length) out.push("network.machines: at least one machine is required");
  for (const [p, pin] of Object.entries(net.pins ?? {})) out.push(...pinProblems(`network.pins.${p}`, pin ?? {}));
  if (net.defaults) out.push(...unknownFields("network.defaults", net.defaults, MACHINE_FIELDS));
  for (const [name, raw] of Object.entries(net.machines ?? {})) {
    const where = `network.machines.${name}`;
    if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(name)) out.push(`${where}: machine names use letters, digits, '.', '_', '-'`);
    if (!raw || typeof raw !== "object") { out.push(`${where}: must be an object`); continue; }
    out.push(...unknownFields(where, raw, MACHINE_FIELDS));
    const m = { ...(net.defaults ?? {}), ...raw } as MachineSpec;
    if (!m.targetHost) out.push(`${where}.targetHost: required (the machine's host name or address)`);
    if (m.proxy !== undefined) out.push(...proxyProblems(`${where}.proxy`, m.proxy));
    const sources = ["configuration", "flake"].filter((k) => (m as any)[k]);
    if (sources.length !== 1 && !(m.imports?.length && !m.flake)) out.push(`${where}: give exactly one of configuration (and/or imports) or flake`);
    if (m.flake && m.imports?.length) out.push(`${where}.imports: not with flake (a flake brings its own modules)`);
    if (m.pin && !net.pins?.[m.pin]) out.push(`${where}.pin: unknown pin '${m.pin}'${suggest(m.pin, Object.keys(net.pins ?? {}))}`);
    if (m.tags && (!Array.isArray(m.tags) || m.tags.some((t) => typeof t !== "string"))) out.push(`${where}.tags: a list of strings`);
    for (const [k, spec] of Object.entries(m.keys ?? {})) {
      const kw = `${where}.keys.${k}`;
      if (!spec || typeof spec !== "object") { out.push(`${kw}: must be an object`); continue; }
      out.push(...unknownFields(kw, spec, KEY_FIELDS));
      const given = KEY_SOURCES.filter((s) => (spec as any)[s] !== undefined);
      if (given.length !== 1) out.push(`${kw}: give exactly one source of ${KEY_SOURCES.join(", ")} (got ${given.length ? given.join(" and ") : "none"})`);
    }
  }
  return out;
}

/** Throws one error listing every problem. */
export function validateDescription(d: unknown): asserts d is NetworkDescription {
  const p = descriptionProblems(d);
  if (p.length) throw new Error(`invalid network description:\n  ${p.join("\n  ")}`);
}

/** A machine's spec with the network defaults applied. */
export function machineSpec(net: NetworkDescription, name: string): MachineSpec {
  return { ...(net.defaults ?? {}), ...net.machines[name], keys: { ...(net.defaults?.keys ?? {}), ...(net.machines[name].keys ?? {}) } };
}

/**
 * A network given as NixOps files (`networkNix`): the files are the description; these fields
 * say how to evaluate and reach it.
 */
export interface NetworkNixDescription {
  /** The network files (`nixops create a.nix b.nix`): one path or a list, merged as NixOps merges them. */
  files: string | string[];
  /** The network's arguments when its files are functions (`nixops set-args`): JSON values. */
  args?: Record<string, unknown>;
  /** Arguments as Nix expressions (`nixops set-args --arg NAME EXPR`; import-nixops writes these). */
  nixArgs?: Record<string, string>;
  /** Host keys by machine (`ssh-ed25519 AAAA…`), e.g. from the operator's known_hosts; absent: trust on first use. */
  hostPublicKeys?: Record<string, string>;
  /**
   * Public keys kept in root's authorized keys, by machine (NixOps's `none` backend added its
   * per-machine key there; import-nixops carries it over so nobody is locked out).
   */
  rootAuthorizedKeys?: Record<string, string[]>;
  /** nix-plugins' extra-builtins-file, for extra builtins other than `vault` (their `exec` commands run at deploy time). */
  extraBuiltinsFile?: string;
  /** Pins by name (`pulumi-nixos pin add` writes them). */
  pins?: Record<string, Pin>;
  /** The pin whose nixpkgs evaluates the whole network (NixOps used one NIX_PATH for all machines). */
  pin?: string;
  /** Pin each host's `nixos` channel to `pin` (default true when pinned). */
  channel?: boolean;
  /** Overrides of `deployment.targetHost` by machine (a test bed whose names do not resolve). */
  hosts?: Record<string, string>;
}

const NETWORK_NIX_FIELDS = ["files", "args", "nixArgs", "hostPublicKeys", "rootAuthorizedKeys", "extraBuiltinsFile", "pins", "pin", "channel", "hosts"];

/** Every problem of a networkNix description (empty when valid); paths read like `networkNix.pin`. */
export function networkNixProblems(d: unknown): string[] {
  if (!d || typeof d !== "object") return ["networkNix: must be an object with 'files'"];
  const n = d as NetworkNixDescription;
  const out = unknownFields("networkNix", n, NETWORK_NIX_FIELDS);
  const files = typeof n.files === "string" ? [n.files] : n.files;
  if (!Array.isArray(files) || !files.length || files.some((f) => typeof f !== "string" || !f)) out.push("networkNix.files: a network file or a non-empty list of them");
  if (n.args !== undefined && (!n.args || typeof n.args !== "object" || Array.isArray(n.args))) out.push("networkNix.args: an object of argument values");
  if (n.extraBuiltinsFile !== undefined && (typeof n.extraBuiltinsFile !== "string" || !n.extraBuiltinsFile)) out.push("networkNix.extraBuiltinsFile: a file path");
  for (const [p, pin] of Object.entries(n.pins ?? {})) out.push(...pinProblems(`networkNix.pins.${p}`, pin ?? {}));
  if (n.pin !== undefined && !n.pins?.[n.pin]) out.push(`networkNix.pin: unknown pin '${n.pin}'${suggest(String(n.pin), Object.keys(n.pins ?? {}))}`);
  if (n.channel !== undefined && typeof n.channel !== "boolean") out.push("networkNix.channel: true or false");
  for (const [m, h] of Object.entries(n.hosts ?? {})) {
    if (typeof h !== "string" || !h) out.push(`networkNix.hosts.${m}: a host name or address`);
  }
  for (const [a, e] of Object.entries(n.nixArgs ?? {})) {
    if (typeof e !== "string" || !e.trim()) out.push(`networkNix.nixArgs.${a}: a Nix expression (a string)`);
  }
  for (const [m, k] of Object.entries(n.hostPublicKeys ?? {})) {
    if (typeof k !== "string" || !/^(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp\d+) [A-Za-z0-9+/=]+$/.test(k)) out.push(`networkNix.hostPublicKeys.${m}: a public key as 'ssh-ed25519 AAAA…'`);
  }
  for (const [m, ks] of Object.entries(n.rootAuthorizedKeys ?? {})) {
    if (!Array.isArray(ks) || ks.some((k) => typeof k !== "string" || !/^(ssh-|ecdsa-)\S+ \S+/.test(k))) out.push(`networkNix.rootAuthorizedKeys.${m}: a list of public keys ('ssh-ed25519 AAAA… comment')`);
  }
  return out;
}

/** Throws one error listing every problem. */
export function validateNetworkNix(d: unknown): asserts d is NetworkNixDescription {
  const p = networkNixProblems(d);
  if (p.length) throw new Error(`invalid networkNix:\n  ${p.join("\n  ")}`);
}
