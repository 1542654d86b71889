import "./helpers/env";
import { describe, test, before, after } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "fs";
import * as path from "path";
import { Lab } from "../provider/lab/lab";
import { canRunLab, tempDir, ROOT } from "./helpers/env";
import { engine, expectExit, StackRef } from "./helpers/engine";
import { writeStack, TestMachine } from "./helpers/stack";

const skip = canRunLab ? false : "the lab needs root on Linux";

// The deploy creates user newsvc and hands it its key; `gated` is ordered after keys.target
// (NixOps style), so at boot it waits for the keys' uploads (/run/keys/done).
const CONFIG = `{ ... }: {
  networking.hostName = "owned";
  users.groups.newsvc = { };
  users.users.newsvc = { isSystemUser = true; group = "newsvc"; extraGroups = [ "keys" ]; };
  systemd.services.gated = {
    wantedBy = [ "multi-user.target" ];
    wants = [ "keys.target" ]; after = [ "keys.target" ];
    script = "echo \\"started: $(stat -c '%U:%G %a' /run/keys/svc 2>/dev/null || echo no key)\\" >> /run/gated.log; exec sleep infinity";
  };
}
`;

describe("keys for owners the deploy creates; keys.target waits for the uploads", { skip }, () => {
  let tmp = "";
  let lab: Lab;
  let s: StackRef;
  const ex = async (cmd: string) => (await lab.exec("host1", ["sh", "-c", cmd], { allowFailure: true, timeoutMs: 60_000 })).stdout.trim();
  async function waitFor(cmd: string, want: string, ms = 15_000): Promise<void> {
    const deadline = Date.now() + ms;
    let got = "";
    while (Date.now() < deadline) {
      got = await ex(cmd);
      if (got === want) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(got, want, `${cmd} did not become ${want}`);
  }

  before(async () => {
    tmp = tempDir("key-owners");
    lab = await Lab.up({ dir: path.join(tmp, "lab"), hosts: 1 });
    const [h] = await lab.status();
    const keyFile = path.join(tmp, "svc");
    fs.writeFileSync(keyFile, "for newsvc only", { mode: 0o600 });
    const m = { targetHost: h.address, config: CONFIG, keys: { svc: { file: keyFile, user: "newsvc", group: "newsvc", permissions: "0440" } } } as TestMachine;
    s = writeStack(path.join(tmp, "prog"), "t", { m }, { "pulumi-nixos:sshPrivateKeyFile": lab.privateKeyPath });
  });
  after(async () => {
    await lab?.down();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  test("one up creates user newsvc and hands it its key (uploaded root-owned 0600, chowned at activation)", async () => {
    assert.equal(await ex("getent passwd newsvc || echo none"), "none");
    const up = await engine("up", s);
    expectExit(up, 0, "up");
    assert.match(up.stdout, /svc: key uploaded to \S+:\/run\/keys\/svc root:root 0600: newsvc:newsvc does not exist there yet/);
    assert.equal(await ex("stat -c '%U:%G %a' /run/keys/svc"), "newsvc:newsvc 440");
    assert.equal(await ex("runuser -u newsvc -- cat /run/keys/svc"), "for newsvc only", "newsvc reads its key");
    assert.equal(await ex("runuser -u nobody -- cat /run/keys/svc 2>/dev/null || echo denied"), "denied");
    assert.equal(await ex("test -e /run/keys/done && echo done"), "done");
    await waitFor("systemctl is-active pulumi-nixos-keys gated | tr '\\n' ' '", "active active");
    assert.equal(await ex("cat /run/gated.log"), "started: newsvc:newsvc 440");
    // Refresh finds nothing to change: the key is as declared.
    const rf = await engine("refresh", s);
    expectExit(rf, 0, "refresh");
    assert.doesNotMatch(rf.stdout, /drift/);
  });

  test("after a reboot a service after keys.target waits; refresh + up re-uploads the key and it starts", async () => {
    await lab.reboot("host1");
    assert.equal(await ex("ls -A /run/keys | wc -l"), "0");
    assert.equal(await ex("systemctl is-active pulumi-nixos-keys gated | tr '\\n' ' '"), "activating inactive");
    assert.match(await ex("systemctl list-jobs --no-legend --no-pager"), /gated\.service +start +waiting/);
    // A plain up calls no handler of an unchanged resource: the refresh (`up --refresh`) finds the key gone.
    const rf = await engine("refresh", s);
    expectExit(rf, 0, "refresh");
    assert.match(rf.stdout, /svc.*drift|drift.*svc/);
    const up = await engine("up", s);
    expectExit(up, 0, "up");
    await waitFor("systemctl is-active pulumi-nixos-keys gated | tr '\\n' ' '", "active active");
    assert.equal(await ex("cat /run/gated.log"), "started: newsvc:newsvc 440", "started once the key was back");
    assert.equal(await ex("systemctl is-system-running --wait"), "running");
  });

  test("a flake machine gets keys.nix too (through extendModules): one up creates flakesvc and hands it its key", async () => {
    // A flake whose machine is built as nixpkgs.lib.nixosSystem builds it (eval-config.nix: the
    // result has extendModules); the stand-in nixpkgs lives in the flake's own tree.
    const dir = path.join(tmp, "flake");
    fs.mkdirSync(dir, { recursive: true });
    fs.cpSync(path.join(ROOT, "test/fixtures/nixpkgs"), path.join(dir, "nixpkgs"), { recursive: true });
    fs.writeFileSync(path.join(dir, "owned.nix"), `{ ... }: {
  networking.hostName = "owned";
  users.groups.flakesvc = { };
  users.users.flakesvc = { isSystemUser = true; group = "flakesvc"; extraGroups = [ "keys" ]; };
}
`);
    fs.writeFileSync(path.join(dir, "flake.nix"), `{
  outputs = { self }: {
    nixosConfigurations.owned = import ./nixpkgs/nixos/lib/eval-config.nix { system = "x86_64-linux"; modules = [ ./owned.nix ]; };
  };
}
`);
    const keyFile = path.join(tmp, "fsvc");
    fs.writeFileSync(keyFile, "for flakesvc only", { mode: 0o600 });
    const [h] = await lab.status();
    const fs2 = writeStack(path.join(tmp, "flake-prog"), "t", { m: { targetHost: h.address, flake: `${dir}#owned`,
      keys: { fsvc: { file: keyFile, user: "flakesvc", group: "flakesvc", permissions: "0400" } } } as TestMachine }, { "pulumi-nixos:sshPrivateKeyFile": lab.privateKeyPath });
    const up = await engine("up", fs2);
    expectExit(up, 0, "flake up");
    assert.match(up.stdout, /fsvc: key uploaded to \S+:\/run\/keys\/fsvc root:root 0600: flakesvc:flakesvc does not exist there yet/);
    assert.equal(await ex("stat -c '%U:%G %a' /run/keys/fsvc"), "flakesvc:flakesvc 400");
    assert.equal(await ex("runuser -u flakesvc -- cat /run/keys/fsvc"), "for flakesvc only");
    assert.equal(await ex("systemctl is-active pulumi-nixos-keys"), "active");
    assert.equal(await ex("ls /run/current-system/etc/systemd/system | grep -x pulumi-nixos-keys.service"), "pulumi-nixos-keys.service", "the flake's system has keys.nix's units");
  });
});
