import "./helpers/env";
import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "fs";
import * as path from "path";
import { Lab, LabHostInfo } from "../provider/lab/lab";
import { canRunLab, tempDir, ROOT } from "./helpers/env";
import { engine, expectExit, stateResources } from "./helpers/engine";
import { REAL_CLI_SKIP, pulumiCli, pulumiExport } from "./helpers/real-cli";

const skip = canRunLab ? false : "the lab needs root on Linux";

/** The remote-file program, copied outside the repo (the harness must not depend on where a program lives). */
function copyProgram(dir: string): string {
  const prog = path.join(dir, "prog");
  fs.cpSync(path.join(ROOT, "test/programs/remote-file"), prog, { recursive: true });
  fs.symlinkSync(path.join(ROOT, "node_modules"), path.join(prog, "node_modules"));
  return prog;
}

function writeConfig(prog: string, host: string, key: string, files: Record<string, { path: string; content: string; mode?: string }>): void {
  const lines = ["config:", `  remote-file:host: ${host}`, `  remote-file:keyPath: ${key}`, `  remote-file:files: ${JSON.stringify(files)}`];
  fs.writeFileSync(path.join(prog, "Pulumi.dev.yaml"), lines.join("\n") + "\n");
}

/** One lab host and a copy of the remote-file program; torn down afterwards, also on failure. */
async function withRemoteFileBed(prefix: string, fn: (bed: {
  lab: Lab; h: LabHostInfo; prog: string; s: { cwd: string; stack: string; state: string }; cat: (p: string) => Promise<string>;
}) => Promise<void>): Promise<void> {
  const tmp = tempDir(prefix);
  const lab = await Lab.up({ dir: path.join(tmp, "lab"), hosts: 1 });
  try {
    const [h] = await lab.status();
    const prog = copyProgram(tmp);
    const s = { cwd: prog, stack: "dev", state: path.join(tmp, "state.json") };
    const cat = async (p: string) => (await lab.exec("host1", ["sh", "-c", `cat ${p} 2>/dev/null || echo MISSING`])).stdout;
    await fn({ lab, h, prog, s, cat });
  } finally {
    await lab.down();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

test("engine harness: preview → up → update → replace → refresh (drift) → destroy", { skip }, async () => {
  await withRemoteFileBed("harness", async ({ lab, h, prog, s, cat }) => {
    writeConfig(prog, h.address, lab.privateKeyPath, { a: { path: "/root/a.txt", content: "one\n" }, b: { path: "/root/b.txt", content: "bee\n", mode: "0600" } });

    const pv = await engine("preview", s);
    expectExit(pv, 0, "preview");
    assert.match(pv.stdout, /\+ {2}pulumi-nodejs:dynamic:Resource a create/);
    assert.match(pv.stdout, /\+ 3 to create/);
    assert.equal(await cat("/root/a.txt"), "MISSING\n", "preview changes nothing");
    assert.equal(fs.existsSync(s.state), false, "preview writes no state");

    const up = await engine("up", s);
    expectExit(up, 0, "up");
    assert.match(up.stdout, /\+ 3 created/);
    assert.equal(await cat("/root/a.txt"), "one\n");
    assert.equal((await lab.exec("host1", ["stat", "-c", "%a", "/root/b.txt"])).stdout, "600\n");
    let st = stateResources(s.state);
    assert.deepEqual(Object.keys(st).sort(), ["a", "b"]);
    assert.equal(st.a.type, "pulumi-nodejs:dynamic:Resource");
    assert.equal(st.a.id, `${h.address}:/root/a.txt`);
    assert.equal(st.a.inputs.content, "one\n");
    assert.equal(st.a.outputs.digest.length, 64);
    assert.match(st.a.outputs.__provider, /^exports.handler = /);
    assert.match(up.stdout, /a: [0-9a-f]{64}/, "stack outputs printed");

    const noop = await engine("preview", s);
    assert.match(noop.stdout, /3 unchanged/);
    assert.doesNotMatch(noop.stdout, /to (create|update|replace|delete)/);

    // Content change → update in place; path change → replace (old file removed).
    writeConfig(prog, h.address, lab.privateKeyPath, { a: { path: "/root/a.txt", content: "two\n" }, b: { path: "/root/b2.txt", content: "bee\n", mode: "0600" } });
    const pv2 = await engine("preview", s);
    assert.match(pv2.stdout, /~ {2}pulumi-nodejs:dynamic:Resource a \[diff: ~content\]/);
    assert.match(pv2.stdout, /content: "one\\n" => "two\\n"/);
    assert.match(pv2.stdout, /\+- pulumi-nodejs:dynamic:Resource b \[diff: \+-path\]/);
    const up2 = await engine("up", s);
    expectExit(up2, 0, "up (update+replace)");
    assert.match(up2.stdout, /~ 1 updated/);
    assert.match(up2.stdout, /\+- 1 replaced/);
    assert.equal(await cat("/root/a.txt"), "two\n");
    assert.equal(await cat("/root/b.txt"), "MISSING\n", "replaced file's old path removed");
    assert.equal(await cat("/root/b2.txt"), "bee\n");
    st = stateResources(s.state);
    assert.equal(st.a.inputs.content, "two\n");
    assert.equal(st.b.id, `${h.address}:/root/b2.txt`);

    // Drift by hand → refresh records it → up converges.
    await lab.exec("host1", ["sh", "-c", "echo tampered > /root/a.txt"]);
    const rf = await engine("refresh", s);
    expectExit(rf, 0, "refresh");
    assert.match(rf.stdout, /~ {2}pulumi-nodejs:dynamic:Resource a drift/);
    assert.match(rf.stdout, /content: "two\\n" => "tampered\\n"/);
    assert.equal(stateResources(s.state).a.outputs.content, "tampered\n");
    const up3 = await engine("up", s);
    expectExit(up3, 0, "up after drift");
    assert.match(up3.stdout, /~ 1 updated/);
    assert.equal(await cat("/root/a.txt"), "two\n");

    // A file deleted by hand is gone on refresh.
    await lab.exec("host1", ["rm", "/root/b2.txt"]);
    const rf2 = await engine("refresh", s);
    assert.match(rf2.stdout, /b deleted \(gone on refresh\)/);
    assert.deepEqual(Object.keys(stateResources(s.state)), ["a"]);

    // Targeted up creates only the target.
    const up4 = await engine("up", s, ["--target", "a"]);
    expectExit(up4, 0, "targeted up");
    assert.deepEqual(Object.keys(stateResources(s.state)), ["a"]);

    // A handler error is reported per resource, exits non-zero, and keeps what succeeded.
    writeConfig(prog, h.address, lab.privateKeyPath, { a: { path: "/root/a.txt", content: "two\n" }, b: { path: "relative", content: "x" } });
    const bad = await engine("up", s);
    expectExit(bad, 1, "bad input");
    assert.match(bad.stdout, /error: b .*property path .*has a problem: path must be absolute/);
    assert.deepEqual(Object.keys(stateResources(s.state)), ["a"]);

    // Resources the program no longer declares are deleted on up.
    writeConfig(prog, h.address, lab.privateKeyPath, { c: { path: "/root/c.txt", content: "c\n" } });
    const up5 = await engine("up", s);
    expectExit(up5, 0, "up removing a");
    assert.match(up5.stdout, /- {2}pulumi-nodejs:dynamic:Resource a deleted/);
    assert.equal(await cat("/root/a.txt"), "MISSING\n");

    const ds = await engine("destroy", s);
    expectExit(ds, 0, "destroy");
    assert.deepEqual(Object.keys(stateResources(s.state)), []);
    assert.equal(await cat("/root/c.txt"), "MISSING\n");
  });
});

test("real pulumi CLI (file backend): the same program through up → update → refresh (drift) → destroy", { skip: REAL_CLI_SKIP || skip }, async () => {
  await withRemoteFileBed("realcli", async ({ lab, h, prog, s, cat }) => {
    writeConfig(prog, h.address, lab.privateKeyPath, { a: { path: "/root/a.txt", content: "one\n" } });
    expectExit(await pulumiCli("up", s), 0, "pulumi up");
    assert.equal(await cat("/root/a.txt"), "one\n");
    writeConfig(prog, h.address, lab.privateKeyPath, { a: { path: "/root/a.txt", content: "two\n" } });
    const pv = await pulumiCli("preview", s);
    assert.match(pv.stdout, /~ +pulumi-nodejs:dynamic:Resource +a +update/);
    expectExit(await pulumiCli("up", s), 0, "pulumi up (update)");
    assert.equal(await cat("/root/a.txt"), "two\n");
    await lab.exec("host1", ["sh", "-c", "echo tampered > /root/a.txt"]);
    expectExit(await pulumiCli("refresh", s), 0, "pulumi refresh");
    assert.equal((await pulumiExport(s)).a.outputs.content, "tampered\n");
    expectExit(await pulumiCli("destroy", s), 0, "pulumi destroy");
    assert.equal(await cat("/root/a.txt"), "MISSING\n");
  });
});
