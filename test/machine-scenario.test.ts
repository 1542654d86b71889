import "./helpers/env";
import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "fs";
import * as path from "path";
import { Lab } from "../provider/lab/lab";
import { canRunLab, tempDir } from "./helpers/env";
import { engine, expectExit, stateResources } from "./helpers/engine";
import { writeStack, nixConfig } from "./helpers/stack";
import { REAL_CLI_SKIP, pulumiCli, pulumiExport } from "./helpers/real-cli";

const skip = canRunLab ? false : "the lab needs root on Linux";

test("machines: preview → up → no-op → change one → up → hand rollback → refresh drift → up converges → destroy", { skip }, async () => {
  const tmp = tempDir("scenario");
  const lab = await Lab.up({ dir: path.join(tmp, "lab"), hosts: 3 });
  try {
    const hosts = await lab.status();
    // Systemd lab hosts boot a seeded generation (1): our first deploy is the next one.
    const seedGen = hosts[0].generation ?? 0;
    const machines = (role2: string) => Object.fromEntries(hosts.map((h) => [h.name, {
      targetHost: h.address, config: nixConfig(h.name, { role: h.name === "host2" ? role2 : h.name, paths: 20 }),
    }]));
    const s = writeStack(path.join(tmp, "prog"), "lab", machines("v1"), { "pulumi-nixos:sshPrivateKeyFile": lab.privateKeyPath });
    const current = async (name: string) => (await lab.exec(name, ["sh", "-c", "readlink /run/current-system || true"])).stdout.trim();
    const role = async (name: string) => (await lab.exec(name, ["sh", "-c", "cat /etc/role 2>/dev/null || echo none"])).stdout.trim();

    // Preview contacts no host: it works with every host cut off.
    for (const h of hosts) await lab.cut(h.name);
    const pv = await engine("preview", s);
    for (const h of hosts) await lab.restore(h.name);
    expectExit(pv, 0, "preview");
    assert.match(pv.stdout, /\+ 5 to create/);
    for (const h of hosts) assert.equal(await current(h.name), h.currentSystem ?? "", "preview deployed nothing");

    const up = await engine("up", s);
    expectExit(up, 0, "up");
    assert.match(up.stdout, /\+ 5 created/);
    assert.match(up.stderr + up.stdout, /host1: copying \d+ paths/);
    let st = stateResources(s.state);
    for (const h of hosts) {
      const m = st[h.name].outputs;
      assert.equal(await current(h.name), m.systemPath);
      assert.equal(await role(h.name), h.name === "host2" ? "v1" : h.name);
      assert.equal(m.generation, seedGen + 1);
      assert.equal(m.hostPublicKey, h.hostPublicKey, "host key recorded at first contact");
      assert.equal(m.connection.hostPublicKey, h.hostPublicKey);
      assert.equal(m.nixosVersion, "24.05.standin");
      const closure = (await lab.exec(h.name, ["nix-store", "-qR", m.systemPath])).stdout.trim().split("\n");
      assert.equal(m.closureSize.paths, closure.length, "the closure as the host has it");
      assert.equal(closure.filter((p) => /-filler-|-etc-role$/.test(p)).length, 21, "20 fillers + /etc/role");
      assert.ok(m.bytesCopied >= m.closureSize.bytes, "a fresh host gets the whole closure");
      assert.match(m.drvPath, /\.drv$/);
      assert.match(m.activatedAt, /^\d{4}-\d\d-\d\dT/);
      assert.ok(m.connection.privateKey.ciphertext, "the private key is a secret in state");
      assert.ok(st[h.name].inputs.__provider.length < 10_000, "__provider is small");
    }
    assert.equal(fs.readFileSync(s.state, "utf8").includes("PRIVATE KEY"), false, "no key in clear text");
    assert.doesNotMatch(st.host1.inputs.__provider, /PRIVATE KEY|ciphertext/);

    const noop = await engine("preview", s);
    expectExit(noop, 0, "no-op preview");
    assert.match(noop.stdout, /5 unchanged/);
    assert.doesNotMatch(noop.stdout, /to (create|update|replace|delete)/);

    // Change one machine's configuration: exactly one update, with the new systemPath.
    writeStack(s.cwd, "lab", machines("v2"), { "pulumi-nixos:sshPrivateKeyFile": lab.privateKeyPath });
    const pv2 = await engine("preview", s);
    expectExit(pv2, 0, "preview after change");
    assert.match(pv2.stdout, /~ 1 to update/);
    assert.match(pv2.stdout, /~ {2}pulumi-nodejs:dynamic\/nixos:Machine network-host2 \[diff: .*~systemPath/);
    const newPath = /systemPath: "[^"]+" => "([^"]+)"/.exec(pv2.stdout)?.[1];
    assert.match(newPath ?? "", /^\/nix\/store\/.*-nixos-system-host2-/);
    const oldPath = st.host2.outputs.systemPath;

    const up2 = await engine("up", s);
    expectExit(up2, 0, "up after change");
    assert.match(up2.stdout, /~ 1 updated/);
    assert.match(up2.stdout, /4 unchanged/, "the Stack, the network component and the other machines");
    st = stateResources(s.state);
    assert.equal(st.host2.outputs.systemPath, newPath);
    assert.equal(st.host2.outputs.generation, seedGen + 2);
    assert.equal(st.host2.outputs.previousSystemPath, oldPath);
    assert.equal(st.host1.outputs.generation, seedGen + 1, "other hosts untouched");
    assert.equal(await role("host2"), "v2");
    assert.ok(st.host2.outputs.bytesCopied < st.host2.outputs.closureSize.bytes / 2, "only the changed paths are copied");

    // By hand, host2 goes back to our first generation: refresh reports the drift, up converges.
    await lab.exec("host2", ["sh", "-c", `/nix/var/nix/profiles/system-${seedGen + 1}-link/bin/switch-to-configuration test >/dev/null`]);
    const rf = await engine("refresh", s);
    expectExit(rf, 0, "refresh");
    assert.match(rf.stdout, /~ {2}pulumi-nodejs:dynamic\/nixos:Machine network-host2 drift \[diff: ~systemPath\]/);
    assert.equal(stateResources(s.state).host2.outputs.systemPath, oldPath);
    const up3 = await engine("up", s);
    expectExit(up3, 0, "up converges");
    assert.match(up3.stdout, /~ 1 updated/);
    assert.equal(await current("host2"), newPath);
    const again = await engine("preview", s);
    assert.match(again.stdout, /5 unchanged/);

    const ds = await engine("destroy", s);
    expectExit(ds, 0, "destroy");
    assert.match(ds.stdout, /- 5 deleted/);
    assert.equal(await current("host1"), st.host1.outputs.systemPath, "destroy forgets; hosts keep running");
  } finally {
    await lab.down();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});

test("machines through the real pulumi CLI (file backend)", { skip: REAL_CLI_SKIP || skip }, async () => {
  const tmp = tempDir("scenario-cli");
  const lab = await Lab.up({ dir: path.join(tmp, "lab"), hosts: 2 });
  try {
    const hosts = await lab.status();
    const machines = (role: string) => Object.fromEntries(hosts.map((h) => [h.name, { targetHost: h.address, config: nixConfig(h.name, { role: h.name === "host2" ? role : h.name }) }]));
    const s = writeStack(path.join(tmp, "prog"), "lab", machines("v1"), { "pulumi-nixos:sshPrivateKeyFile": lab.privateKeyPath });
    expectExit(await pulumiCli("up", s), 0, "pulumi up");
    writeStack(s.cwd, "lab", machines("v2"), { "pulumi-nixos:sshPrivateKeyFile": lab.privateKeyPath });
    const pv = await pulumiCli("preview", s);
    assert.match(pv.stdout, /host2/);
    expectExit(await pulumiCli("up", s), 0, "pulumi up (change)");
    const seedGen = hosts[0].generation ?? 0; // systemd lab hosts boot a seeded generation 1
    assert.equal((await pulumiExport(s)).host2.outputs.generation, seedGen + 2);
    await lab.exec("host2", ["sh", "-c", `/nix/var/nix/profiles/system-${seedGen + 1}-link/bin/switch-to-configuration test >/dev/null`]);
    expectExit(await pulumiCli("refresh", s), 0, "pulumi refresh");
    expectExit(await pulumiCli("up", s), 0, "pulumi up converges");
    expectExit(await pulumiCli("destroy", s), 0, "pulumi destroy");
  } finally {
    await lab.down();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});
