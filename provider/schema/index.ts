/**
 * The one schema of everything a user writes: the network description (`pulumi-nixos:network`,
 * a networkFile, `networkNix`) and the arguments of Machine, DeploymentKey and ChannelPin
 * (connection included). Every field is type-checked before anything runs, with errors that name
 * the field (`network.machines.heron.compress: true, false or "auto" (got "maybe")`). A new
 * field is added here, once: its type, and the words that say what it must be.
 */
import { z } from "zod";
import { fields, problems, suggest, whole } from "./check";
import { pinProblems } from "../pins/pin";

// ---- building blocks (the message is what the field must be) ----
const str = (what = "a string") => z.string({ error: what });
const text = (what: string) => z.string({ error: what }).min(1, { error: what });
const bool = z.boolean({ error: "true or false" });
const seconds = z.number({ error: "a number of seconds" }).positive({ error: "a number of seconds (> 0)" });
const port = z.number({ error: "a port number (1-65535)" }).int({ error: "a port number (1-65535)" }).min(1, { error: "a port number (1-65535)" }).max(65535, { error: "a port number (1-65535)" });
const strings = z.array(z.string({ error: "a string" }), { error: "a list of strings" });
const argv = z.array(z.string({ error: "a string" }), { error: "argv: a list of strings" }).min(1, { error: "argv: a non-empty list of strings" });
const publicKey = z.string({ error: "a public key as 'ssh-ed25519 AAAA…'" }).regex(/^(ssh-|ecdsa-|sk-)\S+ [A-Za-z0-9+/=]+(\s.*)?$/, { error: "a public key as 'ssh-ed25519 AAAA…'" });
const oneOf = <T extends string>(...v: [T, ...T[]]) => z.enum(v, { error: `one of ${v.map((x) => JSON.stringify(x)).join(", ")}` });
const compress = z.union([z.boolean(), z.literal("auto")], { error: 'true, false or "auto"' });
// YAML reads an unquoted 0600 as the number 600: both spellings mean the octal mode.
const mode = z.any().refine((v) => (typeof v === "string" || Number.isInteger(v)) && /^[0-7]{3,4}$/.test(String(v)), { error: '3-4 octal digits, e.g. "0600"' });
// Resource arguments are type-checked here; their values' rules (a valid file name, octal digits,
// an absolute directory) stay with keySpecProblems, which Check runs too, with its own messages.
const modeType = z.union([z.string(), z.number().int()], { error: 'a mode as a string of 3-4 octal digits, e.g. "0600"' });
const record = <T extends z.ZodType>(v: T, what: string) => z.record(z.string(), v, { error: what });

/** `{ url, sha256 }` of a pinned nixpkgs (formats checked by pinProblems, shared with the CLI). */
export const pinSchema = fields({ url: str("the channel or tarball URL"), sha256: str("the sha256 of the unpacked tree (pulumi-nixos pin add computes it)") }, ["url", "sha256"]);

/** A field of a Vault KV secret. */
export const vaultSchema = fields({ path: text("the secret's path"), field: text("the secret's field"), mount: text("a KV mount name"), kvVersion: z.union([z.literal(1), z.literal(2)], { error: "1 or 2" }) }, ["path", "field"]);

const placement = {
  name: text("a file name"), destDir: text("an absolute directory"), user: text("a user name"), group: text("a group name"),
  permissions: mode, uploadAt: oneOf("pre-activation", "post-activation"),
};

/** One deployment key of a machine in the description (exactly one source: checked with the machine). */
export const keySpecSchema = fields({
  text: str(), config: text("the name of a secret stack config value"), file: text("a file path"), command: argv, vault: vaultSchema, ...placement,
});

/** A health check run on the host before a deploy is confirmed (exactly one of command/http: checked by the provider). */
export const healthCheckSchema = fields({
  name: str(), command: text("a shell command"), http: z.string({ error: "an http:// or https:// URL" }).regex(/^https?:\/\/\S+$/, { error: "an http:// or https:// URL" }),
  status: z.number({ error: "an HTTP status (100-599)" }).int({ error: "an HTTP status (100-599)" }).min(100, { error: "an HTTP status (100-599)" }).max(599, { error: "an HTTP status (100-599)" }),
  bodyContains: str(), timeout: seconds, retries: z.number({ error: "a whole number >= 0" }).int({ error: "a whole number >= 0" }).min(0, { error: "a whole number >= 0" }), insecure: bool,
});
// Total seconds to keep dialing a host that is still coming up (0: no waiting).
const waitForSsh = z.number({ error: "a number of seconds (0: no waiting)" }).min(0, { error: "a number of seconds (0: no waiting)" });
// A count of generations to keep, or "all".
const keepGenerations = z.union([z.number().int().min(1), z.literal("all")], { error: 'a whole number >= 1 or "all"' });
const healthChecks = z.array(healthCheckSchema, { error: "a list of checks ({ command } or { http })" });

// A rollout's machine counts: a whole number or a percentage such as "20%" (of the network's machines).
const countOrPercent = (min: number) => z.any().refine((v) => (Number.isInteger(v) && v >= min)
  || (typeof v === "string" && /^(100|[1-9]?[0-9](\.[0-9]+)?)%$/.test(v) && Number(v.slice(0, -1)) > 0), { error: `a whole number >= ${min} or a percentage such as "20%"` });

/** `rollout` of a network: waves of machines (see provider/rollout/settings.ts). */
export const rolloutSchema = fields({
  canary: countOrPercent(0), batchSize: countOrPercent(1), maxFailures: countOrPercent(0),
  pauseSeconds: z.number({ error: "a number of seconds >= 0" }).min(0, { error: "a number of seconds >= 0" }),
  order: fields({ tags: z.array(z.string({ error: "a tag" }), { error: "a list of tags" }) }),
});

/** A binary cache as the medium (provider/fanout/cache-publish.ts); its signing key is a stack secret. */
const cacheSchema = fields({ url: z.string({ error: "a file://, http:// or https:// URL" }).regex(/^(file|https?):\/\/\S+$/, { error: "a file://, http:// or https:// URL" }),
  publicKey: z.string({ error: "a Nix public key (name:base64)" }).regex(/^[^:\s]+:[A-Za-z0-9+/]{43}=$/, { error: "a Nix public key (name:base64)" }) }, ["url", "publicKey"]);
/** A site (hosts sharing a LAN behind one uplink: provider/fanout/site.ts). */
const siteName = z.string({ error: "a site name (lowercase letters, digits, '-')" }).regex(/^[a-z][a-z0-9-]{0,62}$/, { error: "a site name (lowercase letters, digits, '-')" });

/** One machine of the description; requiredness is checked after `defaults` are merged in. */
export const machineSpecSchema = fields({
  targetHost: text("the machine's host name or address"), targetPort: port, targetUser: text("a user name"), hostPublicKey: publicKey,
  configuration: text("a configuration.nix path"), imports: strings, flake: text("'<flakeref>#<name>'"), tags: strings,
  keys: record(keySpecSchema, "an object of keys by name"), pin: text("the name of a pin in pins"), channel: bool,
  action: oneOf("switch", "boot", "test"), buildOn: oneOf("local", "target"), substituteOnTarget: bool, compress,
  connectTimeout: seconds, activationTimeout: seconds,
  magicRollback: bool, confirmTimeout: seconds, healthChecks, keepGenerations, previewDryActivate: bool,
  specialArgs: record(z.unknown(), "an object of module arguments (JSON values) by name"), waitForSsh,
  // A bastion in the description carries no secrets (it logs in with the network's key).
  proxy: z.lazy(() => descriptionProxySchema),
  hostKeyPolicy: oneOf("strict", "tofu"), sshConfig: z.union([z.boolean(), text("a file path")], { error: "true, false or a file path" }),
  site: siteName, cache: cacheSchema,
});

/** A machine's `proxy` in the description: `{ host, port?, user?, hostKey?, proxy? }`. */
const descriptionProxySchema: z.ZodType = z.lazy(() => fields({
  host: text("the bastion's host name or address"), port, user: text("a user name"), hostKey: publicKey, proxy: descriptionProxySchema,
}, ["host"]));

const KEY_SOURCES = ["text", "config", "file", "command", "vault"] as const;
type Obj = Record<string, any>;
const isObj = (v: unknown): v is Obj => !!v && typeof v === "object" && !Array.isArray(v);

/** Rules across fields of the whole description (after the defaults are merged into each machine). */
function networkRules(net: Obj, ctx: z.RefinementCtx): void {
  const add = (message: string) => ctx.addIssue({ code: "custom", message: whole(message) });
  if (!isObj(net.machines) || !Object.keys(net.machines).length) return add("network.machines: at least one machine is required");
  const pins = isObj(net.pins) ? net.pins : {};
  for (const [p, pin] of Object.entries(pins)) if (isObj(pin)) for (const m of pinProblems(`network.pins.${p}`, pin)) add(m);
  const defaults = isObj(net.defaults) ? net.defaults : {};
  for (const [name, raw] of Object.entries(net.machines)) {
    const where = `network.machines.${name}`;
    if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(name)) add(`${where}: machine names use letters, digits, '.', '_', '-'`);
    if (!isObj(raw)) continue;
    const m: Obj = { ...defaults, ...raw, keys: { ...(isObj(defaults.keys) ? defaults.keys : {}), ...(isObj(raw.keys) ? raw.keys : {}) } };
    if (m.targetHost === undefined || m.targetHost === "") add(`${where}.targetHost: required (the machine's host name or address)`);
    const imports = Array.isArray(m.imports) && m.imports.length > 0;
    if ([m.configuration, m.flake].filter(Boolean).length !== 1 && !(imports && !m.flake)) add(`${where}: give exactly one of configuration (and/or imports) or flake`);
    if (m.flake && imports) add(`${where}.imports: not with flake (a flake brings its own modules)`);
    if (typeof m.pin === "string" && !pins[m.pin]) add(`${where}.pin: unknown pin '${m.pin}'${suggest(m.pin, Object.keys(pins))}`);
    for (const [k, spec] of Object.entries(m.keys as Obj)) {
      if (!isObj(spec)) continue;
      const given = KEY_SOURCES.filter((s) => spec[s] !== undefined);
      if (given.length !== 1) add(`${where}.keys.${k}: give exactly one source of ${KEY_SOURCES.join(", ")} (got ${given.length ? given.join(" and ") : "none"})`);
    }
  }
}

/** The network description (`pulumi-nixos:network`, a networkFile). */
export const networkSchema = fields({
  description: str(), enableRollback: bool, defaults: machineSpecSchema, pins: record(pinSchema, "an object of pins by name"),
  machines: record(machineSpecSchema, "an object of machines by name"), rollout: rolloutSchema,
}).superRefine((v, ctx) => { if (isObj(v)) networkRules(v, ctx); }, { when: () => true });

/** A network given as NixOps files (`pulumi-nixos:networkNix`). */
export const networkNixSchema = fields({
  files: z.union([text("a path"), z.array(text("a path")).min(1, { error: "a network file or a non-empty list of them" })], { error: "a network file or a non-empty list of them" }),
  args: record(z.unknown(), "an object of argument values"),
  nixArgs: record(z.string().trim().min(1, { error: "a Nix expression (a string)" }), "an object of Nix expressions by argument"),
  hostPublicKeys: record(publicKey, "an object of public keys by machine"),
  rootAuthorizedKeys: record(z.array(publicKey, { error: "a list of public keys ('ssh-ed25519 AAAA… comment')" }), "an object of key lists by machine"),
  extraBuiltinsFile: text("a file path"), pins: record(pinSchema, "an object of pins by name"), pin: text("the name of a pin in pins"), channel: bool,
  hosts: record(text("a host name or address"), "an object of host names by machine"),
  deploymentUuid: text("a UUID"), deploymentName: z.string({ error: "a string" }),
  stateVersions: record(text("a NixOS release such as 20.09"), "an object of NixOS releases by machine"),
}, ["files"]).superRefine((n, ctx) => {
    if (!isObj(n)) return;
    const pins = isObj(n.pins) ? n.pins : {};
    for (const [p, pin] of Object.entries(pins)) if (isObj(pin)) for (const m of pinProblems(`networkNix.pins.${p}`, pin)) ctx.addIssue({ code: "custom", message: whole(m) });
    if (typeof n.pin === "string" && !pins[n.pin]) ctx.addIssue({ code: "custom", message: whole(`networkNix.pin: unknown pin '${n.pin}'${suggest(n.pin, Object.keys(pins))}`) });
  }, { when: () => true });

// ---- resource arguments (Pulumi inputs: Outputs and Promises are checked when they resolve) ----

const hop = {
  host: text("the host name or address"), port, user: text("a user name"), password: str(), privateKey: str("the private key (OpenSSH PEM text)"),
  privateKeyPassword: str(), agentSocketPath: text("a socket path"), dialErrorLimit: z.number({ error: "a number of attempts (-1: unlimited)" }).int({ error: "a number of attempts (-1: unlimited)" }).min(-1),
  perDialTimeout: seconds, hostKey: publicKey,
};
/** A bastion on the way to a host (chains through its own `proxy`). */
export const proxySchema: z.ZodType = z.lazy(() => fields({ ...hop, proxy: proxySchema }, ["host"]));
/** `connection` of every resource. */
export const connectionSchema = fields({ ...hop, hostPublicKey: publicKey, proxy: proxySchema,
  hostKeyPolicy: oneOf("strict", "tofu"), sshConfig: z.union([z.boolean(), text("a file path")], { error: "true, false or a file path" }),
  privilegeEscalationCommand: argv }, ["host"]);

/** MachineArgs. */
export const machineArgsSchema = fields({
  connection: connectionSchema, configuration: str("a configuration.nix path"), tags: strings, imports: strings, enableRollback: bool, keepGenerations,
  nixPath: strings, pin: pinSchema, allowUnpinned: bool, flake: str("'<flakeref>#<name>'"),
  nixopsNetwork: fields({ files: z.array(text("a path")), args: record(z.unknown(), "an object"), nixArgs: record(z.string(), "an object of Nix expressions"), rootAuthorizedKeys: record(strings, "an object of key lists"), extraBuiltinsFile: text("a file path"),
    uuid: z.string({ error: "a string" }), deploymentName: z.string({ error: "a string" }), stateVersions: record(z.string(), "an object of NixOS releases by machine") }, ["files"]),
  systemPath: str("a store path"), action: oneOf("switch", "boot", "test"), buildOn: oneOf("local", "target"), substituteOnTarget: bool, compress,
  connectTimeout: seconds, activationTimeout: seconds, magicRollback: bool, confirmTimeout: seconds, healthChecks,
  keys: record(fields({ name: str("a file name"), destDir: str("an absolute directory"), user: str("a user name"), group: str("a group name"), permissions: modeType }), "an object of key metadata by name"),
  previewBuild: bool, previewDryActivate: bool, machineName: text("a machine name"),
  specialArgs: record(z.unknown(), "an object of module arguments by name"), waitForSsh,
  rollout: fields({ network: text("a network name"), members: strings, canary: z.number().int().min(0), batchSize: z.number().int().min(0),
    maxFailures: countOrPercent(0), pauseSeconds: z.number().min(0), rank: z.number().int().min(0) }, ["network", "members"]),
  site: siteName, cache: cacheSchema, cacheSigningKey: str("a Nix secret key (name:base64)"),
}, ["connection"]);

/** DeploymentKeyArgs. */
export const deploymentKeyArgsSchema = fields({
  connection: connectionSchema, text: str(), file: str("a file path"), command: argv, vault: vaultSchema,
  name: str("a file name"), destDir: str("an absolute directory"), user: str("a user name"), group: str("a group name"), permissions: modeType,
  uploadAt: placement.uploadAt, label: text("a label"),
}, ["connection"]);

/** ChannelPinArgs. */
export const channelPinArgsSchema = fields({ connection: connectionSchema, url: text("the channel or tarball URL"), sha256: text("the sha256 of the unpacked tree"), channel: text("a channel name"), label: text("a label") }, ["connection", "url", "sha256"]);

/** Values known only later (Outputs, Promises) are left out and checked by the provider when known. */
function knownPart(v: unknown, path: string[], later: string[]): unknown {
  if (v instanceof Promise || (v && typeof v === "object" && (v as Obj).__pulumiOutput === true)) { later.push(path.join(".")); return undefined; }
  if (Array.isArray(v)) return v.map((x, i) => knownPart(x, [...path, String(i)], later));
  if (isObj(v) && Object.getPrototypeOf(v) === Object.prototype) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, knownPart(x, [...path, k], later)]));
  return v;
}

/**
 * A user's mistake in a description or in resource arguments. Marked as Pulumi's `RunError` so
 * the SDK's program runner prints the message alone, without a stack trace of our code.
 */
export class SchemaError extends Error {
  /** The SDK's marker of `pulumi.RunError`. */
  readonly __pulumiRunError = true;
  constructor(message: string) {
    super(message);
    this.name = "SchemaError";
  }
}

/** Throws a {@link SchemaError} listing every problem of a resource's arguments. */
export function checkArgs(kind: "Machine" | "DeploymentKey" | "ChannelPin", name: string, args: unknown): void {
  const schema = { Machine: machineArgsSchema, DeploymentKey: deploymentKeyArgsSchema, ChannelPin: channelPinArgsSchema }[kind];
  const later: string[] = [];
  const known = knownPart(args ?? {}, [], later);
  const p = problems(schema, known, "").map((x) => x.replace(/^\./, ""))
    .filter((x) => !later.some((l) => l && (x.startsWith(`${l}: `) || x.startsWith(`${l}.`))));
  if (p.length) throw new SchemaError(`invalid arguments of ${kind} ${name}:\n  ${p.join("\n  ")}`);
}

/** Every problem of a network description, `network.…: …` (empty when valid). */
export function descriptionProblems(d: unknown): string[] {
  if (!isObj(d)) return ["network: the description must be an object with 'machines'"];
  return problems(networkSchema, d, "network");
}

/** Every problem of a rollout (`network.rollout`, `pulumi-nixos:rollout`), `WHERE.…: …` (empty when valid or absent). */
export function rolloutProblems(where: string, v: unknown): string[] {
  return v === undefined ? [] : problems(rolloutSchema, v, where);
}

/** Every problem of a networkNix description, `networkNix.…: …` (empty when valid). */
export function networkNixProblems(d: unknown): string[] {
  if (!isObj(d)) return ["networkNix: must be an object with 'files'"];
  return problems(networkNixSchema, d, "networkNix");
}
