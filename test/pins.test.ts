import "./helpers/env";
import { describe, test, before, after } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "fs";
import * as path from "path";
import YAML from "yaml";
import { Lab, LabHostInfo } from "../provider/lab/lab";
import { run } from "../provider/util/run";
import { startChannelServer, ChannelServer, hostChannel, setChannelByHand } from "./channels/server";
import { canRunLab, tempDir, ROOT } from "./helpers/env";
import { engine, expectExit, stateResources, StackRef } from "./helpers/engine";
import { nixConfig } from "./helpers/stack";

const skip = canRunLab ? false : "the lab needs root on Linux";

describe("channel pins", { skip }, () => {
  let tmp = "";
  let lab: Lab;
  let hosts: LabHostInfo[] = [];
  let ch: ChannelServer;
  let n = 0;

  /** A stack of the repo's program with a network description in stack config. */
  function stack(network: Record<string, unknown>, extra: Record<string, unknown> = {}): StackRef {
    const dir = path.join(tmp, `p${++n}`);
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, "Pulumi.yaml"), `name: pulumi-nixos\nruntime:\n  name: nodejs\n  options:\n    typescript: true\nmain: ${path.join(ROOT, "stacks", "index.ts")}\n`);
    for (const h of hosts) fs.writeFileSync(path.join(dir, `${h.name}.nix`), nixConfig(h.name));
    writeNetwork(dir, network, extra);
    return { cwd: dir, stack: "t", state: path.join(dir, "state.json") };
  }
  function writeNetwork(dir: string, network: Record<string, unknown>, extra: Record<string, unknown> = {}): void {
    fs.writeFileSync(path.join(dir, "Pulumi.t.yaml"), YAML.stringify({ config: { "pulumi-nixos:network": network, "pulumi-nixos:sshPrivateKeyFile": lab.privateKeyPath, ...extra } }));
  }
  const channelOf = (host: string) => hostChannel(lab, host);
  const pins = () => ({ v1: { url: ch.channels["24.05.1"].url, sha256: ch.channels["24.05.1"].sha256 }, v2: { url: ch.channels["24.11.2"].url, sha256: ch.channels["24.11.2"].sha256 } });

  before(async () => {
    tmp = tempDir("pins");
    lab = await Lab.up({ dir: path.join(tmp, "lab"), hosts: 2 });
    hosts = await lab.status();
    const gateway = JSON.parse(fs.readFileSync(path.join(tmp, "lab", "lab.json"), "utf8")).hosts[0].gateway;
    ch = await startChannelServer(path.join(tmp, "channels"), gateway, ["23.11.9", "24.05.1", "24.11.2"]);
    // host1 had a channel before pulumi-nixos (served here too: lab hosts reach nothing else): destroy must give it back.
    await setChannelByHand(lab, "host1", ch.channels["23.11.9"].url);
  });
  after(async () => {
    await ch?.close();
    await lab?.down();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  test("pin → deploy → host channel and evaluation match; two pins in one run; drift; destroy restores", async () => {
    const machines = (p1: string, p2: string) => ({
      host1: { targetHost: hosts[0].address, configuration: "./host1.nix", pin: p1 },
      host2: { targetHost: hosts[1].address, configuration: "./host2.nix", pin: p2 },
    });
    const s = stack({ pins: pins(), machines: machines("v1", "v2") });
    const up = await engine("up", s);
    expectExit(up, 0, "up with pins");
    assert.equal(await channelOf("host1"), `nixos ${ch.channels["24.05.1"].url}\n24.05.1`);
    assert.equal(await channelOf("host2"), `nixos ${ch.channels["24.11.2"].url}\n24.11.2`);
    let st = stateResources(s.state);
    assert.equal(st.host1.outputs.nixosVersion, "24.05.1", "host1 evaluated against its pin");
    assert.equal(st.host2.outputs.nixosVersion, "24.11.2", "host2 evaluated against its own pin, in the same run");
    assert.equal(st["host1/channel"].outputs.previousUrl, ch.channels["23.11.9"].url);
    assert.equal(st["host1/channel"].outputs.nixpkgsVersion, "24.05.1");
    assert.match(st["host1/channel"].outputs.storePath, /^\/nix\/store\//);
    assert.equal(st["host2/channel"].outputs.previousUrl, "");

    // Change host1's pin: its channel and system follow.
    writeNetwork(s.cwd, { pins: pins(), machines: machines("v2", "v2") });
    const pv = await engine("preview", s);
    assert.match(pv.stdout, /ChannelPin network-host1-channel \[diff: .*~url/);
    const up2 = await engine("up", s);
    expectExit(up2, 0, "pin change");
    assert.equal(await channelOf("host1"), `nixos ${ch.channels["24.11.2"].url}\n24.11.2`);
    st = stateResources(s.state);
    assert.equal(st.host1.outputs.nixosVersion, "24.11.2");
    assert.equal(st["host1/channel"].outputs.previousUrl, ch.channels["23.11.9"].url, "previous URL is kept from before the pin");

    // By hand, host2's channel moves: refresh shows the drift, up puts it back.
    await setChannelByHand(lab, "host2", ch.channels["24.05.1"].url);
    const rf = await engine("refresh", s);
    expectExit(rf, 0, "refresh");
    assert.match(rf.stdout, /ChannelPin network-host2-channel drift \[diff: .*~url/);
    expectExit(await engine("up", s), 0, "converge");
    assert.equal(await channelOf("host2"), `nixos ${ch.channels["24.11.2"].url}\n24.11.2`);

    const ds = await engine("destroy", s);
    expectExit(ds, 0, "destroy");
    assert.equal(await channelOf("host1"), `nixos ${ch.channels["23.11.9"].url}\n23.11.9`, "the previous channel is back");
    assert.equal((await lab.exec("host2", ["nix-channel", "--list"])).stdout.trim(), "", "a channel that did not exist is removed");
  });

  test("sha256 mismatch and unreachable URL: clear errors, the host's channel unchanged", async () => {
    await lab.exec("host2", ["nix-channel", "--add", ch.channels["23.11.9"].url, "nixos"]);
    const wrong = "1".repeat(52);
    const bad = stack({ pins: { p: { url: ch.channels["24.05.1"].url, sha256: wrong } }, machines: { host2: { targetHost: hosts[1].address, configuration: "./host2.nix", pin: "p" } } });
    const r = await engine("up", bad);
    expectExit(r, 1, "mismatch");
    assert.match(r.stdout, new RegExp(`sha256 mismatch for ${ch.channels["24.05.1"].url.replace(/[.:/]/g, "\\$&")}: expected ${wrong}, got ${ch.channels["24.05.1"].sha256}`));
    const gone = stack({ pins: { p: { url: ch.channels["24.05.1"].url.replace("24.05.1", "9.9"), sha256: ch.channels["24.05.1"].sha256 } }, machines: { host2: { targetHost: hosts[1].address, configuration: "./host2.nix", pin: "p" } } });
    const r2 = await engine("up", gone);
    expectExit(r2, 1, "unreachable");
    assert.match(r2.stdout, /cannot fetch http:\/\/.*\/9\.9\/nixexprs\.tar\.xz: .*(404|File not found|not found)/i);
    assert.equal((await lab.exec("host2", ["nix-channel", "--list"])).stdout.trim(), `nixos ${ch.channels["23.11.9"].url}`);
    // An unpinned machine is refused unless the program allows it.
    const unpinned = stack({ machines: { host2: { targetHost: hosts[1].address, configuration: "./host2.nix" } } });
    const r3 = await engine("preview", unpinned);
    expectExit(r3, 1, "unpinned");
    assert.match(r3.stdout, /Machine host2: not pinned: set pin/);
  });

  test("pin add / pin update write the sha256 into stack config", async () => {
    const s = stack({ machines: { host1: { targetHost: hosts[0].address, configuration: "./host1.nix" } } });
    const cli = [process.execPath, path.join(ROOT, "bin/pulumi-nixos.js"), "pin"];
    await run([...cli, "add", "nixos", ch.channels["24.05.1"].url, "--stack", "t", "--cwd", s.cwd]);
    let doc = YAML.parse(fs.readFileSync(path.join(s.cwd, "Pulumi.t.yaml"), "utf8"));
    // The stack describes its network under pulumi-nixos:network: the pin goes there (issue 19).
    assert.deepEqual(doc.config["pulumi-nixos:network"].pins.nixos, { url: ch.channels["24.05.1"].url, sha256: ch.channels["24.05.1"].sha256 });
    assert.ok(doc.config["pulumi-nixos:network"].machines.host1, "other config kept");
    assert.equal(doc.config["pulumi-nixos:pins"], undefined);
    const upd = await run([...cli, "update", "nixos", "--url", ch.channels["24.11.2"].url, "--stack", "t", "--cwd", s.cwd]);
    assert.match(upd.stdout, new RegExp(`${ch.channels["24.05.1"].sha256} → ${ch.channels["24.11.2"].sha256}`));
    doc = YAML.parse(fs.readFileSync(path.join(s.cwd, "Pulumi.t.yaml"), "utf8"));
    assert.equal(doc.config["pulumi-nixos:network"].pins.nixos.sha256, ch.channels["24.11.2"].sha256);
  });
});
