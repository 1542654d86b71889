/**
 * The engine harness against Pulumi's engine (v3.248.0), behaviour by behaviour, on a program of
 * local files (test/programs/local-file): each test names the engine function it mirrors.
 */
import "./helpers/env";
import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "fs";
import * as path from "path";
import { spawn } from "child_process";
import { ROOT, tempDir } from "./helpers/env";
import { engine, expectExit, stateResources, StackRef } from "./helpers/engine";
import { PassphraseSecrets } from "../provider/state/passphrase";
import YAML from "yaml";

interface FileSpec {
  path?: string; content?: string; note?: string; protect?: boolean; retain?: boolean; ignore?: string[];
  aliases?: string[]; dbr?: boolean; dependsOn?: string[]; parent?: string; failCreate?: "error" | "partial"; delayMs?: number;
}

/** A copy of the local-file program in a temp dir, and a function that writes its stack config. */
function bed(prefix: string): { s: StackRef; dir: string; prog: string; config: (files: Record<string, FileSpec>, extra?: Record<string, unknown>) => void; ops: () => string[]; cleanup: () => void } {
  const tmp = tempDir(prefix);
  const prog = path.join(tmp, "prog");
  fs.cpSync(path.join(ROOT, "test/programs/local-file"), prog, { recursive: true });
  fs.symlinkSync(path.join(ROOT, "node_modules"), path.join(prog, "node_modules"));
  const dir = path.join(tmp, "files");
  fs.mkdirSync(dir);
  const s = { cwd: prog, stack: "dev", state: path.join(tmp, "state.json") };
  const stackFile = path.join(prog, "Pulumi.dev.yaml");
  const config = (files: Record<string, FileSpec>, extra: Record<string, unknown> = {}) => {
    // Keep the salt the first run wrote (as a stack file keeps it).
    const old = fs.existsSync(stackFile) ? YAML.parse(fs.readFileSync(stackFile, "utf8")) : {};
    const doc = { ...(old?.encryptionsalt ? { encryptionsalt: old.encryptionsalt } : {}), config: { "local-file:dir": dir, "local-file:files": files, ...extra } };
    fs.writeFileSync(stackFile, YAML.stringify(doc));
  };
  const ops = () => fs.existsSync(path.join(dir, "ops.log")) ? fs.readFileSync(path.join(dir, "ops.log"), "utf8").trim().split("\n") : [];
  return { s, dir, prog, config, ops, cleanup: () => fs.rmSync(tmp, { recursive: true, force: true }) };
}

const urn = (name: string, type = "pulumi-nodejs:dynamic:Resource") => `urn:pulumi:dev::local-file::${type}::${name}`;

test("program side: cmd/run with getPwdMain's pwd/entry, the Stack and its outputs, nested URNs, log severities, exit codes", async () => {
  const b = bed("sem-program");
  try {
    // `main: app/` (a directory): pwd = app/, entry "." → package.json's main (app/main.js).
    fs.mkdirSync(path.join(b.prog, "app"));
    fs.renameSync(path.join(b.prog, "index.js"), path.join(b.prog, "app", "main.js"));
    fs.writeFileSync(path.join(b.prog, "app", "package.json"), JSON.stringify({ name: "app", main: "main.js" }));
    fs.symlinkSync(path.join(ROOT, "node_modules"), path.join(b.prog, "app", "node_modules"));
    fs.appendFileSync(path.join(b.prog, "Pulumi.yaml"), "main: app/\n");
    fs.appendFileSync(path.join(b.prog, "app", "main.js"), "\nrequire('fs').writeFileSync(require('path').join(require('@pulumi/pulumi').runtime.getRootDirectory(), 'cwd.txt'), process.cwd());\n");
    b.config({ a: {}, c: { parent: "g" } }, { "local-file:groups": ["g"], "local-file:warn": ["careful now"] });
    const up = await engine("up", b.s);
    expectExit(up, 0, "up");
    assert.equal(fs.readFileSync(path.join(b.prog, "cwd.txt"), "utf8"), path.join(b.prog, "app"), "pwd = the directory of main");
    assert.match(up.stdout, /^warning: careful now$/m, "Engine.Log warnings printed with their severity");
    assert.match(up.stdout, /Outputs:\n {4}a: d-a\n {4}c: d-c/);
    const raw = JSON.parse(fs.readFileSync(b.s.state, "utf8")).deployment.resources;
    const stack = raw.find((r: any) => r.type === "pulumi:pulumi:Stack");
    assert.equal(stack.urn, "urn:pulumi:dev::local-file::pulumi:pulumi:Stack::local-file-dev");
    assert.deepEqual(stack.outputs, { a: "d-a", c: "d-c" }, "stack outputs on the Stack resource");
    assert.ok(raw.some((r: any) => r.urn === urn("c", "test:index:Group$pulumi-nodejs:dynamic:Resource")), "nested URN carries the parent's type");
    assert.ok(raw.some((r: any) => r.urn === urn("g", "test:index:Group") && r.parent === stack.urn));

    // The program's own failure: its exit code decides, its message is shown, nothing is deleted.
    b.config({ a: {} }, { "local-file:throw": "boom from the program" });
    const bad = await engine("up", b.s);
    expectExit(bad, 1, "program that throws");
    assert.match(bad.stdout + bad.stderr, /boom from the program/);
    assert.ok(stateResources(b.s.state).c, "a failed program deletes nothing");
  } finally { b.cleanup(); }
});

test("SameStep (step_generator generateSteps + SameStep.Apply): new inputs and dependencies are recorded, old outputs kept", async () => {
  const b = bed("sem-same");
  try {
    b.config({ a: { note: "one" }, b: {} });
    expectExit(await engine("up", b.s), 0, "up");
    b.config({ a: { note: "two" }, b: { dependsOn: ["a"] } });
    const up = await engine("up", b.s);
    expectExit(up, 0, "up (same)");
    assert.match(up.stdout, /3 unchanged/);
    const st = stateResources(b.s.state);
    assert.equal(st.a.inputs.note, "two", "a same step stores the new inputs");
    assert.equal(st.a.outputs.note, "one", "… and keeps the old outputs");
    assert.deepEqual(st.b.dependencies, [urn("a")], "… and the new dependencies");
    assert.deepEqual(b.ops().filter((l) => l.startsWith("update")), [], "no provider update");
  } finally { b.cleanup(); }
});

test("a failed step cancels the steps not yet started (step_executor cancelDueToError); --continue-on-error goes on", async () => {
  const b = bed("sem-cancel");
  try {
    b.config({ a: { failCreate: "error" }, b: { delayMs: 0 }, c: {} });
    const up = await engine("up", b.s, ["--parallel", "1"]);
    expectExit(up, 1, "up with a failing create");
    assert.match(up.stdout, /error: a .*create failed as asked/);
    assert.match(up.stdout, /error: update failed/);
    assert.deepEqual(b.ops(), ["create a a.txt"], "nothing started after the failure");
    assert.deepEqual(Object.keys(stateResources(b.s.state)), [], "state: only the Stack");

    const cont = await engine("up", b.s, ["--parallel", "1", "--continue-on-error"]);
    expectExit(cont, 1, "up --continue-on-error");
    assert.deepEqual(Object.keys(stateResources(b.s.state)).sort(), ["b", "c"]);
  } finally { b.cleanup(); }
});

test("preview of an update shows computed outputs as unknown (provider_plugin Update with Preview: no preview support)", async () => {
  const b = bed("sem-preview");
  try {
    b.config({ a: { content: "one" } });
    expectExit(await engine("up", b.s), 0, "up");
    b.config({ a: { content: "two" } });
    const pv = await engine("preview", b.s);
    expectExit(pv, 0, "preview");
    assert.match(pv.stdout, /~ {2}pulumi-nodejs:dynamic:Resource a \[diff: ~content\]/);
    assert.match(pv.stdout, /a: output<unknown>/, "the digest is not the stale d-one");
    assert.doesNotMatch(pv.stdout, /d-one/);
  } finally { b.cleanup(); }
});

test("targets (step_generator validateSteps, GenerateDeletes): dependents and children of a destroy target need --target-dependents; an untargeted parent is not created", async () => {
  const b = bed("sem-target");
  try {
    b.config({ c: { parent: "g" } }, { "local-file:groups": ["g"] });
    const t = await engine("up", b.s, ["--target", urn("c", "test:index:Group$pulumi-nodejs:dynamic:Resource")]);
    expectExit(t, 1, "targeted create whose parent is new and untargeted");
    assert.match(t.stdout, /Resource '.*::c' depends on '.*::g' which was was not specified in --target list/);
    assert.deepEqual(b.ops(), []);

    b.config({ a: {}, b: { dependsOn: ["a"] }, c: { parent: "g" }, d: {} }, { "local-file:groups": ["g"] });
    expectExit(await engine("up", b.s), 0, "up");
    const d0 = await engine("destroy", b.s, ["--target", urn("a")]);
    expectExit(d0, 1, "destroy --target a (b depends on it)");
    assert.match(d0.stdout, /Resource '.*::b' will be destroyed but was not specified in --target list/);
    assert.deepEqual(Object.keys(stateResources(b.s.state)).sort(), ["a", "b", "c", "d", "g"], "nothing deleted");
    const d1 = await engine("destroy", b.s, ["--target", urn("a"), "--target-dependents"]);
    expectExit(d1, 0, "destroy --target a --target-dependents");
    assert.deepEqual(Object.keys(stateResources(b.s.state)).sort(), ["c", "d", "g"], "b depended on a");
    const d2 = await engine("destroy", b.s, ["--target", urn("g", "test:index:Group"), "--target-dependents"]);
    expectExit(d2, 0, "destroy --target g");
    assert.deepEqual(Object.keys(stateResources(b.s.state)), ["d"], "c was g's child");
  } finally { b.cleanup(); }
});

test("resource options: protect, retainOnDelete, ignoreChanges, aliases (step_generator, DeleteStep)", async () => {
  const b = bed("sem-options");
  try {
    b.config({ p: { protect: true }, r: { retain: true }, i: { ignore: ["content"], content: "one" }, old: {} });
    expectExit(await engine("up", b.s), 0, "up");
    // ignoreChanges: a changed content is no update. aliases: `old` renamed `renamed` is the same resource.
    b.config({ p: { protect: true }, r: { retain: true }, i: { ignore: ["content"], content: "two" }, renamed: { aliases: ["old"], path: "old.txt", content: "old" } });
    const up = await engine("up", b.s);
    expectExit(up, 0, "up (ignore + alias)");
    assert.doesNotMatch(up.stdout, /to create|created|deleted|updated/);
    const st = stateResources(b.s.state);
    assert.ok(st.renamed && !st.old, "the state moved to the new URN");
    assert.equal(fs.readFileSync(path.join(b.dir, "i.txt"), "utf8"), "one");
    // protect: neither replaced nor deleted; retainOnDelete: gone from state, left on disk.
    b.config({ p: { protect: true, path: "p2.txt" }, i: { ignore: ["content"] }, renamed: { aliases: ["old"], path: "old.txt", content: "old" } });
    const up2 = await engine("up", b.s);
    expectExit(up2, 1, "replacing a protected resource");
    assert.match(up2.stdout, /unable to replace resource .*p.*\n?as it is currently marked for protection/);
    b.config({ i: { ignore: ["content"] }, renamed: { aliases: ["old"], path: "old.txt", content: "old" } });
    const up3 = await engine("up", b.s);
    expectExit(up3, 1, "deleting a protected resource");
    assert.match(up3.stdout, /unable to delete resource .*p.*\n?as it is currently marked for protection/);
    assert.ok(fs.existsSync(path.join(b.dir, "p.txt")));
    assert.ok(!stateResources(b.s.state).r, "r left the state");
    assert.ok(fs.existsSync(path.join(b.dir, "r.txt")), "retainOnDelete: the provider was not asked to delete");
  } finally { b.cleanup(); }
});

test("replacements: the program's deleteBeforeReplace wins over the provider's; create-before-delete deletes the old one at the end of the run", async () => {
  const b = bed("sem-replace");
  try {
    b.config({ a: {}, z: {} });
    expectExit(await engine("up", b.s), 0, "up");
    fs.rmSync(path.join(b.dir, "ops.log"));
    // The provider asks for delete-before-replace; the program says false → create first.
    b.config({ a: { path: "a2.txt", dbr: false }, z: { content: "zz" } });
    expectExit(await engine("up", b.s, ["--parallel", "1"]), 0, "replace (create before delete)");
    const ops = b.ops();
    assert.ok(ops.indexOf("created a a2.txt") < ops.indexOf("delete a a.txt"), ops.join("; "));
    assert.ok(ops.indexOf("update z z.txt") < ops.indexOf("delete a a.txt"), `old a deleted after every other step: ${ops.join("; ")}`);
    fs.rmSync(path.join(b.dir, "ops.log"));
    // Unset: the provider's delete-before-replace.
    b.config({ a: { path: "a3.txt" }, z: { content: "zz" } });
    expectExit(await engine("up", b.s), 0, "replace (delete first)");
    assert.deepEqual(b.ops(), ["delete a a2.txt", "create a a3.txt", "created a a3.txt"]);
  } finally { b.cleanup(); }
});

test("refresh clears init errors (RefreshStep); the default provider records the stack config (target.go GetPackageConfig)", async () => {
  const b = bed("sem-refresh");
  try {
    b.config({ a: { failCreate: "partial" } }, { "local-file:plainToken": "in-the-clear" });
    const up = await engine("up", b.s);
    expectExit(up, 1, "partial failure");
    assert.deepEqual(stateResources(b.s.state).a.initErrors, ["unhealthy as asked"]);
    expectExit(await engine("refresh", b.s), 0, "refresh");
    assert.equal(stateResources(b.s.state).a.initErrors, undefined);
    const raw = JSON.parse(fs.readFileSync(b.s.state, "utf8")).deployment.resources;
    const prov = raw.find((r: any) => r.type === "pulumi:providers:pulumi-nodejs");
    assert.equal(prov.urn, "urn:pulumi:dev::local-file::pulumi:providers:pulumi-nodejs::default");
    assert.equal(prov.inputs["local-file:plainToken"], "in-the-clear", "plain config lands in state in clear text, as under the CLI");
    assert.equal(raw.find((r: any) => r.urn === urn("a")).provider, `${prov.urn}::${prov.id}`);
  } finally { b.cleanup(); }
});

test("state is `pulumi stack export` with the passphrase provider's salt from the stack file; missing passphrase stops before anything runs", async () => {
  const b = bed("sem-state");
  try {
    b.config({ a: {} });
    // A secret config value through the harness's `config set --secret`.
    const set = await runCli(["config", "set", "token", "s3cret-token-value", "--secret", "--cwd", b.s.cwd, "--stack", "dev"]);
    expectExit(set, 0, "config set --secret");
    const up = await engine("up", b.s);
    expectExit(up, 0, "up");
    const data = JSON.parse(fs.readFileSync(b.s.state, "utf8"));
    assert.equal(data.version, 3);
    const stackSalt = YAML.parse(fs.readFileSync(path.join(b.prog, "Pulumi.dev.yaml"), "utf8")).encryptionsalt;
    assert.match(stackSalt, /^v1:[A-Za-z0-9+/=]+:v1:/);
    assert.deepEqual(data.deployment.secrets_providers, { type: "passphrase", state: { salt: stackSalt } });
    assert.equal(data.deployment.manifest.magic, require("crypto").createHash("sha256").update(data.deployment.manifest.version).digest("hex"));
    assert.ok(!fs.readFileSync(b.s.state, "utf8").includes("s3cret-token-value"), "no clear text");
    const prov = data.deployment.resources.find((r: any) => r.type === "pulumi:providers:pulumi-nodejs");
    const sealed = prov.inputs["local-file:token"];
    assert.equal(sealed["4dabf18193072939515e22adb298388d"], "1b47061264138c4ac30d75fd1eb44270");
    assert.equal(JSON.parse(PassphraseSecrets.open(stackSalt).decrypt(sealed.ciphertext)), "s3cret-token-value");

    b.config({ a: { content: "changed" } });
    const env = { ...process.env };
    delete env.PULUMI_CONFIG_PASSPHRASE;
    const before = fs.readFileSync(b.s.state, "utf8");
    const np = await engine("up", b.s, [], env);
    expectExit(np, 1, "up without passphrase");
    assert.match(np.stderr + np.stdout, /PULUMI_CONFIG_PASSPHRASE/);
    assert.deepEqual(b.ops().filter((l) => l.startsWith("update")), [], "nothing ran");
    assert.equal(fs.readFileSync(b.s.state, "utf8"), before);
  } finally { b.cleanup(); }
});

test("the stack is locked while a run writes it; SIGINT cancels (no new steps, running ones finish); no process outlives the engine", async () => {
  const b = bed("sem-lock");
  try {
    b.config({ a: { delayMs: 3000 }, b: { delayMs: 3000 }, c: {} });
    const first = spawnEngine(["up", "--cwd", b.s.cwd, "--stack", "dev", "--state", b.s.state, "--parallel", "1"]);
    await waitFor(() => b.ops().includes("create a a.txt"));
    const second = await engine("up", b.s);
    expectExit(second, 1, "second up");
    assert.match(second.stderr + second.stdout, /the stack is currently locked by 1 lock\(s\): .*pid \d+/);
    first.child.kill("SIGINT");
    const code = await first.exit;
    assert.notEqual(code, 0);
    assert.match(first.output(), /\^C received; cancelling/);
    assert.deepEqual(b.ops(), ["create a a.txt", "created a a.txt"], "a finished, b never started");
    assert.deepEqual(Object.keys(stateResources(b.s.state)), ["a"], "a recorded");
    assert.ok(!fs.existsSync(`${b.s.state}.lock`), "lock released");

    // Killed outright: the plugin and the program die with it (pdeathsig), nothing keeps deploying.
    const third = spawnEngine(["up", "--cwd", b.s.cwd, "--stack", "dev", "--state", b.s.state, "--parallel", "1"]);
    await waitFor(() => b.ops().includes("create b b.txt"));
    const kids = childrenOf(third.child.pid!);
    assert.ok(kids.length >= 1);
    third.child.kill("SIGKILL");
    await third.exit;
    await waitFor(() => kids.every((p) => !alive(p)));
    fs.rmSync(`${b.s.state}.lock`, { force: true });
  } finally { b.cleanup(); }
});

// ---- helpers ----------------------------------------------------------------------------------

const CLI = path.join(ROOT, "dist/test/engine/cli.js");

function runCli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const p = spawnEngine(args);
  return p.exit.then((code) => ({ code, stdout: p.output(), stderr: "" }));
}

function spawnEngine(args: string[]) {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  let text = "";
  child.stdout.on("data", (d) => { text += d; });
  child.stderr.on("data", (d) => { text += d; });
  const exit = new Promise<number>((r) => child.once("exit", (c, s) => r(c ?? (s ? 128 : 0))));
  return { child, exit, output: () => text };
}

async function waitFor(cond: () => boolean, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error("timed out waiting");
    await new Promise((r) => setTimeout(r, 50));
  }
}

function childrenOf(pid: number): number[] {
  const out: number[] = [];
  const visit = (p: number) => {
    let kids: string[] = [];
    try { kids = fs.readFileSync(`/proc/${p}/task/${p}/children`, "utf8").trim().split(/\s+/).filter(Boolean); } catch { /* gone */ }
    for (const k of kids.map(Number)) { out.push(k); visit(k); }
  };
  visit(pid);
  return out;
}

function alive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch { return false; }
}

test("TypeScript programs are type-checked by the SDK's runner unless PULUMI_NODEJS_TRANSPILE_ONLY (cmd/run's ts-node set-up)", async () => {
  const tmp = tempDir("sem-ts");
  try {
    fs.writeFileSync(path.join(tmp, "Pulumi.yaml"), "name: ts-check\nruntime:\n  name: nodejs\n  options:\n    typescript: true\n");
    fs.writeFileSync(path.join(tmp, "package.json"), JSON.stringify({ name: "ts-check", main: "index.ts" }));
    fs.writeFileSync(path.join(tmp, "index.ts"), 'const n: number = "not a number" as unknown as string;\nexport const out = n;\n');
    fs.symlinkSync(path.join(ROOT, "node_modules"), path.join(tmp, "node_modules"));
    const s = { cwd: tmp, stack: "dev", state: path.join(tmp, "state.json") };
    const checked = await engine("preview", s, [], { ...process.env, PULUMI_NODEJS_TRANSPILE_ONLY: "" });
    expectExit(checked, 1, "type error, checked");
    assert.match(checked.stdout + checked.stderr, /TS2322|not assignable to type 'number'/);
    const transpiled = await engine("preview", s, [], { ...process.env, PULUMI_NODEJS_TRANSPILE_ONLY: "true" });
    expectExit(transpiled, 0, "type error, transpile only");
    assert.match(transpiled.stdout, /out: not a number/);
  } finally { fs.rmSync(tmp, { recursive: true, force: true }); }
});
