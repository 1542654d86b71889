/**
 * Connection changes reach keys, pins and machines (issue 12, point 4): after an SSH key rotation
 * the stack records the new key without re-uploading keys, re-pinning channels or redeploying, and
 * later refreshes and deletes log in with it. A tag change is recorded the same way.
 */
import "./helpers/env";
import { describe, test, before, after } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "fs";
import * as path from "path";
import YAML from "yaml";
import { Lab, LabHostInfo } from "../provider/lab/lab";
import { run } from "../provider/util/run";
import { startChannelServer, ChannelServer } from "./channels/server";
import { canRunLab, tempDir, ROOT } from "./helpers/env";
import { engine, expectExit, stateResources, StackRef } from "./helpers/engine";
import { nixConfig } from "./helpers/stack";

const skip = canRunLab ? false : "the lab needs root on Linux";

describe("connection changes after an SSH key rotation", { skip }, () => {
  let tmp = "";
  let lab: Lab;
  let h: LabHostInfo;
  let ch: ChannelServer;

  before(async () => {
    tmp = tempDir("rotation");
    lab = await Lab.up({ dir: path.join(tmp, "lab"), hosts: 1 });
    [h] = await lab.status();
    const gateway = JSON.parse(fs.readFileSync(path.join(tmp, "lab", "lab.json"), "utf8")).hosts[0].gateway;
    ch = await startChannelServer(path.join(tmp, "channels"), gateway, ["24.05.1"]);
    // As on a NixOS host booted with provider/nix/keys.nix: /run/keys is a ramfs already, so the first
    // activation does not mount a fresh one over the key uploaded before it.
    await lab.exec("host1", ["sh", "-c", "mount -t ramfs -o mode=0750 ramfs /run/keys && chgrp keys /run/keys"]);
  });
  after(async () => {
    await ch?.close();
    await lab?.down();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  const onHost = async (cmd: string) => (await lab.exec("host1", ["sh", "-c", cmd], { allowFailure: true })).stdout.trim();

  function writeStack(dir: string, keyFile: string, tags: string[]): void {
    const c = ch.channels["24.05.1"];
    const network = {
      description: "rot",
      pins: { v1: { url: c.url, sha256: c.sha256 } },
      machines: { host1: { targetHost: h.address, configuration: "./host1.nix", pin: "v1", tags, keys: { k: { config: "keyText", permissions: "0400" } } } },
    };
    const file = path.join(dir, "Pulumi.t.yaml");
    const doc = fs.existsSync(file) ? YAML.parse(fs.readFileSync(file, "utf8")) : { config: {} };
    doc.config = { ...doc.config, "pulumi-nixos:network": network, "pulumi-nixos:sshPrivateKeyFile": keyFile };
    fs.writeFileSync(file, YAML.stringify(doc));
  }

  test("rotated key, new tags: recorded without re-upload, re-pin or redeploy; refresh and destroy use the new key", async () => {
    const dir = path.join(tmp, "prog");
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, "Pulumi.yaml"), `name: pulumi-nixos\nruntime:\n  name: nodejs\n  options:\n    typescript: true\nmain: ${path.join(ROOT, "stacks", "index.ts")}\n`);
    fs.writeFileSync(path.join(dir, "host1.nix"), nixConfig("host1"));
    const keyA = path.join(tmp, "key-a");
    fs.copyFileSync(lab.privateKeyPath, keyA);
    writeStack(dir, keyA, ["web"]);
    const s: StackRef = { cwd: dir, stack: "t", state: path.join(dir, "state.json") };
    const set = await run([process.execPath, path.join(ROOT, "dist/test/engine/cli.js"), "config", "set", "keyText", "rotation key text\n", "--secret", "--cwd", dir, "--stack", "t"], { allowFailure: true });
    assert.equal(set.code, 0, set.stderr);
    const up1 = await engine("up", s);
    expectExit(up1, 0, "first up");
    const keyStat = () => onHost("stat -c '%i %Y %a' /run/keys/k");
    const channels = () => onHost("readlink /nix/var/nix/profiles/per-user/root/channels");
    const before = { key: await keyStat(), channels: await channels(), gen: stateResources(s.state).host1.outputs.generation };
    assert.match(before.key, /^\d+ \d+ 400$/);
    assert.match(before.channels, /channels-\d+-link/);

    // Rotate: the host accepts only key B from now on; the stack config names B and new tags.
    const keyB = path.join(tmp, "key-b");
    await run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "rotated", "-f", keyB]);
    await lab.exec("host1", ["sh", "-c", "cat > /root/.ssh/authorized_keys"], { input: fs.readFileSync(keyB + ".pub") });
    writeStack(dir, keyB, ["db"]);
    const pv = await engine("preview", s);
    expectExit(pv, 0, "preview");
    assert.match(pv.stdout, /DeploymentKey rot-host1-k \[diff: .*~connection/);
    assert.match(pv.stdout, /ChannelPin rot-host1-channel \[diff: .*~connection/);
    assert.match(pv.stdout, /~ 3 to update/);
    const up = await engine("up", s);
    expectExit(up, 0, "up after rotation");
    assert.match(up.stdout, /~ 3 updated/);
    assert.match(up.stdout + up.stderr, /key not re-uploaded/);
    assert.match(up.stdout + up.stderr, /channel not re-pinned/);
    assert.equal(await keyStat(), before.key, "same inode and mtime: the key was not uploaded again");
    assert.equal(await channels(), before.channels, "no new channels generation: the channel was not re-pinned");
    const st = stateResources(s.state);
    assert.equal(st.host1.outputs.generation, before.gen, "the machine was not redeployed");
    assert.deepEqual(st.host1.outputs.tags, ["db"], "the new tags are recorded");
    const again = await engine("preview", s);
    assert.match(again.stdout, /\d+ unchanged/);
    assert.doesNotMatch(again.stdout, /to (update|create|replace|delete)/, "recorded: nothing left to change");

    // Reads and deletes log in with key B (key A is refused by the host now).
    const rf = await engine("refresh", s);
    expectExit(rf, 0, "refresh with the rotated key");
    assert.doesNotMatch(rf.stdout, /drift/);
    const ds = await engine("destroy", s);
    expectExit(ds, 0, "destroy with the rotated key");
    assert.equal(await onHost("test -e /run/keys/k && echo present || echo gone"), "gone", "delete removed the key");
    assert.equal(await onHost("nix-channel --list"), "", "delete removed the pinned channel");
  });
});
