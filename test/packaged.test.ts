/**
 * Packaged as a user gets it (issue 12, point 6): `npm pack`, installed offline (npm's cache, the
 * versions of our package-lock.json) into a fresh program directory outside the repo with its own
 * package.json and Pulumi.yaml and a TypeScript program importing "pulumi-nixos"; preview and up
 * against a lab host; the directory moved and reinstalled; refresh and destroy.
 */
import "./helpers/env";
import { describe, test, before, after } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "fs";
import * as path from "path";
import { Lab, LabHostInfo } from "../provider/lab/lab";
import { run } from "../provider/util/run";
import { canRunLab, tempDir, ROOT, STANDIN_NIXPKGS } from "./helpers/env";
import { engine, expectExit, stateResources, StackRef } from "./helpers/engine";
import { nixConfig } from "./helpers/stack";
import { writeUserProgram } from "./helpers/program-dir";
import { installOffline as install, packTarball, writeManifests } from "./helpers/tarball";

const skip = canRunLab ? false : "the lab needs root on Linux";

describe("pulumi-nixos packaged as a user gets it", { skip }, () => {
  let tmp = "";
  let lab: Lab;
  let h: LabHostInfo;
  let tarball = "";

  before(async () => {
    tmp = tempDir("packaged");
    tarball = await packTarball(tmp);
    lab = await Lab.up({ dir: path.join(tmp, "lab"), hosts: 1 });
    [h] = await lab.status();
    // As on a NixOS host booted with provider/nix/keys.nix: activation keeps the ramfs it finds.
    await lab.exec("host1", ["sh", "-c", "mount -t ramfs -o mode=0750 ramfs /run/keys && chgrp keys /run/keys"]);
  });
  after(async () => {
    await lab?.down();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  test("the tarball ships what a program needs, and nothing of the repo's tests", async () => {
    const list = await run(["tar", "-tzf", tarball]);
    const files = list.stdout.split("\n").filter(Boolean).map((f) => f.replace(/^package\//, ""));
    for (const f of ["package.json", "bin/pulumi-nixos.js", "dist/provider/index.js", "dist/provider/index.d.ts", "dist/provider/handlers/machine.js",
      "dist/provider/cli/main.js", "provider/nix/keys.nix", "provider/lab/host-init.sh", "dist/provider/state/passphrase.js", "test/fixtures/nixpkgs/default.nix"]) {
      assert.ok(files.includes(f), `${f} is in the package`);
    }
    assert.ok(!files.some((f) => /^(stacks|examples|dist\/examples|dist\/stacks|dist\/test)\/|\.test\.js$/.test(f)), "no stacks, examples or tests");
    assert.ok(files.includes("dist/provider/stack.js") && files.includes("dist/provider/stack.d.ts"), "the stack program is in the package");

    // The manifest a user installs: @pulumi/pulumi is the program's own (a peer range, one SDK
    // copy), the engine harness's gRPC is not shipped, the public API is what `exports` lists.
    const manifest = JSON.parse((await run(["tar", "-xzOf", tarball, "package/package.json"])).stdout);
    assert.deepEqual(Object.keys(manifest.peerDependencies), ["@pulumi/pulumi"]);
    assert.match(manifest.peerDependencies["@pulumi/pulumi"], /^>=3\.\d+\.\d+ <4$/);
    for (const dev of ["@pulumi/pulumi", "@grpc/grpc-js"]) assert.equal(manifest.dependencies[dev], undefined, `${dev} is not a dependency`);
    assert.equal(manifest.scripts.prepack, "npm run build --silent");
    assert.deepEqual(Object.keys(manifest.exports), [".", "./stack", "./package.json", "./dist/provider/handlers/*.js"]);
    const shipped = files.filter((f) => /^(dist\/provider|bin)\/.*\.js$/.test(f));
    // Not a dependency of ours: the Engine.Log client (util/engine-log.ts) uses the copy the SDK
    // itself depends on (resolved from @pulumi/pulumi's directory), never one of its own.
    const grpc = await run(["sh", "-c", `tar -xzOf ${tarball} ${shipped.map((f) => `package/${f}`).join(" ")} | grep -cE 'require\\("@grpc/grpc-js"\\)|from "@grpc/grpc-js"' || true`]);
    assert.equal(grpc.stdout.trim(), "0", "nothing shipped loads a @grpc/grpc-js of its own");
  });

  test("preview and up from a fresh program dir; moved and reinstalled: refresh and destroy", async () => {
    const prog = path.join(tmp, "user-program");
    fs.mkdirSync(prog);
    await writeManifests(prog, tarball, "packaged-user");
    await install(prog);
    assert.ok(fs.existsSync(path.join(prog, "node_modules/pulumi-nixos/dist/provider/handlers/machine.js")));
    writeUserProgram(prog, "packaged", "t", { host: h.address, keyFile: lab.privateKeyPath, nixpkgs: STANDIN_NIXPKGS }, nixConfig("box"));
    const s: StackRef = { cwd: prog, stack: "t", state: path.join(prog, "state.json") };
    const pv = await engine("preview", s);
    expectExit(pv, 0, "preview");
    assert.match(pv.stdout, /\+\s+pulumi-nodejs:dynamic\/nixos:Machine box create/);
    assert.match(pv.stdout, /\+\s+pulumi-nodejs:dynamic\/nixos:DeploymentKey app-token create/);
    const up = await engine("up", s);
    expectExit(up, 0, "up");
    let st = stateResources(s.state);
    assert.equal((await lab.exec("host1", ["readlink", "/run/current-system"])).stdout.trim(), st.box.outputs.systemPath);
    assert.equal((await lab.exec("host1", ["cat", "/run/keys/app-token"])).stdout, "token of the user program\n");
    assert.match(JSON.stringify(st.box.inputs.__provider), /user-program\/node_modules\/pulumi-nixos/, "state names the installation that wrote it (fallback)");

    // The program directory moves (another checkout, CI) and is installed again; the old one is gone.
    const moved = path.join(tmp, "moved-program");
    fs.renameSync(prog, moved);
    fs.rmSync(path.join(moved, "node_modules"), { recursive: true, force: true });
    await install(moved);
    const m: StackRef = { cwd: moved, stack: "t", state: path.join(moved, "state.json") };
    const rf = await engine("refresh", m);
    expectExit(rf, 0, "refresh after the move");
    assert.doesNotMatch(rf.stdout, /drift/);
    const ds = await engine("destroy", m);
    expectExit(ds, 0, "destroy after the move");
    st = stateResources(m.state);
    assert.deepEqual(Object.values(st).filter((r) => r.type.startsWith("pulumi-nodejs:dynamic")), []);
    assert.equal((await lab.exec("host1", ["sh", "-c", "test -e /run/keys/app-token && echo present || echo gone"])).stdout.trim(), "gone");
  });
});
