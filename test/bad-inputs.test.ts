/**
 * A table of bad inputs over every error path of the schema and the handlers' Check (issue 32):
 * each field of every schema (resource arguments, connection and bastions, key metadata, health
 * checks, Vault and pin sources, the network description, networkNix) given a value of the wrong
 * type, every rule across fields, and every failure the handlers' Check can report (read from
 * their sources, so a new one without a row here fails this test). Each message must name the
 * resource (or the description's path) and the field, say what was expected, and hold no stack
 * trace and no `@@` protocol line. How these messages reach the operator (program-time errors,
 * Check failures as the CLI prints them) is tested through the engine in operator-errors.test.ts
 * and friction.test.ts.
 */
import "./helpers/env";
import { describe, test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "fs";
import * as path from "path";
import { z } from "zod";
import * as schema from "../provider/schema";
import * as machine from "../provider/handlers/machine";
import * as key from "../provider/handlers/key";
import * as channel from "../provider/handlers/channel";
import { ROOT, tempDir } from "./helpers/env";

/** No stack trace, no protocol line, not empty. */
function clean(message: string, what: string): void {
  assert.ok(message.trim().length > 0, `${what}: a message`);
  assert.doesNotMatch(message, /^\s+at .*(\.js|\.ts):\d+/m, `${what}: no stack trace`);
  assert.doesNotMatch(message, /@@/, `${what}: no protocol line`);
  assert.doesNotMatch(message, /\[object Object\]|undefined$/, `${what}: no unrendered value`);
}

// ---- the schema: every field of every object ----

type Obj = Record<string, unknown>;
/** A value no field of ours takes: a list holding a list. */
const WRONG = [[]];
const PEM = "-----BEGIN OPENSSH PRIVATE KEY-----\nx\n-----END OPENSSH PRIVATE KEY-----\n";

/** The object schema under optional/lazy wrappers, if it is one. */
function objectOf(s: z.ZodType): z.ZodObject | undefined {
  let cur: any = s;
  for (let i = 0; i < 5 && cur; i++) {
    if (cur instanceof z.ZodObject) return cur;
    const def = cur._zod?.def;
    if (def?.type === "optional" || def?.type === "nullable") cur = def.innerType;
    else if (def?.type === "lazy") cur = def.getter();
    else return undefined;
  }
  return undefined;
}

/** Valid values of the nested objects, to reach their fields. */
const NESTED: Record<string, unknown> = {
  connection: { host: "10.0.0.1", privateKey: PEM }, proxy: { host: "10.0.0.2" }, vault: { path: "secret/db", field: "password" },
  pin: { url: "http://10.0.0.9/nixexprs.tar.xz", sha256: "0".repeat(52) }, nixopsNetwork: { files: ["/etc/network.nix"] },
};

/**
 * For every field of `obj` (and of the objects nested in it): `at` with that field set to WRONG,
 * the field's path, and the path it must be reported under.
 */
function* wrongFields(obj: z.ZodObject, base: Obj, prefix: string[]): Generator<{ value: Obj; field: string }> {
  for (const [k, s] of Object.entries(obj.shape as Record<string, z.ZodType>)) {
    yield { value: { ...base, [k]: WRONG }, field: [...prefix, k].join(".") };
    const inner = objectOf(s);
    if (inner && NESTED[k] !== undefined && prefix.length < 3) {
      for (const w of wrongFields(inner, NESTED[k] as Obj, [...prefix, k])) yield { value: { ...base, [k]: w.value }, field: w.field };
    }
  }
  yield { value: { ...base, [`${Object.keys(obj.shape)[0]}x`]: 1 }, field: [...prefix, `${Object.keys(obj.shape)[0]}x`].join(".") };
}

const RESOURCES: [("Machine" | "DeploymentKey" | "ChannelPin"), z.ZodObject, Obj][] = [
  ["Machine", schema.machineArgsSchema, { connection: NESTED.connection, configuration: "./web.nix" }],
  ["DeploymentKey", schema.deploymentKeyArgsSchema, { connection: NESTED.connection, text: "s3cret" }],
  ["ChannelPin", schema.channelPinArgsSchema, { connection: NESTED.connection, url: "http://10.0.0.9/c", sha256: "0".repeat(52) }],
];

describe("bad inputs: every schema field, every rule, every Check failure — one named message each", () => {
  test("resource arguments: each field (connection, bastion, Vault, pin, nixopsNetwork included) refused by name, with what it must be", () => {
    let rows = 0;
    for (const [kind, s, base] of RESOURCES) {
      assert.doesNotThrow(() => schema.checkArgs(kind, "web", base), `${kind}: the base arguments are valid`);
      for (const { value, field } of wrongFields(s, base, [])) {
        rows++;
        const e = (() => { try { schema.checkArgs(kind, "web", value); return undefined; } catch (x) { return x as Error; } })();
        assert.ok(e instanceof schema.SchemaError, `${kind} ${field}: refused (${JSON.stringify(value)})`);
        assert.match(e.message, new RegExp(`^invalid arguments of ${kind} web:\\n`), `${kind} ${field}: names the resource`);
        const line = e.message.split("\n").slice(1).map((l) => l.trim()).find((l) => l.startsWith(`${field}: `) || l.startsWith(`${field}.`));
        assert.ok(line, `${kind}: a line for ${field}:\n${e.message}`);
        assert.match(line!, /: (required|unknown field|.*\(got |.*(a |an |one of|true|3-4 octal))/, `${kind} ${field}: says what it must be: ${line}`);
        clean(e.message, `${kind} ${field}`);
      }
    }
    assert.ok(rows > 60, `${rows} rows`);
  });

  test("inline key metadata and health checks: each field, under its key or check", () => {
    for (const f of ["name", "destDir", "user", "group", "permissions"]) {
      const e = (() => { try { schema.checkArgs("Machine", "web", { connection: NESTED.connection, configuration: "./web.nix", keys: { db: { [f]: WRONG } } }); } catch (x) { return x as Error; } })();
      assert.match(e?.message ?? "", new RegExp(`^  keys\\.db\\.${f}: `, "m"), f);
      clean(e!.message, `keys.db.${f}`);
    }
    for (const f of Object.keys(schema.healthCheckSchema.shape)) {
      const e = (() => { try { schema.checkArgs("Machine", "web", { connection: NESTED.connection, configuration: "./web.nix", healthChecks: [{ command: "true", [f]: WRONG }] }); } catch (x) { return x as Error; } })();
      assert.match(e?.message ?? "", new RegExp(`^  healthChecks\\.0\\.${f}: `, "m"), f);
      clean(e!.message, `healthChecks.0.${f}`);
    }
  });

  test("the network description: each machine field, key field, defaults, pins; every rule across fields", () => {
    const machineBase = { targetHost: "10.0.0.1", configuration: "./a.nix" };
    const check = (d: unknown, want: RegExp, what: string) => {
      const p = schema.descriptionProblems(d);
      assert.ok(p.some((l) => want.test(l)), `${what}: ${want} in\n${p.join("\n")}`);
      for (const l of p) clean(l, what);
    };
    assert.deepEqual(schema.descriptionProblems({ machines: { a: machineBase } }), [], "the base is valid");
    for (const { value, field } of wrongFields(schema.machineSpecSchema, machineBase, [])) {
      check({ machines: { a: value } }, new RegExp(`^network\\.machines\\.a\\.${field.replace(/\./g, "\\.")}[.:]`), `machine ${field}`);
    }
    for (const { value, field } of wrongFields(schema.keySpecSchema, { text: "x" }, [])) {
      check({ machines: { a: { ...machineBase, keys: { k: value } } } }, new RegExp(`^network\\.machines\\.a\\.keys\\.k\\.${field.replace(/\./g, "\\.")}[.:]`), `key ${field}`);
    }
    for (const f of Object.keys(schema.networkSchema.shape)) check({ machines: { a: machineBase }, [f]: WRONG }, new RegExp(`^network\\.${f}: `), f);
    check({ machines: { a: machineBase }, defaults: { compress: "maybe" } }, /^network\.defaults\.compress: true, false or "auto" \(got "maybe"\)$/, "defaults");
    // The rules across fields, one each.
    const rules: [unknown, RegExp][] = [
      [{ machines: {} }, /^network\.machines: at least one machine is required$/],
      [{ machines: { "a b": machineBase } }, /^network\.machines\.a b: machine names use letters/],
      [{ machines: { a: { configuration: "./a.nix" } } }, /^network\.machines\.a\.targetHost: required/],
      [{ machines: { a: { targetHost: "h" } } }, /^network\.machines\.a: give exactly one of configuration \(and\/or imports\) or flake$/],
      [{ machines: { a: { targetHost: "h", flake: ".#a", imports: ["./x.nix"] } } }, /^network\.machines\.a\.imports: not with flake/],
      [{ machines: { a: { ...machineBase, pin: "stabel" } }, pins: { stable: NESTED.pin } }, /^network\.machines\.a\.pin: unknown pin 'stabel' \(did you mean 'stable'\?\)$/],
      [{ machines: { a: { ...machineBase, keys: { k: { text: "x", file: "/f" } } } } }, /^network\.machines\.a\.keys\.k: give exactly one source of text, config, file, command, vault \(got text and file\)$/],
      [{ machines: { a: { ...machineBase, keys: { k: {} } } } }, /^network\.machines\.a\.keys\.k: give exactly one source .*\(got none\)$/],
      [{ machines: { a: machineBase }, pins: { p: { url: "ftp://x", sha256: "short" } } }, /^network\.pins\.p: url must be an http\(s\) or file URL, got 'ftp:\/\/x'$/],
      [{ machines: { a: machineBase }, pins: { p: { url: "http://x", sha256: "short" } } }, /^network\.pins\.p: sha256 must be a Nix sha256/],
      ["machines", /^network: the description must be an object with 'machines'$/],
    ];
    for (const [d, want] of rules) check(d, want, String(want));
  });

  test("networkNix: each field; an unknown pin", () => {
    const base = { files: "./network.nix" };
    assert.deepEqual(schema.networkNixProblems(base), []);
    for (const { value, field } of wrongFields(schema.networkNixSchema, base, [])) {
      const p = schema.networkNixProblems(value);
      assert.ok(p.some((l) => l.startsWith(`networkNix.${field}`)), `${field}:\n${p.join("\n")}`);
      for (const l of p) clean(l, field);
    }
    const p = schema.networkNixProblems({ ...base, pins: { stable: NESTED.pin }, pin: "stabel" });
    assert.deepEqual(p, ["networkNix.pin: unknown pin 'stabel' (did you mean 'stable'?)"]);
  });

  // ---- the handlers' Check: values known only at deploy time (Outputs) are checked there ----

  const conn = { host: "10.0.0.1", privateKey: PEM };
  const machineNews = { kind: "machine", name: "web", connection: conn, systemPath: "/nix/store/00000000000000000000000000000000-nixos-system-web", action: "switch", buildOn: "local", substituteOnTarget: false, compress: "auto", connectTimeout: 15, activationTimeout: 600, tags: [] };
  const keyNews = { kind: "key", resource: "web/db", name: "db", connection: conn, content: "s3cret", destDir: "/run/keys", user: "root", group: "root", permissions: "0600", uploadAt: "pre-activation" };
  const pinNews = { kind: "channel", resource: "web/channel", connection: conn, channel: "nixos", url: "http://10.0.0.9/c", sha256: "0".repeat(52) };
  /** [handler, property, the bad part of the inputs, what the reason must say]. */
  const CHECKS: ["Machine" | "DeploymentKey" | "ChannelPin", string, Obj, RegExp][] = [
    ["Machine", "systemPath", { systemPath: "/tmp/system" }, /^Machine web: systemPath must be a store path, got '\/tmp\/system'$/],
    ["Machine", "action", { action: "dry-activate" }, /^Machine web: action must be one of switch, boot, test, got 'dry-activate'$/],
    ["Machine", "buildOn", { buildOn: "remote" }, /^Machine web: buildOn must be 'local' or 'target', got 'remote'$/],
    ["Machine", "buildOn", { buildOn: "target" }, /^Machine web: buildOn 'target' needs a configuration or flake/],
    ["Machine", "magicRollback", { magicRollback: "yes" }, /^Machine web: magicRollback must be true or false, got 'yes'$/],
    ["Machine", "confirmTimeout", { confirmTimeout: 0 }, /^Machine web: confirmTimeout must be a positive number of seconds$/],
    ["Machine", "healthChecks", { healthChecks: [{ command: "true", http: "http://x/" }] }, /^Machine web: healthChecks\[0\]: give exactly one of command or http$/],
    ["Machine", "connectTimeout", { connectTimeout: -1 }, /^Machine web: connectTimeout must be a positive number of seconds$/],
    ["Machine", "activationTimeout", { activationTimeout: "soon" }, /^Machine web: activationTimeout must be a positive number of seconds$/],
    ["Machine", "keepGenerations", { keepGenerations: 0 }, /^Machine web: keepGenerations must be a whole number >= 1 or "all", got '0'$/],
    ["Machine", "previewBuild", { previewBuild: "no" }, /^Machine web: previewBuild must be true or false, got 'no'$/],
    ["Machine", "previewDryActivate", { previewDryActivate: "no" }, /^Machine web: previewDryActivate must be true or false, got 'no'$/],
    ["Machine", "waitForSsh", { waitForSsh: -1 }, /^Machine web: waitForSsh must be a number of seconds >= 0, got '-1'$/],
    ["DeploymentKey", "uploadAt", { uploadAt: "later" }, /^DeploymentKey web\/db: uploadAt must be 'pre-activation' or 'post-activation'$/],
    ["DeploymentKey", "content", { content: 42 }, /^DeploymentKey web\/db: no content$/],
    ["DeploymentKey", "name", { name: "../db" }, /^DeploymentKey web\/db: name '\.\.\/db' is not a valid file name/],
    ["DeploymentKey", "destDir", { destDir: "keys" }, /^DeploymentKey web\/db: destDir 'keys' must be an absolute, normalized path$/],
    ["DeploymentKey", "destDir", { destDir: "/nix/store/keys" }, /^DeploymentKey web\/db: destDir '\/nix\/store\/keys' is inside the world-readable \/nix\/store$/],
    ["DeploymentKey", "permissions", { permissions: "rw-------" }, /^DeploymentKey web\/db: permissions 'rw-------' must be 3-4 octal digits, e\.g\. 0600$/],
    ["DeploymentKey", "user", { user: "no body" }, /^DeploymentKey web\/db: user 'no body' is not a valid name$/],
    ["DeploymentKey", "group", { group: "" }, /^DeploymentKey web\/db: group '' is not a valid name$/],
    ["ChannelPin", "url", { url: "ftp://10.0.0.9/c" }, /^ChannelPin web\/channel: url must be an http\(s\) or file URL, got 'ftp:\/\/10\.0\.0\.9\/c'$/],
    ["ChannelPin", "sha256", { sha256: "abc" }, /^ChannelPin web\/channel: sha256 must be a Nix sha256/],
    ["ChannelPin", "channel", { channel: "my channel" }, /^ChannelPin web\/channel: channel 'my channel' is not a valid channel name$/],
    // The connection (every resource's): its field path is the property.
    ["Machine", "connection", { connection: undefined }, /^connection is required/],
    ["Machine", "connection.host", { connection: { ...conn, host: "a host" } }, /^connection\.host must be a host name or address, got 'a host'$/],
    ["DeploymentKey", "connection.port", { connection: { ...conn, port: 70000 } }, /^connection\.port must be 1–65535, got '70000'$/],
    ["ChannelPin", "connection.user", { connection: { ...conn, user: "Root User" } }, /^connection\.user is not a valid user name: 'Root User'$/],
    ["Machine", "connection.privateKey", { connection: { ...conn, privateKey: "hunter2" } }, /^connection\.privateKey is not a PEM\/OpenSSH private key$/],
    ["Machine", "connection.hostPublicKey", { connection: { ...conn, hostPublicKey: "AAAA" } }, /^connection\.hostPublicKey must look like 'ssh-ed25519 AAAA…', got 'AAAA'$/],
    ["Machine", "connection.hostKey", { connection: { ...conn, hostKey: "AAAA" } }, /^connection\.hostKey must look like 'ssh-ed25519 AAAA…'/],
    ["Machine", "connection.hostKey", { connection: { ...conn, hostKey: "ssh-ed25519 AAAA1", hostPublicKey: "ssh-ed25519 AAAA2" } }, /^connection\.hostKey differs from hostPublicKey/],
    ["Machine", "connection.dialErrorLimit", { connection: { ...conn, dialErrorLimit: 1.5 } }, /^connection\.dialErrorLimit must be a whole number of attempts/],
    ["Machine", "connection.perDialTimeout", { connection: { ...conn, perDialTimeout: -2 } }, /^connection\.perDialTimeout must be a positive number of seconds, got '-2'$/],
    ["Machine", "connection.privateKeyPassword", { connection: { ...conn, privateKeyPassword: 1 } }, /^connection\.privateKeyPassword must be a string$/],
    ["Machine", "connection.password", { connection: { ...conn, password: 1 } }, /^connection\.password must be a string$/],
    ["Machine", "connection.agentSocketPath", { connection: { ...conn, agentSocketPath: 1 } }, /^connection\.agentSocketPath must be a string$/],
    ["Machine", "connection.hostKeyPolicy", { connection: { ...conn, hostKeyPolicy: "ask" } }, /^connection\.hostKeyPolicy must be "strict" or "tofu", got 'ask'$/],
    ["Machine", "connection.sshConfig", { connection: { ...conn, sshConfig: 1 } }, /^connection\.sshConfig must be true, false or a file path$/],
    ["Machine", "connection.proxy.host", { connection: { ...conn, proxy: { host: "a bastion" } } }, /^connection\.proxy\.host must be a host name or address, got 'a bastion'$/],
  ];

  test("handler Check: every failure names the resource or the connection field, with what was found and expected", async () => {
    const handlers = { Machine: [machine, machineNews], DeploymentKey: [key, keyNews], ChannelPin: [channel, pinNews] } as const;
    for (const [kind, news] of Object.entries(handlers)) {
      const ok = await (news[0] as any).check({}, news[1]);
      assert.deepEqual(ok.failures, [], `${kind}: the base inputs pass`);
    }
    for (const [kind, property, bad, want] of CHECKS) {
      const [h, base] = handlers[kind];
      // As the SDK hands them over: a property without a value is absent.
      const news: Obj = Object.fromEntries(Object.entries({ ...base, ...bad }).filter(([, v]) => v !== undefined));
      // No authentication at all is its own failure (below): the cases keep the key.
      const r = await (h as any).check({}, news);
      const f = r.failures.find((x: { property: string }) => x.property === property);
      assert.ok(f, `${kind} ${property}: reported (${JSON.stringify(r.failures)})`);
      assert.match(f.reason, want, `${kind} ${property}`);
      clean(f.reason, `${kind} ${property}`);
    }
  });

  test("no source of Check failures lacks a row: every property the handlers and validators report is in the table", () => {
    const sources = ["provider/handlers/machine.ts", "provider/handlers/key.ts", "provider/handlers/channel.ts", "provider/handlers/validate.ts", "provider/keys/spec.ts"];
    const reported = new Set<string>();
    for (const f of sources) {
      const src = fs.readFileSync(path.join(ROOT, f), "utf8");
      for (const m of src.matchAll(/property: "([A-Za-z.]+)"/g)) reported.add(m[1]);
      for (const m of src.matchAll(/\bbad\("([A-Za-z]+)"/g)) reported.add(`connection.${m[1]}`);
      // Loops over field names: `for (const k of ["a", "b"] as const)` feeding `property: k` or `bad(k`.
      for (const m of src.matchAll(/for \(const k of (\[[^\]]+\]) as const\)/g)) {
        const body = src.slice(m.index! + m[0].length).split("\n").slice(0, 4).join("\n");
        const use = /property: k\b|bad\(k\b/.exec(body)?.[0];
        if (use) for (const name of JSON.parse(m[1])) reported.add(use.startsWith("bad") ? `connection.${name}` : name);
      }
      if (/property: prop, reason: `\$\{prop\} is required/.test(src)) reported.add("connection");
      if (/reason\.includes\(": url"\) \? "url" : "sha256"/.test(src)) { reported.add("url"); reported.add("sha256"); }
    }
    const covered = new Set([...CHECKS.map(([, p]) => p), "connection.proxy.host"]);
    const missing = [...reported].filter((p) => !covered.has(p));
    assert.deepEqual(missing, [], "every reported property has a row in CHECKS");
    assert.ok(reported.size >= 30, `${reported.size} properties found in the sources`);
  });

  test("no way to authenticate: the connection says what it looked for", async () => {
    const saved = { SSH_AUTH_SOCK: process.env.SSH_AUTH_SOCK, HOME: process.env.HOME };
    const home = tempDir("bad-inputs-home");
    try {
      delete process.env.SSH_AUTH_SOCK;
      process.env.HOME = home;
      const r = await (machine as any).check({}, { ...machineNews, connection: { host: "10.0.0.1" } });
      const f = r.failures.find((x: { property: string }) => x.property === "connection.privateKey");
      assert.match(f?.reason ?? "", /^connection\.privateKey is not set and there is nothing else to authenticate with: no ssh-agent .*no ~\/\.ssh\/config, no ~\/\.ssh\/id_\* identity file, no password$/);
      clean(f.reason, "no authentication");
    } finally {
      for (const [k, v] of Object.entries(saved)) if (v === undefined) delete process.env[k]; else process.env[k] = v;
      fs.rmSync(home, { recursive: true, force: true });
    }
  });
});
