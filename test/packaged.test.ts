/**
 * Packaged as a user gets it (issue 12, point 6): `npm pack`, installed offline (npm's cache, the
 * versions of our package-lock.json) into a fresh program directory outside the repo with its own
 * package.json and Pulumi.yaml and a TypeScript program importing "pulumi-nixos"; preview and up
 * against a lab host; the directory moved and reinstalled; refresh and destroy.
 */
import "./helpers/env";
import { describe, test, before, after } from "node:test";
import * as assert from "node:assert/strict";
import * as crypto from "crypto";
import * as fs from "fs";
import * as path from "path";
import { Lab, LabHostInfo } from "../provider/lab/lab";
import { run } from "../provider/util/run";
import { canRunLab, tempDir, ROOT, STANDIN_NIXPKGS } from "./helpers/env";
import { engine, expectExit, stateResources, StackRef } from "./helpers/engine";
import { nixConfig } from "./helpers/stack";
import { writeUserProgram } from "./helpers/program-dir";

const skip = canRunLab ? false : "the lab needs root on Linux";

/** What the user program depends on besides pulumi-nixos, at our lockfile's versions. */
const PEERS = ["@pulumi/pulumi", "typescript", "ts-node"];

/**
 * package.json + package-lock.json of the user program: the tarball and PEERS, every other entry
 * taken from our lockfile, so `npm ci --offline` installs from npm's cache (filled by our own
 * `npm ci`) with no network at all; npm drops what nothing needs. Our lockfile records no
 * `resolved` URLs; each entry gets its registry tarball URL, so npm finds the tarball in the cache
 * by its integrity without asking for the package's metadata.
 */
function writeManifests(dir: string, tarball: string, registry: string): void {
  const lock = JSON.parse(fs.readFileSync(path.join(ROOT, "package-lock.json"), "utf8"));
  const ours = JSON.parse(fs.readFileSync(path.join(ROOT, "package.json"), "utf8"));
  const deps: Record<string, string> = { "pulumi-nixos": `file:${tarball}` };
  for (const p of PEERS) deps[p] = lock.packages[`node_modules/${p}`].version;
  const packages: Record<string, unknown> = { "": { name: "packaged-user", version: "1.0.0", dependencies: deps } };
  for (const [k, v] of Object.entries<Record<string, unknown>>(lock.packages)) {
    if (!k) continue;
    const { dev: _dev, devOptional: _devOptional, ...rest } = v;
    if (!rest.resolved && !rest.link && !rest.inBundle && rest.version) {
      const name = String(rest.name ?? k.slice(k.lastIndexOf("node_modules/") + "node_modules/".length));
      rest.resolved = `${registry}${name}/-/${name.split("/").pop()}-${rest.version}.tgz`;
    }
    packages[k] = rest;
  }
  packages["node_modules/pulumi-nixos"] = {
    version: ours.version, resolved: `file:${tarball}`,
    integrity: `sha512-${crypto.createHash("sha512").update(fs.readFileSync(tarball)).digest("base64")}`,
    dependencies: ours.dependencies, bin: ours.bin, engines: ours.engines,
  };
  fs.writeFileSync(path.join(dir, "package.json"), JSON.stringify({ name: "packaged-user", version: "1.0.0", private: true, dependencies: deps }, null, 2));
  fs.writeFileSync(path.join(dir, "package-lock.json"), JSON.stringify({ name: "packaged-user", version: "1.0.0", lockfileVersion: 3, requires: true, packages }, null, 2));
}

/** `npm ci --offline`: from the cache only; a missing package fails instead of reaching a network. */
async function install(dir: string): Promise<void> {
  const r = await run(["npm", "ci", "--offline", "--no-audit", "--no-fund"], { cwd: dir, allowFailure: true, timeoutMs: 300_000 });
  assert.equal(r.code, 0, `npm ci --offline in ${dir}:\n${r.stdout}\n${r.stderr}`);
}

describe("pulumi-nixos packaged as a user gets it", { skip }, () => {
  let tmp = "";
  let lab: Lab;
  let h: LabHostInfo;
  let tarball = "";

  before(async () => {
    tmp = tempDir("packaged");
    const packed = await run(["npm", "pack", "--json", "--pack-destination", tmp], { cwd: ROOT, timeoutMs: 120_000 });
    tarball = path.join(tmp, JSON.parse(packed.stdout)[0].filename);
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
  });

  test("preview and up from a fresh program dir; moved and reinstalled: refresh and destroy", async () => {
    const prog = path.join(tmp, "user-program");
    fs.mkdirSync(prog);
    const registry = (await run(["npm", "config", "get", "registry"])).stdout.trim().replace(/\/?$/, "/");
    writeManifests(prog, tarball, registry);
    await install(prog);
    assert.ok(fs.existsSync(path.join(prog, "node_modules/pulumi-nixos/dist/provider/handlers/machine.js")));
    writeUserProgram(prog, "packaged", "t", { host: h.address, keyFile: lab.privateKeyPath, nixpkgs: STANDIN_NIXPKGS }, nixConfig("box"));
    const s: StackRef = { cwd: prog, stack: "t", state: path.join(prog, "state.json") };
    const pv = await engine("preview", s);
    expectExit(pv, 0, "preview");
    assert.match(pv.stdout, /\+\s+pulumi-nodejs:dynamic:Resource box create/);
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
    assert.deepEqual(Object.values(st).filter((r) => r.type === "pulumi-nodejs:dynamic:Resource"), []);
    assert.equal((await lab.exec("host1", ["sh", "-c", "test -e /run/keys/app-token && echo present || echo gone"])).stdout.trim(), "gone");
  });
});
