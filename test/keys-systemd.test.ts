import "./helpers/env";
import { describe, test, before, after } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "fs";
import * as path from "path";
import { Lab, LabHostInfo } from "../provider/lab/lab";
import { run } from "../provider/util/run";
import { canRunLab, tempDir, ROOT } from "./helpers/env";
import { engine, expectExit, StackRef } from "./helpers/engine";
import { writeStack, TestMachine } from "./helpers/stack";

const skip = canRunLab ? false : "the lab needs root on Linux";
const CLI = [process.execPath, path.join(ROOT, "bin/pulumi-nixos.js")];

// A service that needs its key (NixOps style: wants + after its <name>-key.service, bindsTo to
// stop with it); it records what it found when it started.
const APP = `{ ... }: {
  networking.hostName = "keyed";
  systemd.services.app = {
    wantedBy = [ "multi-user.target" ];
    wants = [ "secret-key.service" ]; after = [ "secret-key.service" ]; bindsTo = [ "secret-key.service" ];
    script = "echo \\"started with $(cat /run/keys/secret 2>/dev/null || echo no key)\\" >> /run/app.log; exec sleep infinity";
  };
}
`;

describe("keys.nix on systemd hosts", { skip }, () => {
  let tmp = "";
  let lab: Lab;
  let h: LabHostInfo;
  let s: StackRef;
  const ex = async (cmd: string) => (await lab.exec("host1", ["sh", "-c", cmd], { allowFailure: true, timeoutMs: 60_000 })).stdout.trim();
  const active = async (units: string) => (await ex(`for u in ${units}; do systemctl is-active $u; done`)).split("\n").join(" ");
  /** Polls until the units are in the given states (systemd reacts to files asynchronously). */
  async function waitFor(units: string, want: string, ms = 10_000): Promise<void> {
    const deadline = Date.now() + ms;
    let got = "";
    while (Date.now() < deadline) {
      got = await active(units);
      if (got === want) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(got, want, `${units} did not become ${want}`);
  }

  before(async () => {
    tmp = tempDir("keys-sd");
    lab = await Lab.up({ dir: path.join(tmp, "lab"), hosts: 1 });
    [h] = await lab.status();
    const keyFile = path.join(tmp, "secret");
    fs.writeFileSync(keyFile, "s3cret", { mode: 0o600 });
    const m = { targetHost: h.address, config: APP, keys: { secret: { file: keyFile } } } as TestMachine;
    s = writeStack(path.join(tmp, "prog"), "t", { m }, { "pulumi-nixos:sshPrivateKeyFile": lab.privateKeyPath });
  });
  after(async () => {
    await lab?.down();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  test("a service that wants/after its key starts with the key there, and stops when the key is removed", async () => {
    expectExit(await engine("up", s), 0, "up");
    assert.equal(await active("secret-key.path secret-key.service app"), "active active active");
    assert.equal(await ex("cat /run/app.log"), "started with s3cret", "the key was there when the service started");
    assert.equal(await ex("stat -c '%a %G' /run/keys; awk '$2 == \"/run/keys\" { print $3 }' /proc/mounts"), "750 keys\nramfs");
    await lab.exec("host1", ["rm", "/run/keys/secret"]);
    // The key's unit goes back to waiting for the file; the service bound to it stops.
    await waitFor("secret-key.service app", "activating inactive");
  });

  test("after a reboot the service waits for its key: it starts once send-keys uploads it", async () => {
    await lab.reboot("host1");
    assert.equal(await ex("ls -A /run/keys | wc -l"), "0");
    // Boot is not finished: multi-user.target waits for app, app for its key.
    assert.equal(await active("secret-key.service app"), "activating inactive");
    assert.match(await ex("systemctl list-jobs --no-legend --no-pager"), /app\.service +start +waiting/);
    assert.equal(await ex("systemctl is-system-running"), "starting");
    const sk = await run([...CLI, "send-keys", "--state", s.state], { allowFailure: true, timeoutMs: 60_000 });
    assert.equal(sk.code, 0, sk.stdout + sk.stderr);
    assert.match(sk.stdout, /m: .*secret/);
    await waitFor("secret-key.service app", "active active");
    assert.equal(await ex("cat /run/app.log"), "started with s3cret", "started only once the key was uploaded");
    assert.equal(await ex("systemctl is-system-running --wait"), "running");
  });

  test("check reports is-system-running; fleet reboot waits for the new boot id, re-uploads the keys and waits for systemd to settle", async () => {
    const check = async () => {
      const r = await run([...CLI, "check", "--state", s.state, "--json"], { allowFailure: true, timeoutMs: 60_000 });
      return JSON.parse(r.stdout)[0];
    };
    assert.equal((await check()).systemState, "running");
    // A lab reboot without keys: the boot waits for the key (app wants it), check says so.
    await lab.reboot("host1");
    const waiting = await check();
    assert.deepEqual([waiting.up, waiting.systemState], ["Yes", "starting"]);
    const table = await run([...CLI, "check", "--state", s.state], { allowFailure: true, timeoutMs: 60_000 });
    // (with or without the table's borders)
    assert.match(table.stdout, /^\|? *m +\|? *Yes +\|? *Yes +\|? *Yes +\|? *Yes +\|? *[\d. ]+?\|? *starting\b/m);
    // `reboot`: only returns once the host is back with a new boot id, its keys, and systemd settled.
    const before = lab.bootId("host1");
    const rb = await run([...CLI, "reboot", "--state", s.state, "--json"], { allowFailure: true, timeoutMs: 120_000 });
    assert.equal(rb.code, 0, rb.stdout + rb.stderr);
    const [res] = JSON.parse(rb.stdout);
    assert.notEqual(res.bootId, before);
    assert.equal(res.bootId, lab.bootId("host1"));
    assert.deepEqual([res.keys, res.systemState], [["secret"], "running"]);
    assert.equal(await ex("systemctl is-system-running; systemctl is-active app; cat /run/app.log"), "running\nactive\nstarted with s3cret");
  });

  test("after a reboot, refresh finds the key gone and up puts it back; the service starts", async () => {
    await lab.reboot("host1");
    assert.equal(await active("app"), "inactive");
    const rf = await engine("refresh", s);
    expectExit(rf, 0, "refresh");
    assert.match(rf.stdout, /m\/secret.*drift|secret drift/);
    const up = await engine("up", s);
    expectExit(up, 0, "up");
    assert.match(up.stdout, /~ 1 updated/);
    await waitFor("secret-key.service app", "active active");
    assert.equal(await ex("cat /run/keys/secret; echo; cat /run/app.log"), "s3cret\nstarted with s3cret");
    assert.equal(await ex("systemctl is-system-running --wait"), "running");
  });
});
