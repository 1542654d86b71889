/**
 * State survives a moved package (issue 12, point 2): Read and Delete run the provider stored in
 * state, which must find the handlers by package name from the program's directory, not by the
 * absolute path of the installation that wrote the state.
 */
import "./helpers/env";
import { describe, test, before, after } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "fs";
import * as path from "path";
import { Lab, LabHostInfo } from "../provider/lab/lab";
import { canRunLab, tempDir, STANDIN_NIXPKGS } from "./helpers/env";
import { engine, expectExit, stateResources, StackRef } from "./helpers/engine";
import { nixConfig } from "./helpers/stack";
import { copyPackage, linkNodeModules, writeUserConfig, writeUserProgram } from "./helpers/program-dir";

const skip = canRunLab ? false : "the lab needs root on Linux";

describe("state written by one installation works after the package moved", { skip }, () => {
  let tmp = "";
  let lab: Lab;
  let h: LabHostInfo;

  before(async () => {
    tmp = tempDir("moved");
    lab = await Lab.up({ dir: path.join(tmp, "lab"), hosts: 1 });
    [h] = await lab.status();
    // As on a NixOS host booted with provider/nix/keys.nix: activation keeps the ramfs it finds.
    await lab.exec("host1", ["sh", "-c", "mount -t ramfs -o mode=0750 ramfs /run/keys && chgrp keys /run/keys"]);
  });
  after(async () => {
    await lab?.down();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  test("up from checkout A; A copied to B and deleted; refresh, removing a key and destroy work", async () => {
    const a = copyPackage(path.join(tmp, "checkout-a"));
    const prog = path.join(tmp, "prog");
    const config = { host: h.address, keyFile: lab.privateKeyPath, nixpkgs: STANDIN_NIXPKGS };
    writeUserProgram(prog, "moved", "t", config, nixConfig("box"));
    linkNodeModules(prog, a);
    const s: StackRef = { cwd: prog, stack: "t", state: path.join(prog, "state.json") };
    expectExit(await engine("up", s), 0, "up from checkout A");
    const st = stateResources(s.state);
    assert.equal(st.box.outputs.generation, (h.generation ?? 0) + 1, "the first deploy after the lab's seeded generation");
    assert.match(JSON.stringify(st["app-token"].inputs.__provider), /checkout-a/, "state names the installation that wrote it (fallback)");
    assert.equal((await lab.exec("host1", ["cat", "/run/keys/app-token"])).stdout, "token of the user program\n");

    // The package moves (another checkout, another machine, an upgrade): A is gone.
    const b = path.join(tmp, "checkout-b");
    fs.cpSync(a, b, { recursive: true, verbatimSymlinks: true });
    fs.rmSync(a, { recursive: true, force: true });
    linkNodeModules(prog, b);

    const rf = await engine("refresh", s);
    expectExit(rf, 0, "refresh after the move");
    assert.doesNotMatch(rf.stdout + rf.stderr, /MODULE_NOT_FOUND|Cannot find module/);
    // Removing the key runs its stored provider's delete: the file goes.
    writeUserConfig(prog, "moved", "t", { ...config, withKey: false });
    const up = await engine("up", s);
    expectExit(up, 0, "up removing the key");
    assert.match(up.stdout, /- 1 deleted/);
    assert.equal((await lab.exec("host1", ["sh", "-c", "test -e /run/keys/app-token && echo present || echo gone"])).stdout.trim(), "gone");
    const ds = await engine("destroy", s);
    expectExit(ds, 0, "destroy after the move");
    assert.deepEqual(Object.values(stateResources(s.state)).filter((r) => r.type.startsWith("pulumi-nodejs:dynamic")), []);
  });
});
