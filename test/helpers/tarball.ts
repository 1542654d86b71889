/**
 * pulumi-nixos as a user installs it: the `npm pack` tarball, installed offline (npm's cache, the
 * versions of our package-lock.json) into a program directory outside the repo.
 */
import * as assert from "node:assert/strict";
import * as crypto from "crypto";
import * as fs from "fs";
import * as path from "path";
import { run } from "../../provider/util/run";
import { ROOT } from "./env";

/** What a user program depends on besides pulumi-nixos (its peer @pulumi/pulumi, TypeScript), at our lockfile's versions. */
export const PEERS = ["@pulumi/pulumi", "typescript", "ts-node", "@types/node"];

/**
 * `npm pack` of the repo into `dir`; returns the tarball's path. `--ignore-scripts`: `npm test`
 * has just built dist/, and prepack's rebuild would rewrite dist/ under the running tests.
 */
export async function packTarball(dir: string): Promise<string> {
  const packed = await run(["npm", "pack", "--json", "--ignore-scripts", "--pack-destination", dir], { cwd: ROOT, timeoutMs: 120_000 });
  return path.join(dir, JSON.parse(packed.stdout)[0].filename);
}

/**
 * package.json + package-lock.json of a user program named `name`: the tarball and PEERS, every
 * other entry taken from our lockfile, so `npm ci --offline` installs from npm's cache (filled by
 * our own `npm ci`) with no network at all; npm drops what nothing needs. Our lockfile records no
 * `resolved` URLs; each entry gets its registry tarball URL, so npm finds the tarball in the cache
 * by its integrity without asking for the package's metadata.
 */
export async function writeManifests(dir: string, tarball: string, name: string): Promise<void> {
  const registry = (await run(["npm", "config", "get", "registry"])).stdout.trim().replace(/\/?$/, "/");
  const lock = JSON.parse(fs.readFileSync(path.join(ROOT, "package-lock.json"), "utf8"));
  const ours = JSON.parse(fs.readFileSync(path.join(ROOT, "package.json"), "utf8"));
  const deps: Record<string, string> = { "pulumi-nixos": `file:${tarball}` };
  for (const p of PEERS) deps[p] = lock.packages[`node_modules/${p}`].version;
  const packages: Record<string, unknown> = { "": { name, version: "1.0.0", dependencies: deps } };
  for (const [k, v] of Object.entries<Record<string, unknown>>(lock.packages)) {
    if (!k) continue;
    const { dev: _dev, devOptional: _devOptional, ...rest } = v;
    if (!rest.resolved && !rest.link && !rest.inBundle && rest.version) {
      const n = String(rest.name ?? k.slice(k.lastIndexOf("node_modules/") + "node_modules/".length));
      rest.resolved = `${registry}${n}/-/${n.split("/").pop()}-${rest.version}.tgz`;
    }
    packages[k] = rest;
  }
  packages["node_modules/pulumi-nixos"] = {
    version: ours.version, resolved: `file:${tarball}`,
    integrity: `sha512-${crypto.createHash("sha512").update(fs.readFileSync(tarball)).digest("base64")}`,
    dependencies: ours.dependencies, peerDependencies: ours.peerDependencies, bin: ours.bin, engines: ours.engines,
  };
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, "package.json"), JSON.stringify({ name, version: "1.0.0", private: true, dependencies: deps }, null, 2));
  fs.writeFileSync(path.join(dir, "package-lock.json"), JSON.stringify({ name, version: "1.0.0", lockfileVersion: 3, requires: true, packages }, null, 2));
}

/** `npm ci --offline`: from the cache only; a missing package fails instead of reaching a network. */
export async function installOffline(dir: string): Promise<void> {
  const r = await run(["npm", "ci", "--offline", "--no-audit", "--no-fund"], { cwd: dir, allowFailure: true, timeoutMs: 300_000 });
  assert.equal(r.code, 0, `npm ci --offline in ${dir}:\n${r.stdout}\n${r.stderr}`);
}
