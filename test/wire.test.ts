/**
 * Handler results as the SDK's dynamic-provider plugin serializes them: every result goes through
 * the SDK's own `Struct.fromJavaScript` (google-protobuf, as @pulumi/pulumi/cmd/dynamic-provider
 * resolves it), for every connection form: no `undefined` anywhere, pins kept by record-only
 * updates (target and each bastion), and the net (handlers/wire.ts) names a field that slips by.
 */
import "./helpers/env";
import { describe, test, before, after } from "node:test";
import * as fs from "fs";
import * as net from "net";
import * as os from "os";
import * as path from "path";
import * as assert from "node:assert/strict";
import * as machine from "../provider/handlers/machine";
import * as key from "../provider/handlers/key";
import * as channel from "../provider/handlers/channel";
import { unwirable, wired } from "../provider/handlers/wire";
import { normalizeConnection, pinnedConnection, Connection } from "../provider/connection";
import { recordedConnection } from "../provider/handlers/connection-diff";
import { UNKNOWN } from "../provider/handlers/validate";

// The Struct the plugin uses (it requires "google-protobuf/google/protobuf/struct_pb" from the SDK).
// eslint-disable-next-line @typescript-eslint/no-var-requires
const { Struct } = require(require.resolve("google-protobuf/google/protobuf/struct_pb", { paths: [require.resolve("@pulumi/pulumi")] }));
const serializes = (v: unknown, what: string) => assert.doesNotThrow(() => Struct.fromJavaScript(v), `${what} serializes`);

const K_TARGET = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAITARGETtargetTARGETtargetTARGETtargetTARGET";
const K_GATE = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGATEgateGATEgateGATEgateGATEgateGATEgate1";
const K_JUMP = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJUMPjumpJUMPjumpJUMPjumpJUMPjumpJUMPjump1";

/** Connection forms as inputs carry them (plain values, as the plugin hands them to handlers). */
const FORMS: Record<string, Connection> = {
  privateKey: { host: "10.0.0.1", privateKey: "-----BEGIN OPENSSH PRIVATE KEY-----\nx\n-----END OPENSSH PRIVATE KEY-----\n" },
  agent: { host: "10.0.0.1" },
  agentSocket: { host: "10.0.0.1", agentSocketPath: "/run/user/0/agent.sock" },
  sshConfigAlias: { host: "web-alias" },
  password: { host: "10.0.0.1", user: "deployer", password: "pw" },
  behindBastion: { host: "10.0.1.2", proxy: { host: "10.0.0.1" } },
  behindTwo: { host: "10.0.2.2", proxy: { host: "10.0.1.2", proxy: { host: "10.0.0.1" } } },
  // Lifted from another resource's connection Output: empty values mean absent.
  lifted: { host: "10.0.0.1", port: 0, user: "", privateKey: "", password: "", hostKey: "", hostPublicKey: "", agentSocketPath: "" } as unknown as Connection,
};

describe("handler results serialize as the plugin serializes them", () => {
  // An agent socket exists (nothing talks to it: no host is contacted here), so agent-only forms pass Check.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pnx-wire-"));
  const sock = net.createServer().listen(path.join(dir, "agent.sock"));
  const savedAgent = process.env.SSH_AUTH_SOCK;
  before(() => { process.env.SSH_AUTH_SOCK = path.join(dir, "agent.sock"); });
  after(() => { sock.close(); fs.rmSync(dir, { recursive: true, force: true }); if (savedAgent) process.env.SSH_AUTH_SOCK = savedAgent; else delete process.env.SSH_AUTH_SOCK; });

  test("unwirable names the first field Struct.fromJavaScript would reject", () => {
    assert.equal(unwirable({ a: 1, b: [true, null, { c: "x" }] }), undefined);
    assert.equal(unwirable({ connection: { host: "h", privateKey: undefined } }), "connection.privateKey is undefined");
    assert.equal(unwirable({ xs: [1, () => 1] }), "xs[1] is a function");
    assert.equal(unwirable({ n: NaN }), "n is NaN");
    assert.equal(unwirable({ d: new Date(0) }), "d is a Date");
    // What the plugin does with the same values.
    assert.throws(() => Struct.fromJavaScript({ connection: { host: "h", privateKey: undefined } }), /Unexpected struct type/);
  });

  test("wired: a result or a partial failure holding undefined fails naming the field; good ones pass unchanged", async () => {
    const h = wired("Machine", {
      create: async (i: any) => ({ id: "x", outs: { name: i.name, connection: { host: "h", privateKey: undefined } } }),
      update: async (_id: string, _o: any, n: any) => { throw Object.assign(new Error("exit 4"), { id: "x", properties: { name: n.name, failedUnits: undefined } }); },
      read: async (id: string, p: any) => ({ id, props: p }),
    });
    await assert.rejects(h.create!({ name: "web" }), /^Error: Machine web: internal error: the outputs cannot be recorded by Pulumi: connection\.privateKey is undefined/);
    await assert.rejects(h.update!("x", {}, { name: "web" }), /Machine web: internal error: the partial failure's properties cannot be recorded by Pulumi: failedUnits is undefined/);
    assert.deepEqual(await h.read!("x", { name: "web", a: 1 }), { id: "x", props: { name: "web", a: 1 } });
  });

  test("normalizeConnection, pinnedConnection and recordedConnection: every form serializes, no undefined", () => {
    for (const [form, c] of Object.entries(FORMS)) {
      const n = normalizeConnection(c);
      serializes(n, `${form}: normalized`);
      assert.equal(unwirable(n), undefined, form);
      const pinned = pinnedConnection(n, K_TARGET, n.proxy?.proxy ? [K_GATE, K_JUMP] : n.proxy ? [K_GATE] : []);
      assert.equal(unwirable(pinned), undefined, `${form}: pinned`);
      assert.equal(pinned.hostKey, K_TARGET);
      // Bastion keys come first hop first: the hop dialled from here (the innermost `proxy`) gets the first.
      if (n.proxy && !n.proxy.proxy) assert.equal(pinned.proxy!.hostKey, K_GATE, `${form}: the bastion gets its own key`);
      if (n.proxy?.proxy) assert.deepEqual([pinned.proxy!.proxy!.hostKey, pinned.proxy!.hostKey], [K_GATE, K_JUMP], `${form}: each bastion its own key`);
      assert.equal(unwirable(recordedConnection(n, undefined)), undefined, `${form}: recorded without a key`);
    }
  });

  test("a bastion whose key was not recorded stays unpinned: never the target's key, and the target keeps its pin", () => {
    const c = recordedConnection(normalizeConnection(FORMS.behindBastion), K_TARGET);
    assert.equal(c.hostKey, K_TARGET, "the target's pin kept");
    assert.equal(c.proxy!.hostKey, undefined, "the bastion is not pinned to the target's key");
    assert.ok(!("hostKey" in c.proxy!), "and holds no undefined field");
  });

  const recorded = (c: Connection) => pinnedConnection(normalizeConnection(c), K_TARGET, c.proxy?.proxy ? [K_JUMP, K_GATE] : [K_GATE]);

  test("Machine: check (preview, unknown system) and a record-only update serialize, every pin kept", async () => {
    for (const [form, c] of Object.entries(FORMS)) {
      const news = { name: "web", connection: c, systemPath: UNKNOWN, action: "switch", buildOn: "local", substituteOnTarget: false, compress: "auto", connectTimeout: 15, activationTimeout: 600, tags: ["web"], dryRun: true } as any;
      const ch = await machine.check({}, news);
      serializes(ch.inputs, `${form}: Machine check`);
      assert.deepEqual(ch.failures, []);
      const olds = { ...news, systemPath: "/nix/store/00000000000000000000000000000000-nixos-system-web", tags: [], connection: recorded(c),
        generation: 2, previousSystemPath: "", nixosVersion: "24.05", hostPublicKey: K_TARGET, activatedAt: "t", closureSize: { bytes: 1, paths: 1 }, bytesCopied: 0, failedUnits: [] };
      delete olds.dryRun;
      // Only the tags and a timeout change: recorded, no host contacted (the address is not reachable).
      const { dryRun: _d, ...upNews } = news;
      const { outs } = await machine.update("id", olds, { ...upNews, systemPath: olds.systemPath, connection: { ...c, perDialTimeout: 20 } });
      serializes(outs, `${form}: Machine record-only update`);
      assert.deepEqual(outs.tags, ["web"]);
      assert.equal(outs.connection.hostKey, K_TARGET, `${form}: target pin kept`);
      assert.equal(outs.connection.proxy?.hostKey, olds.connection.proxy?.hostKey, `${form}: bastion pin kept`);
      assert.equal(outs.connection.proxy?.proxy?.hostKey, olds.connection.proxy?.proxy?.hostKey, `${form}: second bastion pin kept`);
      assert.equal(outs.connection.perDialTimeout, 20);
    }
  });

  test("DeploymentKey and ChannelPin: check and record-only updates serialize, every pin kept", async () => {
    for (const [form, c] of Object.entries(FORMS)) {
      const kNews = { resource: "web/db", name: "db", connection: c, content: "s3cret", destDir: "/run/keys", user: "root", group: "root", permissions: "0600", uploadAt: "pre-activation" } as any;
      serializes(key.check({}, kNews).inputs, `${form}: key check`);
      const kOlds = { ...kNews, connection: recorded(c), path: "/run/keys/db", digest: "d", hostPublicKey: K_TARGET };
      // Same content digest: a connection-only change is recorded without an upload.
      const { createHash } = await import("crypto");
      kOlds.digest = createHash("sha256").update("s3cret").digest("hex");
      const k = await key.update("id", kOlds, { ...kNews, connection: { ...c, perDialTimeout: 20 } }).catch((e) => e);
      if (k instanceof Error) throw new Error(`${form}: key update tried the host: ${k.message}`);
      serializes(k.outs, `${form}: key record-only update`);
      assert.equal(k.outs.connection.hostKey, K_TARGET);
      assert.equal(k.outs.connection.proxy?.hostKey, kOlds.connection.proxy?.hostKey);

      const pNews = { resource: "web/channel", connection: c, channel: "nixos", url: "http://10.0.0.9/c", sha256: "0".repeat(52) } as any;
      serializes(channel.check({}, pNews).inputs, `${form}: pin check`);
      const pOlds = { ...pNews, connection: recorded(c), hostPublicKey: K_TARGET, previousUrl: "", storePath: "/nix/store/x", nixpkgsVersion: "24.05" };
      const p = await channel.update("id", pOlds, { ...pNews, connection: { ...c, perDialTimeout: 20 } });
      serializes(p.outs, `${form}: pin record-only update`);
      assert.equal(p.outs.connection.hostKey, K_TARGET);
      assert.equal(p.outs.connection.proxy?.hostKey, pOlds.connection.proxy?.hostKey);
    }
  });
});
