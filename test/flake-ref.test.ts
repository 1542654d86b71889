/**
 * Issue 24: local flakes are evaluated as nixos-rebuild evaluates them (Nix's parsing of a bare
 * path): `git+file:` for a git work tree, so an untracked file (a secret left beside flake.nix)
 * never reaches the world-readable store and `self.rev` is set; `path:` outside git.
 */
import "./helpers/env";
import { test, after } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "fs";
import * as path from "path";
import { tempDir } from "./helpers/env";
import { evaluateSystem, flakeRef } from "../provider/nix/evaluate";
import { realise } from "../provider/nix/closure";
import { run } from "../provider/util/run";

const tmps: string[] = [];
after(() => { for (const t of tmps) fs.rmSync(t, { recursive: true, force: true }); });

// A flake whose "toplevel" lists the files of its own source (self) and its revision.
const FLAKE = `{
  outputs = { self }: {
    nixosConfigurations.probe.config.system.build.toplevel = derivation {
      name = "flake-probe"; system = builtins.currentSystem; builder = "/bin/sh";
      PATH = "/usr/bin:/bin"; src = self; rev = self.rev or "none";
      args = [ "-c" "ls -A $src | grep -v '^.git$' > $out; echo rev=$rev >> $out" ];
    };
  };
}
`;
const SECRET = `untracked-secret-${process.pid}-${Date.now()}`;

/** A flake in a fresh directory outside any git work tree. */
function flakeDir(): string {
  const dir = tempDir("flakeref");
  tmps.push(dir);
  fs.writeFileSync(path.join(dir, "flake.nix"), FLAKE);
  return dir;
}

async function listing(dir: string): Promise<string> {
  const sys = await evaluateSystem(`probe-${path.basename(dir)}`, { flake: `${dir}#probe` });
  return fs.readFileSync(await realise(sys.drvPath), "utf8");
}

test("a git work tree's flake is git+file: (tracked files only, self.rev set); elsewhere path:", async () => {
  const plain = flakeDir();
  assert.equal(flakeRef(plain), `path:${plain}`);

  const repo = tempDir("flakerepo");
  tmps.push(repo);
  fs.writeFileSync(path.join(repo, "flake.nix"), FLAKE);
  const g = (...a: string[]) => run(["git", "-C", repo, "-c", "user.name=t", "-c", "user.email=t@t", ...a]);
  await g("init", "-q");
  await g("add", "flake.nix");
  await g("commit", "-qm", "flake");
  // Left beside flake.nix, never added: must not be copied into the store.
  fs.writeFileSync(path.join(repo, "secret.txt"), SECRET);
  fs.writeFileSync(path.join(plain, "secret.txt"), SECRET);
  assert.equal(flakeRef(repo), `git+file://${repo}`);
  fs.mkdirSync(path.join(repo, "sub"));
  assert.equal(flakeRef(path.join(repo, "sub")), `git+file://${repo}?dir=sub`);

  const inGit = await listing(repo);
  const rev = (await g("rev-parse", "HEAD")).stdout.trim();
  assert.deepEqual(inGit.trim().split("\n"), ["flake.nix", `rev=${rev}`]);
  // The path: flake copies everything (as Nix does for a directory outside git).
  const outside = await listing(plain);
  assert.deepEqual(outside.trim().split("\n"), ["flake.nix", "secret.txt", "rev=none"]);

  // Only the path: flake's copy holds the secret: the git one's source has no such file.
  const sources = (await run(["sh", "-c", `grep -rlF "$1" /nix/store/*-source 2>/dev/null || true`, "sh", SECRET])).stdout.trim().split("\n").filter(Boolean);
  assert.equal(sources.length, 1, sources.join("\n"));
  const gitSource = JSON.parse((await run(["nix-instantiate", "--eval", "--json", "--option", "extra-experimental-features", "nix-command flakes", "-E",
    `(builtins.getFlake "git+file://${repo}").outPath`])).stdout) as string;
  assert.ok(!fs.existsSync(path.join(gitSource, "secret.txt")));
  assert.ok(fs.existsSync(path.join(gitSource, "flake.nix")));
});
