import "./helpers/env";
import { describe, test, before, after } from "node:test";
import * as assert from "node:assert/strict";
import * as crypto from "crypto";
import * as fs from "fs";
import * as path from "path";
import { Lab, LabHostInfo } from "../provider/lab/lab";
import { run } from "../provider/util/run";
import { setStackConfig } from "./engine/project";
import { startVaultServer, VaultServer } from "./vault/server";
import { canRunLab, tempDir, ROOT, STANDIN_NIXPKGS } from "./helpers/env";
import { engine, expectExit, stateResources, StackRef } from "./helpers/engine";
import { nixConfig } from "./helpers/stack";
import YAML from "yaml";
import { StackState } from "./engine/state";
import { strip } from "./engine/secrets";
import { sendKeys } from "../provider/handlers/key";
import { closeAllSessions } from "../provider/ssh/pool";

const skip = canRunLab ? false : "the lab needs root on Linux";
// Made at run time: no file (this test included) holds it, wherever the checkout lives.
const CANARY = `pnx-canary-${crypto.randomBytes(8).toString("hex")}`;

describe("deployment keys", { skip }, () => {
  let tmp = "";
  let lab: Lab;
  let h: LabHostInfo;
  let vaultSrv: VaultServer;
  let n = 0;

  /** A program dir for the keys test program with the given keys config. */
  function program(keys: Record<string, unknown>, extra: Record<string, string> = {}): StackRef {
    const dir = path.join(tmp, `p${++n}`);
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, "Pulumi.yaml"), `name: keys-test\nruntime: nodejs\nmain: ${path.join(ROOT, "test/programs/keys/index.ts")}\n`);
    writeKeys(dir, keys, extra);
    return { cwd: dir, stack: "t", state: path.join(dir, "state.json") };
  }
  function writeKeys(dir: string, keys: Record<string, unknown>, extra: Record<string, string> = {}): void {
    const file = path.join(dir, "Pulumi.t.yaml");
    const doc = fs.existsSync(file) ? YAML.parse(fs.readFileSync(file, "utf8")) ?? {} : {};
    doc.config = {
      ...(doc.config ?? {}),
      "keys-test:host": h.address, "keys-test:keyPath": lab.privateKeyPath, "keys-test:nixpkgs": STANDIN_NIXPKGS,
      "keys-test:plainText": "plain text key\n", "keys-test:keys": keys, "pulumi-nixos:vaultAddr": vaultSrv.addr, ...extra,
    };
    fs.writeFileSync(file, YAML.stringify(doc));
  }
  const onHost = async (cmd: string) => (await lab.exec("host1", ["sh", "-c", cmd], { allowFailure: true })).stdout.trim();
  const fileInfo = (p: string) => onHost(`stat -c '%U %G %a' ${p} 2>/dev/null && cat ${p} || echo missing`);

  before(async () => {
    tmp = tempDir("keys");
    lab = await Lab.up({ dir: path.join(tmp, "lab"), hosts: 1 });
    [h] = await lab.status();
    await lab.exec("host1", ["sh", "-c", "id alice >/dev/null 2>&1 || useradd -M alice; groupadd -f postgres"]);
    vaultSrv = await startVaultServer({
      mounts: {
        secret: { version: 2, secrets: { "thedroneely": { cockpit_api_token: `cockpit ${CANARY}-vault2`, pgsql_database_password: "pg-pass" } } },
        kv1: { version: 1, secrets: { legacy: { token: "legacy-token" } } },
      },
      tokens: { "s.good": ["secret/data/thedroneely", "kv1/legacy"], "s.weak": ["secret/data/other"] },
    });
    process.env.VAULT_TOKEN = "s.good";
  });
  after(async () => {
    delete process.env.VAULT_TOKEN;
    await vaultSrv?.close();
    await lab?.down();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  test("every source reaches the host with owner, group, mode and content; update, rename, delete", async () => {
    const keyFile = path.join(tmp, "file-key");
    fs.writeFileSync(keyFile, "from a file\n", { mode: 0o600 });
    const keys = {
      secret: { source: "secret", user: "alice", group: "postgres", permissions: "0640" },
      plain: { source: "text", permissions: "0400" },
      file: { source: "file", file: keyFile, user: "alice" },
      cmd: { source: "command", command: ["sh", "-c", "echo from a command"] },
      v2: { source: "vault", vault: { path: "thedroneely/", field: "pgsql_database_password" }, group: "postgres", permissions: "0640" },
      v1: { source: "vault", vault: { path: "legacy", field: "token", mount: "kv1", kvVersion: 1 } },
      other: { source: "text", destDir: "/var/lib/app-keys" },
    };
    const s = program(keys);
    setStackConfig({ stackFile: path.join(s.cwd, "Pulumi.t.yaml"), name: "keys-test" }, "secretText", "the secret text\n", true);
    const up = await engine("up", s);
    expectExit(up, 0, "up");
    assert.equal(await fileInfo("/run/keys/secret"), "alice postgres 640\nthe secret text");
    assert.equal(await fileInfo("/run/keys/plain"), "root root 400\nplain text key");
    assert.equal(await fileInfo("/run/keys/file"), "alice root 600\nfrom a file");
    assert.equal(await fileInfo("/run/keys/cmd"), "root root 600\nfrom a command");
    assert.equal(await fileInfo("/run/keys/v2"), "root postgres 640\npg-pass");
    assert.equal(await fileInfo("/run/keys/v1"), "root root 600\nlegacy-token");
    assert.equal(await fileInfo("/var/lib/app-keys/other"), "root root 600\nplain text key");
    assert.equal(await onHost("stat -c '%a %U %G' /var/lib/app-keys"), "750 root keys", "a destDir made as NixOps's send_keys made it");
    assert.equal(await onHost("stat -c '%a %G' /run/keys"), "750 keys");
    assert.equal(await onHost("ls -A /run/keys | grep -c '^\\.' || true"), "0", "no temp files left");
    const st = stateResources(s.state);
    assert.equal(st.secret.outputs.path, "/run/keys/secret");
    assert.ok(st.secret.outputs.digest.ciphertext, "digest is a secret");
    assert.ok(st.plain.outputs.digest.ciphertext, "digest is a secret even for plain text");
    assert.ok(st.secret.inputs.content.ciphertext, "content is a secret in state");
    assert.ok(st.plain.inputs.content.ciphertext, "plain text content becomes a secret");
    assert.equal(st.secret.outputs.content, undefined, "content is not an output");

    // Content and mode change → re-upload in place.
    fs.writeFileSync(keyFile, "from a file, v2\n");
    writeKeys(s.cwd, { ...keys, plain: { source: "text", permissions: "0440" } });
    const pv = await engine("preview", s);
    assert.match(pv.stdout, /~ 2 to update/);
    const up2 = await engine("up", s);
    expectExit(up2, 0, "update");
    assert.equal(await fileInfo("/run/keys/file"), "alice root 600\nfrom a file, v2");
    assert.equal(await fileInfo("/run/keys/plain"), "root root 440\nplain text key");

    // Rename → replace: the old file goes.
    writeKeys(s.cwd, { ...keys, plain: { source: "text", permissions: "0440", name: "renamed" } });
    const up3 = await engine("up", s);
    expectExit(up3, 0, "rename");
    assert.match(up3.stdout, /\+- 1 replaced/);
    assert.equal(await fileInfo("/run/keys/plain"), "missing");
    assert.equal(await fileInfo("/run/keys/renamed"), "root root 440\nplain text key");

    // The resource renamed without aliases (same file): the new one is created, writing the file,
    // then the old one is deleted: it sees the file is another's now and leaves it in place.
    const { plain: _p, ...rest } = keys;
    const movedKeys = { ...rest, moved: { source: "text", permissions: "0440", name: "renamed" } };
    writeKeys(s.cwd, movedKeys);
    const up3b = await engine("up", s);
    expectExit(up3b, 0, "resource rename without aliases");
    assert.match(up3b.stdout, /\+ 1 created/);
    assert.match(up3b.stdout, /- 1 deleted/);
    assert.match(up3b.stdout + up3b.stderr, /warning: plain: key file \/run\/keys\/renamed on \S+ left in place: it was written since by moved/);
    assert.equal(await fileInfo("/run/keys/renamed"), "root root 440\nplain text key", "the file the new resource wrote stays");

    // Reboot empties /run/keys: refresh sees the key missing, up re-uploads it.
    await lab.reboot("host1");
    const rf = await engine("refresh", s);
    expectExit(rf, 0, "refresh after reboot");
    assert.match(rf.stdout, /secret drift/);
    assert.match(rf.stdout + rf.stderr, /key file \/run\/keys\/secret is missing/);
    const up4 = await engine("up", s);
    expectExit(up4, 0, "up after reboot");
    assert.equal(await fileInfo("/run/keys/secret"), "alice postgres 640\nthe secret text");
    assert.equal(await fileInfo("/var/lib/app-keys/other"), "root root 600\nplain text key", "keys outside /run/keys survive");

    // sendKeys re-uploads every key of a host from the state, without deploying (send-keys).
    await lab.reboot("host1");
    const keyInputs = StackState.load(s.state, undefined).all().filter((r) => r.inputs.kind === "deploymentKey").map((r) => strip(r.inputs) as any);
    const sent = await sendKeys(keyInputs);
    await closeAllSessions();
    assert.equal(sent.length, 7);
    assert.equal(await fileInfo("/run/keys/secret"), "alice postgres 640\nthe secret text");
    assert.equal(await fileInfo("/run/keys/renamed"), "root root 440\nplain text key");

    // A key replaced by hand is not ours to delete: left with a warning.
    await onHost("echo by-hand > /run/keys/cmd");
    const ds = await engine("destroy", s);
    expectExit(ds, 0, "destroy");
    assert.match(ds.stdout + ds.stderr, /warning: cmd: key file \/run\/keys\/cmd on \S+ left in place: its content changed since this resource wrote it/);
    // `done`: touched by every upload, as NixOps's send_keys did (keys.target waits for it).
    assert.equal(await onHost("ls -A /run/keys"), "cmd\ndone");
    await onHost("rm /run/keys/cmd");
    assert.equal(await fileInfo("/var/lib/app-keys/other"), "missing");
  });

  test("pre-activation keys exist when the machine activates; post-activation keys come after", async () => {
    const cfg = path.join(tmp, "m.nix");
    fs.writeFileSync(cfg, nixConfig("keyed"));
    const s = program({ early: { source: "text" }, late: { source: "text", uploadAt: "post-activation" } }, { "keys-test:machineConfig": cfg });
    const up = await engine("up", s);
    expectExit(up, 0, "up with machine");
    assert.equal(await onHost("cat /run/activation-saw-keys"), "done\nearly");
    assert.equal(await onHost("ls /run/keys | tr '\\n' ' '"), "done early late");
    const m = stateResources(s.state).m.outputs;
    const keysJson = JSON.parse(fs.readFileSync(path.join(m.systemPath, "keys.json"), "utf8"));
    assert.deepEqual(keysJson, { early: { user: "root", group: "root", permissions: "0600" }, late: { user: "root", group: "root", permissions: "0600" } },
      "the machine's evaluation knows its keys (metadata only)");
    expectExit(await engine("destroy", s), 0, "destroy");
  });

  test("bad input: clear errors naming key and field, nothing changed on the host", async () => {
    const before = await onHost("ls -A /run/keys; ls /var/lib 2>/dev/null");
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ k: { source: "text", name: "../x" } }, /DeploymentKey k: name '\.\.\/x' is not a valid file name/],
      [{ k: { source: "text", name: "a/b" } }, /name 'a\/b' is not a valid file name/],
      [{ k: { source: "text", name: "" } }, /name '' is not a valid file name/],
      [{ k: { source: "text", permissions: "999" } }, /DeploymentKey k: permissions '999' must be 3-4 octal digits/],
      [{ k: { source: "text", permissions: "rwx" } }, /permissions 'rwx' must be 3-4 octal digits/],
      [{ k: { source: "text", destDir: "/nix/store/keys" } }, /destDir '\/nix\/store\/keys' is inside the world-readable \/nix\/store/],
      [{ k: { source: "text", destDir: "relative" } }, /destDir 'relative' must be an absolute, normalized path/],
      [{ k: { source: "file", file: path.join(tmp, "nope") } }, /DeploymentKey k: cannot read file .*nope: no such file/],
      [{ k: { source: "command", command: ["sh", "-c", "echo oops >&2; exit 3"] } }, /DeploymentKey k: command sh exited with 3: oops/],
      [{ k: { source: "vault", vault: { path: "thedroneely/", field: "cockpit_api_token" } } }, /DeploymentKey k: Vault denied reading secret\/data\/thedroneely \(403\)/],
      [{ k: { source: "vault", vault: { path: "other", field: "x" } } }, /DeploymentKey k: Vault has no secret at secret\/data\/other \(404\)/],
    ];
    for (const [keys, expected] of cases) {
      const s = program(keys);
      if (JSON.stringify(keys).includes("thedroneely")) process.env.VAULT_TOKEN = "s.weak";
      if (JSON.stringify(keys).includes('"other"')) process.env.VAULT_TOKEN = "s.weak";
      const r = await engine("up", s);
      process.env.VAULT_TOKEN = "s.good";
      expectExit(r, 1, `bad input ${JSON.stringify(keys)}`);
      assert.match(r.stdout, expected);
    }
    const s = program({ k: { source: "vault", vault: { path: "x", field: "y" } } }, { "pulumi-nixos:vaultAddr": "http://127.0.0.1:1" });
    const r = await engine("up", s);
    assert.match(r.stdout, /DeploymentKey k: Vault at http:\/\/127\.0\.0\.1:1 is unreachable \(ECONNREFUSED\)/);
    assert.equal(await onHost("ls -A /run/keys; ls /var/lib 2>/dev/null"), before, "nothing changed on the host");
    // A user the host does not have (yet): not an error (the machine's deploy may create it), the
    // file waits root-owned 0600 for keys.nix's activation script (NixOps's send_keys did the same).
    const ns = program({ k: { source: "text", user: "nobodyhere", permissions: "0640" } });
    const nouser = await engine("up", ns);
    expectExit(nouser, 0, "unknown user");
    assert.match(nouser.stdout, /k: key uploaded to \S+:\/run\/keys\/k root:root 0600: nobodyhere:root does not exist there yet/);
    assert.equal(await onHost("stat -c '%U %G %a' /run/keys/k"), "root root 600");
    expectExit(await engine("destroy", ns), 0, "destroy");
  });

  test("secret hygiene: a canary through every source shows up only in the key files and, sealed, in the state", async () => {
    const canaryFile = path.join(tmp, "canary-file");
    fs.writeFileSync(canaryFile, `${CANARY}-file`, { mode: 0o600 });
    process.env.PNX_CANARY = `${CANARY}-command`;
    const s = program({
      secret: { source: "secret" },
      file: { source: "file", file: canaryFile },
      cmd: { source: "command", command: ["sh", "-c", 'printf %s "$PNX_CANARY"'] },
      vault: { source: "vault", vault: { path: "thedroneely", field: "cockpit_api_token" } },
    });
    setStackConfig({ stackFile: path.join(s.cwd, "Pulumi.t.yaml"), name: "keys-test" }, "secretText", `${CANARY}-secret`, true);
    // Sample every process's argv while the deploy runs.
    const seenInArgv: string[] = [];
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        for (const pid of fs.readdirSync("/proc").filter((p) => /^\d+$/.test(p))) {
          try {
            const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8");
            if (cmd.includes(CANARY)) seenInArgv.push(cmd.replace(/\0/g, " "));
          } catch { /* gone */ }
        }
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    const up = await engine("up", s);
    sampling = false;
    await sampler;
    delete process.env.PNX_CANARY;
    expectExit(up, 0, "canary up");
    for (const k of ["secret", "file", "cmd", "vault"]) assert.match(await onHost(`cat /run/keys/${k}`), new RegExp(CANARY));
    assert.deepEqual(seenInArgv, [], "never in any process's arguments");
    assert.equal(up.stdout.includes(CANARY) || up.stderr.includes(CANARY), false, "never in the engine's output");
    const refresh = await engine("refresh", s);
    assert.equal(refresh.stdout.includes(CANARY) || refresh.stderr.includes(CANARY), false, "never in refresh output");
    const state = fs.readFileSync(s.state, "utf8");
    assert.equal(state.includes(CANARY), false, "state holds it only encrypted");
    for (const r of Object.values(stateResources(s.state))) assert.equal(String(r.inputs.__provider).includes(CANARY), false);
    // Not in any Nix store (the machine's or the host's), nor in the operator's temp dirs.
    const grep = async (dir: string) => (await run(["grep", "-rlF", CANARY, dir], { allowFailure: true })).stdout.trim();
    assert.equal(await grep("/nix/store"), "");
    assert.equal((await lab.exec("host1", ["sh", "-c", `grep -rlF ${CANARY} /nix/store /tmp /root || true`])).stdout.trim(), "");
    const tmpHits = (await grep("/tmp")).split("\n").filter((f) => f && f !== canaryFile);
    assert.deepEqual(tmpHits, [], "no copy in temp dirs (only the operator's own source file)");
    expectExit(await engine("destroy", s), 0, "destroy");
  });
});
