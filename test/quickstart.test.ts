/**
 * Issue 19, point 7 / issue 29: README's Quick start, verbatim, on a fresh `git clone` of the repo
 * (the committed tree, as a new user gets it, no node_modules). The first command installs the npm
 * dependencies itself (scripts/setup.sh → npm ci, offline from npm's cache: this machine has
 * installed the same lockfile); `npm test` runs with PULUMI_NIXOS_TESTS naming one cheap test
 * file: the command, its setup and build are what is proven, not the suite within the suite.
 */
import "./helpers/env";
import { describe, test, after } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "fs";
import * as path from "path";
import { run } from "../provider/util/run";
import { canRunLab, tempDir, ROOT } from "./helpers/env";

const skip = canRunLab ? false : "the demo needs root on Linux (the lab)";

/** The shell commands of README's Quick start block, comments removed. */
export function quickStartCommands(readme: string): string[] {
  const section = readme.slice(readme.indexOf("## Quick start"));
  const block = /```sh\n([\s\S]*?)```/.exec(section)?.[1] ?? "";
  return block.split("\n").map((l) => l.replace(/\s+#.*$/, "").trim()).filter(Boolean);
}

/**
 * Our lockfile records no `resolved` URLs, so npm asks the registry for a package's metadata
 * before it takes the tarball; offline, that needs metadata in the cache, which a dependency
 * installed another way lacks. Each entry gets its registry tarball URL (integrity unchanged):
 * npm then takes the tarball from the cache by its integrity (as test/packaged.test.ts does).
 */
function offlineLockfile(dir: string, registry: string): void {
  const file = path.join(dir, "package-lock.json");
  const lock = JSON.parse(fs.readFileSync(file, "utf8"));
  const base = registry.endsWith("/") ? registry : `${registry}/`;
  for (const [k, v] of Object.entries<Record<string, unknown>>(lock.packages)) {
    if (!k || v.resolved || v.link || v.inBundle || !v.version) continue;
    const name = String(v.name ?? k.slice(k.lastIndexOf("node_modules/") + "node_modules/".length));
    v.resolved = `${base}${name}/-/${name.split("/").pop()}-${v.version}.tgz`;
  }
  fs.writeFileSync(file, JSON.stringify(lock, null, 2) + "\n");
}

describe("README quick start on a fresh clone", { skip }, () => {
  const tmp = tempDir("quickstart");
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  test("npm run demo, npm test as the README says them, the npm dependencies installed by the first", async () => {
    const clone = path.join(tmp, "clone");
    await run(["git", "clone", "-q", ROOT, clone]);
    const commands = quickStartCommands(fs.readFileSync(path.join(clone, "README.md"), "utf8"));
    offlineLockfile(clone, (await run(["npm", "config", "get", "registry"])).stdout.trim());
    assert.deepEqual(commands, ["npm run demo", "npm test"], "the README's quick start (update this test with it)");
    assert.ok(!fs.existsSync(path.join(clone, "node_modules")), "a fresh clone has no node_modules");
    const env: NodeJS.ProcessEnv = { ...process.env, npm_config_offline: "true", npm_config_audit: "false", npm_config_fund: "false", PULUMI_NIXOS_TESTS: "dist/test/flow-control.test.js" };
    // Run inside `node --test`: the inner run must not report to this one.
    delete env.NODE_TEST_CONTEXT;
    const out: Record<string, string> = {};
    for (const cmd of commands) {
      const r = await run(["sh", "-c", cmd], { cwd: clone, env, allowFailure: true, timeoutMs: 900_000 });
      out[cmd] = r.stdout + r.stderr;
      assert.equal(r.code, 0, `${cmd} in a fresh clone:\n${out[cmd].slice(-4000)}`);
    }
    assert.ok(fs.existsSync(path.join(clone, "node_modules/@pulumi/pulumi/package.json")), "the lockfile is installed");
    const demo = out["npm run demo"];
    assert.match(demo, /^pulumi-nixos setup: installing the npm dependencies \(npm ci: /m, "npm run demo installed them");
    assert.doesNotMatch(out["npm test"], /installing the npm dependencies/, "npm test found them installed");
    assert.match(demo, /^demo: using the (engine harness|real pulumi CLI)/m);
    assert.match(demo, /^=== pulumi preview: exactly one update$/m);
    assert.match(demo, /~ 1 to update/);
    assert.match(demo, /^demo: tearing the lab down$/m);
    assert.doesNotMatch(demo, /pulumi-nixos setup: installing .*\(apt-get\)/, "no system package missing on this machine: none installed");
    assert.match(out["npm test"], /^# pass [1-9]\d*$/m);
    assert.match(out["npm test"], /^# fail 0$/m);
  });

  test("scripts/setup.sh names what is missing when it cannot install it", async () => {
    // A PATH without dpkg (a non-Debian system): it checks the commands and names the missing ones.
    const bin = path.join(tmp, "bin");
    fs.mkdirSync(bin, { recursive: true });
    for (const c of ["uname", "id", "sh"]) fs.symlinkSync((await run(["sh", "-c", `command -v ${c}`])).stdout.trim(), path.join(bin, c));
    const r = await run(["/bin/sh", path.join(ROOT, "scripts/setup.sh")], { allowFailure: true, env: { PATH: bin } });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^pulumi-nixos setup: missing commands: nix-store ssh ssh-keygen ip sudo xz zstd systemd-nspawn inotifywait nft \(install them with your package manager; Debian packages: nix-bin openssh-server/m);
    // With dpkg and everything installed (this machine): silent, exit 0.
    const ok = await run(["sh", path.join(ROOT, "scripts/setup.sh")], { allowFailure: true });
    assert.deepEqual([ok.code, ok.stdout, ok.stderr], [0, "", ""]);
  });
});
