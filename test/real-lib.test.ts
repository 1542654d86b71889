/**
 * Issue 24: the stand-in nixpkgs runs on the real nixpkgs lib (../shared/nixpkgs-lib, or
 * $PULUMI_NIXOS_NIXPKGS_LIB) and its NixOS declares what NixOS declares, with `_module.check`:
 * what NixOS rejects (an undeclared option, a second declaration, conflicting definitions) is
 * rejected here, and pulumi-nixos's keys module and NixOps options evaluate beside NixOS's own.
 */
import "./helpers/env";
import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "fs";
import * as path from "path";
import { ROOT, STANDIN_NIXPKGS, tempDir } from "./helpers/env";
import { findNixpkgsLib, NIXPKGS_LIB_VAR } from "../provider/nix/nixpkgs-lib";
import { networkExpr } from "../provider/nix/network-expr";
import { run } from "../provider/util/run";

const KEYS = path.join(ROOT, "provider/nix/keys.nix");
const DEPLOYMENT = path.join(ROOT, "provider/nix/nixops/deployment.nix");

/** nix-instantiate --eval --strict --json of an expression; rejects with Nix's message. */
async function evalJson(expr: string, env: NodeJS.ProcessEnv = process.env): Promise<unknown> {
  const r = await run(["nix-instantiate", "--eval", "--strict", "--json", "-E", expr], { env, allowFailure: true, timeoutMs: 120_000 });
  if (r.code !== 0) throw new Error(r.stderr);
  return JSON.parse(r.stdout);
}
const config = (modules: string) => `(import ${STANDIN_NIXPKGS}/nixos/lib/eval-config.nix { modules = [ (${modules}) ]; }).config`;

test("the stand-in's lib is the real nixpkgs lib (its module system), found as the README says", async () => {
  const lib = findNixpkgsLib();
  assert.equal(process.env[NIXPKGS_LIB_VAR], lib);
  assert.ok(fs.existsSync(path.join(lib, "modules.nix")));
  const version = await evalJson(`(import ${STANDIN_NIXPKGS} { }).lib.version`);
  assert.equal(version, await evalJson(`(import ${lib}).version`));
  // No variable: <root>/../shared/nixpkgs-lib/lib (this checkout has it beside).
  const { [NIXPKGS_LIB_VAR]: _, ...bare } = process.env;
  assert.equal(findNixpkgsLib({ ...bare, NIX_PATH: "" }), path.resolve(ROOT, "../shared/nixpkgs-lib/lib"));
  // A copy of the stand-in outside the project (as in the store): the variable or NIX_PATH's real nixpkgs.
  const copy = tempDir("standin");
  try {
    fs.cpSync(STANDIN_NIXPKGS, copy, { recursive: true });
    await assert.rejects(evalJson(`(import ${copy} { }).lib.version`, { ...bare, NIX_PATH: "" }),
      /stand-in nixpkgs needs the real nixpkgs lib and found none: set PULUMI_NIXOS_NIXPKGS_LIB/);
    assert.equal(await evalJson(`(import ${copy} { }).lib.version`, { ...bare, NIX_PATH: `nixpkgs=${path.dirname(lib)}` }), version);
    assert.equal(await evalJson(`(import ${copy} { }).lib.version`), version);
    await assert.rejects(evalJson(`(import ${copy} { }).lib.version`, { ...bare, [NIXPKGS_LIB_VAR]: copy }), /is not a nixpkgs lib directory/);
  } finally {
    fs.rmSync(copy, { recursive: true, force: true });
  }
  assert.throws(() => findNixpkgsLib({ [NIXPKGS_LIB_VAR]: "/nonexistent" }), /not a nixpkgs lib directory/);
});

test("what NixOS rejects is rejected: undeclared option, second declaration, conflicting definitions", async () => {
  await assert.rejects(evalJson(`${config(`{ services.nosuchservice.enable = true; }`)}.system.build.toplevel.drvPath`),
    /The option `services.nosuchservice' does not exist/);
  await assert.rejects(evalJson(`${config(`{ lib, ... }: { options.services.openssh.ports = lib.mkOption { default = [ 2222 ]; }; }`)}.services.openssh.ports`),
    /The option `services.openssh.ports' in .* is already declared in/);
  await assert.rejects(evalJson(`${config(`{ systemd.targets.keys.description = "pulumi-nixos keys"; }`)}.systemd.targets.keys.description`),
    /The option `systemd.targets.keys.description' has conflicting definition values/);
  await assert.rejects(evalJson(`${config(`{ networking.hostName = "not a host name"; }`)}.networking.hostName`),
    /is not of type/);
});

test("NixOS's own definitions: keys.target, the keys group's gid, openssh ports and authorized keys", async () => {
  const c = await evalJson(`let c = ${config(`{ users.users.root.openssh.authorizedKeys.keys = [ "ssh-ed25519 AAAA k" ]; }`)}; in {
    keysTarget = c.systemd.targets.keys.description; keysGid = c.users.groups.keys.gid;
    ports = c.services.openssh.ports; authorized = c.users.users.root.openssh.authorizedKeys.keys; }`);
  assert.deepEqual(c, { keysTarget: "Security Keys", keysGid: 96, ports: [22], authorized: ["ssh-ed25519 AAAA k"] });
});

test("keys.nix and the NixOps options evaluate beside NixOS's declarations", async () => {
  const c = await evalJson(`let
      eval = ports: (import ${STANDIN_NIXPKGS}/nixos/lib/eval-config.nix {
        modules = [ ${KEYS} ${DEPLOYMENT} {
          services.openssh.ports = ports;
          deployment.keys.db.text = "x";
          deployment.keys.other = { name = "renamed"; destDir = "/var/keys"; keyFile = /tmp/k; };
        } ];
        specialArgs = { name = "m"; };
      }).config;
      a = eval [ 2222 22 ]; b = eval [ 22 ];
    in {
      dbPath = a.deployment.keys.db.path; otherPath = a.deployment.keys.other.path; keyFile = a.deployment.keys.other.keyFile;
      portA = a.deployment.targetPort; portB = b.deployment.targetPort;
      keysTarget = a.systemd.targets.keys.description;
      units = builtins.filter (n: builtins.match ".*-key" n != null) (builtins.attrNames a.systemd.services);
      toplevel = a.system.build.toplevel.drvPath != "";
    }`);
  assert.deepEqual(c, {
    dbPath: "/run/keys/db", otherPath: "/var/keys/renamed", keyFile: "/tmp/k",
    portA: 2222, portB: 22, keysTarget: "Security Keys", units: ["db-key", "other-key"], toplevel: true,
  });
  // path is read-only, as in NixOps.
  await assert.rejects(evalJson(`(import ${STANDIN_NIXPKGS}/nixos/lib/eval-config.nix { modules = [ ${KEYS} { deployment.keys.db.path = "/x"; } ]; }).config.deployment.keys.db.path`),
    /read-only/);
});

test("the seed's network and both NixOps examples evaluate through the real lib", async () => {
  const seed = path.join(ROOT, "examples/nixops-network-nix/network.nix");
  const info = await evalJson(`${networkExpr({ files: [seed] })}.info.machines`, { ...process.env, NIX_PATH: `nixpkgs=${STANDIN_NIXPKGS}` }) as
    Record<string, { targetPort: number; keys: Record<string, { path?: string; destDir: string; name: string }> }>;
  assert.deepEqual(Object.keys(info).sort(), ["heron", "hound", "pigeon", "talon", "tiger"]);
  assert.equal(info.heron.targetPort, 22);
  assert.deepEqual(Object.keys(info.heron.keys).sort(), ["thedroneely_cockpit_api_token", "thedroneely_pgsql_database_password", "thedroneely_ssh_known_hosts"]);
  const drvs = await evalJson(`builtins.mapAttrs (n: m: m.config.system.build.toplevel.drvPath) ${networkExpr({ files: [seed] })}.nodes`,
    { ...process.env, NIX_PATH: `nixpkgs=${STANDIN_NIXPKGS}` }) as Record<string, string>;
  for (const d of Object.values(drvs)) assert.match(d, /nixos-system-.*\.drv$/);
  // The YAML example's machines: their imports, with the keys module (as evaluate.ts adds it).
  const yamlDir = path.join(ROOT, "examples/nixops-network");
  for (const m of ["heron", "talon", "tiger", "hound", "pigeon"]) {
    const drv = await evalJson(`(import ${STANDIN_NIXPKGS}/nixos { configuration = { imports = [ ${yamlDir}/hardware/${m}.nix ${yamlDir}/configuration/${m}.nix ${KEYS} ];
      deployment.keys.thedroneely_cockpit_api_token = { user = "thedroneely"; }; }; }).system.drvPath`);
    assert.match(drv as string, new RegExp(`nixos-system-${m}-.*\\.drv$`));
  }
});
