import "./helpers/env";
import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "fs";
import * as path from "path";
import { run } from "../provider/util/run";
import { Lab } from "../provider/lab/lab";
import { canRunLab, tempDir, ROOT, STANDIN_NIXPKGS } from "./helpers/env";

const FIX = path.join(ROOT, "test/fixtures");

function writeConfig(dir: string, name: string, body: string): string {
  const f = path.join(dir, `${name}.nix`);
  fs.writeFileSync(f, body);
  return f;
}

test("fixtures: <nixpkgs/nixos> builds a NixOS-shaped toplevel both ways", async () => {
  const dir = tempDir("fix");
  const cfg = writeConfig(dir, "m", `{ config, lib, pkgs, ... }: {
    imports = [ ./extra.nix ];
    networking.hostName = "m1";
    environment.etc."motd".text = "hi\\n";
    test.closure = { paths = 4; sizeKB = 8; };
  }`);
  writeConfig(dir, "extra", `{ ... }: { environment.etc."extra.conf".text = "from import\\n"; }`);
  const built = (await run(["nix-build", "<nixpkgs/nixos>", "-A", "system", "-I", `nixos-config=${cfg}`, "-I", `nixpkgs=${STANDIN_NIXPKGS}`, "--no-out-link"])).stdout.trim();
  const evaluated = JSON.parse((await run(["nix-instantiate", "--eval", "--json", "-I", `nixpkgs=${STANDIN_NIXPKGS}`, "-E",
    `(import <nixpkgs/nixos> { configuration = ${cfg}; }).system.outPath`])).stdout);
  assert.equal(built, evaluated, "both forms give the same toplevel");
  for (const f of ["bin/switch-to-configuration", "activate", "bin/nixos-version", "nixos-version", "etc/motd", "etc/extra.conf"]) {
    assert.ok(fs.existsSync(path.join(built, f)), f);
  }
  assert.equal(fs.readFileSync(path.join(built, "etc/extra.conf"), "utf8"), "from import\n");
  assert.match(built, /nixos-system-m1-/);
  const closure = (await run(["nix-store", "-qR", built])).stdout.trim().split("\n");
  assert.equal(closure.filter((p) => p.includes("filler-")).length, 4, "closure sized by test.closure.paths");
  const size = Number((await run(["nix-store", "-q", "--size", closure.find((p) => p.includes("filler-"))!])).stdout);
  assert.ok(size >= 8 * 1024, `filler path holds sizeKB (${size})`);
  const usage = await run([path.join(built, "bin/switch-to-configuration"), "bogus"], { allowFailure: true });
  assert.equal(usage.code, 1);
  // This machine is not NixOS: refused as both real implementations refuse it (no /etc/NIXOS, no ID=nixos).
  const dry = await run([path.join(built, "bin/switch-to-configuration"), "dry-activate"], { allowFailure: true });
  assert.equal(dry.code, 2);
  assert.match(dry.stderr, /^This is not a NixOS installation!$/m);
});

test("fixtures: the flake exposes nixosConfigurations.<name>.config.system.build.toplevel", async () => {
  // --impure: the fixture flake's stand-in reads $PULUMI_NIXOS_NIXPKGS_LIB (the real nixpkgs lib
  // lives outside the flake, which pure evaluation forbids); the deployer evaluates flakes with
  // builtins.getFlake in an impure nix-instantiate, where the same holds.
  const out = await run(["nix", "eval", "--impure", "--raw", `path:${FIX}#nixosConfigurations.alpha.config.system.build.toplevel.outPath`]);
  assert.match(out.stdout, /^\/nix\/store\/[a-z0-9]{32}-nixos-system-alpha-/);
});

test("fixtures: activation on a lab host — switch, test, boot and exit codes 1 and 4", { skip: canRunLab ? false : "needs root" }, async () => {
  const dir = tempDir("fixlab");
  const lab = await Lab.up({ dir: path.join(dir, "lab"), hosts: 1 });
  try {
    const build = async (name: string, extra: string) => (await run(["nix-build", `${STANDIN_NIXPKGS}/nixos`, "-A", "system", "--no-out-link",
      "--arg", "configuration", writeConfig(dir, name, `{ ... }: { networking.hostName = "${name}"; environment.etc."who".text = "${name}\\n"; ${extra} }`)])).stdout.trim();
    const ok = await build("good", "");
    const fail1 = await build("fail1", "test.activation.exitCode = 1;");
    const fail4 = await build("fail4", `test.activation.exitCode = 4; test.activation.failedUnits = [ "nginx.service" ];`);
    for (const p of [ok, fail1, fail4]) {
      const nar = await run(["sh", "-c", `nix-store --export $(nix-store -qR ${p}) > ${dir}/c.nar`]);
      assert.equal(nar.code, 0);
      // The host has its own /tmp: the export goes in through stdin.
      await lab.exec("host1", ["sh", "-c", "nix-store --import >/dev/null"], { input: fs.readFileSync(`${dir}/c.nar`) });
    }
    const sw = (p: string, action: string) => lab.exec("host1", ["sh", "-c", `nix-env -p /nix/var/nix/profiles/system --set ${p} && ${p}/bin/switch-to-configuration ${action}`], { allowFailure: true });
    const r = await sw(ok, "switch");
    assert.equal(r.code, 0, r.stderr);
    const cur = await lab.exec("host1", ["sh", "-c", "readlink /run/current-system; cat /etc/who"]);
    assert.equal(cur.stdout, `${ok}\ngood\n`);
    const r1 = await sw(fail1, "switch");
    assert.equal(r1.code, 1);
    assert.equal((await lab.exec("host1", ["readlink", "/run/current-system"])).stdout.trim(), ok, "exit 1 does not activate");
    const r4 = await sw(fail4, "switch");
    assert.equal(r4.code, 4);
    assert.match(r4.stderr, /the following units failed: nginx.service/);
    assert.equal((await lab.exec("host1", ["readlink", "/run/current-system"])).stdout.trim(), fail4, "exit 4 still activates");
    // `boot` makes ok the boot default (its boot loader step), `test` activates fail4 without
    // changing it; a reboot returns to ok.
    await lab.exec("host1", ["sh", "-c", `nix-env -p /nix/var/nix/profiles/system --set ${ok} && ${ok}/bin/switch-to-configuration boot && { ${fail4}/bin/switch-to-configuration test || true; }`]);
    assert.equal(lab.bootDefault("host1"), ok);
    assert.equal((await lab.exec("host1", ["readlink", "/run/current-system"])).stdout.trim(), fail4);
    await lab.reboot("host1");
    assert.equal((await lab.exec("host1", ["readlink", "/run/current-system"])).stdout.trim(), ok);
  } finally {
    await lab.down();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("keys.nix: evaluates with the stand-in: group, ramfs activation, one <name>-key.service per key", async () => {
  const keysModule = path.join(ROOT, "provider/nix/keys.nix");
  const expr = `let c = (import ${STANDIN_NIXPKGS}/nixos { configuration = { imports = [ ${keysModule} ];
    deployment.keys.db-pass = { user = "postgres"; group = "postgres"; permissions = "0640"; };
    deployment.keys.api = { }; }; }).config;
  in { services = builtins.attrNames c.systemd.services; groups = builtins.attrNames c.users.groups;
       keysGid = c.users.groups.keys.gid;
       activation = c.system.activationScripts.pulumi-nixos-keys.text;
       apiScript = c.systemd.services.api-key.script; }`;
  const out = JSON.parse((await run(["nix-instantiate", "--eval", "--strict", "--json", "-E", expr])).stdout);
  // Beside NixOS's own units (sshd) and groups (root, wheel, users; keys with NixOS's gid 96).
  assert.deepEqual(out.services.filter((s: string) => s.endsWith("-key")), ["api-key", "db-pass-key"]);
  assert.ok(out.groups.includes("keys"), out.groups.join(" "));
  assert.equal(out.keysGid, 96);
  assert.match(out.activation, /mount -t ramfs -o mode=0750 ramfs \/run\/keys/);
  assert.match(out.activation, /chown root:keys \/run\/keys/);
  assert.match(out.apiScript, /inotifywait -qq -e delete_self "\/run\/keys\/api"/);
});
