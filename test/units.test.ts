import "./helpers/env";
import { describe, test, before, after } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "fs";
import * as path from "path";
import { Lab, LabHostInfo, waitForPort } from "../provider/lab/lab";
import { canRunLab, tempDir } from "./helpers/env";
import { buildSystem, copyToHost, switchTo } from "./helpers/standin";
import { engine, expectExit, stateResources } from "./helpers/engine";
import { writeStack, nixConfig } from "./helpers/stack";
import * as net from "net";

const skip = canRunLab ? false : "the lab needs root on Linux";

/** A configuration of the stand-in NixOS with these services (NixOS option names). */
function withServices(host: string, services: string, extra = ""): string {
  return `{ pkgs, ... }: { networking.hostName = "${host}"; ${extra}
    systemd.services = { ${services} }; }`;
}
// A long-running service whose start is recorded (to see restarts).
const daemon = (name: string, version: string, opts = "") => `${name} = { description = "${name} ${version}"; wantedBy = [ "multi-user.target" ];
  script = "echo ${version} >> /run/${name}.starts; exec sleep infinity"; ${opts} };`;

function tcpOpen(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port, timeout: 1500 });
    s.once("connect", () => { s.destroy(); resolve(true); });
    s.once("error", () => resolve(false));
    s.once("timeout", () => { s.destroy(); resolve(false); });
  });
}

describe("stand-in NixOS units on systemd hosts", { skip }, () => {
  let tmp = "";
  let lab: Lab;
  let hosts: LabHostInfo[] = [];
  const ex = async (cmd: string, host = "host1") => (await lab.exec(host, ["sh", "-c", cmd], { allowFailure: true, timeoutMs: 60_000 })).stdout.trim();
  const state = async (units: string[], host = "host1") => (await ex(`for u in ${units.join(" ")}; do systemctl is-active $u; done`, host)).split("\n").join(" ");

  before(async () => {
    tmp = tempDir("units");
    lab = await Lab.up({ dir: path.join(tmp, "lab"), hosts: 2 });
    hosts = await lab.status();
  });
  after(async () => {
    await lab?.down();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  test("switch stops, restarts, reloads and starts units as NixOS's does, printing its lines; dry-activate and boot change nothing running", async () => {
    const v1 = await buildSystem(withServices("host1", [
      daemon("alpha", "1"), daemon("beta", "1"), daemon("keep", "1", "restartIfChanged = false;"),
      daemon("trig", "same", `restartTriggers = [ "config-1" ];`),
      `req = { requiredBy = [ "multi-user.target" ]; serviceConfig = { Type = "oneshot"; RemainAfterExit = true; ExecStart = "/bin/true"; }; };`,
      daemon("rel", "1", `reloadIfChanged = true; reload = "echo reloaded >> /run/rel.reloads";`),
      `once = { wantedBy = [ "multi-user.target" ]; serviceConfig = { Type = "oneshot"; RemainAfterExit = true; }; path = [ pkgs.hello ];
         script = "echo $PATH > /run/once.path"; };`,
    ].join("\n"), `system.activationScripts.stamp = "echo activated >> /run/activations";`));
    await copyToHost(lab, "host1", v1);
    const r1 = await switchTo(lab, "host1", v1);
    assert.equal(r1.code, 0, r1.stderr);
    // New units start through their (active) target; both implementations name them afterwards.
    assert.match(r1.stderr, /the following new units were started: .*alpha\.service/);
    assert.equal(await state(["alpha", "beta", "keep", "rel", "once", "trig", "req", "sshd"]), "active active active active active active active active");
    assert.equal(await ex("test -L /etc/systemd/system/multi-user.target.requires/req.service && echo linked"), "linked", "requiredBy");
    assert.equal(await ex("readlink -f /etc/systemd/system/alpha.service"), await ex(`readlink -f ${v1}/etc/systemd/system/alpha.service`));
    assert.match(await ex("cat /run/once.path"), /-hello-standin\/bin:/, "`path` packages are on the unit's PATH");
    assert.equal(await ex("cat /run/activations"), "activated", "activation scripts ran");

    // v2: alpha gone, beta changed, keep changed (restartIfChanged = false), rel changed (reloadIfChanged), gamma new.
    const v2 = await buildSystem(withServices("host1", [
      daemon("beta", "2"), daemon("keep", "2", "restartIfChanged = false;"),
      daemon("trig", "same", `restartTriggers = [ "config-2" ];`),
      `req = { requiredBy = [ "multi-user.target" ]; serviceConfig = { Type = "oneshot"; RemainAfterExit = true; ExecStart = "/bin/true"; }; };`,
      daemon("rel", "2", `reloadIfChanged = true; reload = "echo reloaded >> /run/rel.reloads";`), daemon("gamma", "1"),
      `once = { wantedBy = [ "multi-user.target" ]; serviceConfig = { Type = "oneshot"; RemainAfterExit = true; }; path = [ pkgs.hello ];
         script = "echo $PATH > /run/once.path"; };`,
    ].join("\n")));
    await copyToHost(lab, "host1", v2);
    // dry-activate says what switch would do and touches nothing. As NixOS's (stopIfChanged
    // defaults to true): changed services are stopped before the activation and started after it;
    // new units start through their target and are not listed.
    const dry = await switchTo(lab, "host1", v2, "dry-activate");
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stderr, /^would stop the following units: alpha\.service, beta\.service, trig\.service$/m);
    assert.match(dry.stderr, /^would start the following units: beta\.service, trig\.service$/m);
    assert.match(dry.stderr, /^would reload the following units: rel\.service$/m);
    assert.match(dry.stderr, /^would NOT stop the following changed units: keep\.service$/m);
    assert.doesNotMatch(dry.stderr, /would restart|gamma/);
    assert.equal(await ex("readlink -f /run/current-system"), v1);
    assert.equal(await state(["alpha", "gamma"]), "active inactive");
    assert.equal(await ex("test -e /etc/systemd/system/gamma.service && echo yes || echo no"), "no");

    const r2 = await switchTo(lab, "host1", v2);
    assert.equal(r2.code, 0, r2.stderr);
    const lines = r2.stderr.split("\n");
    assert.ok(lines.includes("stopping the following units: alpha.service, beta.service, trig.service"), r2.stderr);
    assert.ok(lines.includes("NOT restarting the following changed units: keep.service"), r2.stderr);
    assert.ok(lines.includes("reloading the following units: rel.service"), r2.stderr);
    assert.ok(lines.includes("starting the following units: beta.service, trig.service"), r2.stderr);
    assert.ok(lines.includes("the following new units were started: gamma.service"), r2.stderr);
    // Progress on stderr, as both real implementations print it; "activating…" after the stops.
    const stopLine = lines.indexOf("stopping the following units: alpha.service, beta.service, trig.service");
    assert.ok(lines.indexOf("activating the configuration...") > stopLine, r2.stderr);
    assert.ok(lines.indexOf("starting the following units: beta.service, trig.service") > lines.indexOf("activating the configuration..."), r2.stderr);
    assert.equal(r2.stdout, "", "nothing on stdout");
    assert.equal(await state(["alpha", "beta", "keep", "rel", "gamma", "once", "sshd"]), "inactive active active active active active active");
    assert.equal(await ex("cat /run/beta.starts"), "1\n2", "beta restarted into its new version");
    assert.equal(await ex("cat /run/keep.starts"), "1", "keep was not restarted");
    assert.equal(await ex("cat /run/trig.starts"), "same\nsame", "a changed restartTrigger restarts the unit");
    assert.equal(await ex("cat /run/rel.starts; cat /run/rel.reloads"), "1\nreloaded", "rel was reloaded, not restarted");
    assert.equal(await ex("cat /run/once.path | wc -l; cat /run/gamma.starts"), "1\n1", "unchanged units were left alone");
    assert.equal(await ex("test -e /etc/systemd/system/alpha.service && echo yes || echo no"), "no", "the gone unit's link is removed");

    // boot: only the default changes; a reboot brings it up.
    const v3 = await buildSystem(withServices("host1", daemon("beta", "3")));
    await copyToHost(lab, "host1", v3);
    const r3 = await switchTo(lab, "host1", v3, "boot");
    assert.equal(r3.code, 0, r3.stderr);
    assert.equal(lab.bootDefault("host1"), v3, "the boot loader step recorded v3 as the boot default");
    assert.doesNotMatch(r3.stderr, /activating the configuration/);
    assert.equal(await ex("readlink -f /run/current-system"), v2);
    assert.equal(await state(["gamma", "beta"]), "active active");
    await lab.reboot("host1");
    assert.equal(await ex("readlink -f /run/current-system"), v3);
    assert.equal(await ex("systemctl is-system-running --wait"), "running");
    assert.equal(await state(["gamma", "beta"]), "inactive active");
    assert.equal(await ex("cat /run/beta.starts"), "3", "booted straight into v3");
  });

  test("exit 4 lists the units systemd reports failed; the provider records them from the exit code and systemd", async () => {
    const bad = `broken = { wantedBy = [ "multi-user.target" ]; serviceConfig.Type = "oneshot"; script = "echo broken on purpose; exit 3"; };`;
    const direct = await buildSystem(withServices("host2", bad));
    await copyToHost(lab, "host2", direct);
    const r = await switchTo(lab, "host2", direct);
    assert.equal(r.code, 4, r.stderr);
    assert.match(r.stderr, /warning: the following units failed: broken\.service/);
    assert.match(r.stderr, /broken\.service[\s\S]*Active: failed/, "with systemctl status of the failed unit");
    assert.equal(await ex("readlink -f /run/current-system", "host2"), direct, "exit 4 still activates");
    // As NixOS's switch-to-configuration: units that failed before the switch are forgotten
    // (`systemctl reset-failed`), so a configuration without the broken unit switches cleanly.
    const clean = await buildSystem(withServices("host2", ""));
    await copyToHost(lab, "host2", clean);
    const rc = await switchTo(lab, "host2", clean);
    assert.equal(rc.code, 0, rc.stderr);
    assert.equal(await ex("systemctl list-units --state=failed --plain --no-legend --no-pager | wc -l", "host2"), "0");

    // Through a deploy: the same unit (a plain configuration, no fixture knob), on a host where it is
    // new (switch-to-configuration forgets units that failed before: the failed one on host2 would
    // be reset and, unchanged, not started again).
    const h = hosts[0];
    const s = writeStack(path.join(tmp, "p-fail"), "t", { m: { targetHost: h.address, config: nixConfig("failing", { paths: 1, activation: `systemd.services.${bad}` }) } },
      { "pulumi-nixos:sshPrivateKeyFile": lab.privateKeyPath });
    const up = await engine("up", s);
    expectExit(up, 1, "a deploy with a failing unit");
    assert.match(up.stdout, /exited with 4 \(some units failed: broken\.service\)/);
    const m = stateResources(s.state).m;
    assert.deepEqual(m.outputs.failedUnits, ["broken.service"]);
    assert.equal(await ex("readlink -f /run/current-system", "host1"), m.outputs.systemPath);
    // Fixed configuration: the next up succeeds and nothing is failed any more.
    writeStack(s.cwd, "t", { m: { targetHost: h.address, config: nixConfig("failing", { paths: 1 }) } }, { "pulumi-nixos:sshPrivateKeyFile": lab.privateKeyPath });
    expectExit(await engine("up", s), 0, "fixed");
    assert.deepEqual(stateResources(s.state).m.outputs.failedUnits, []);
  });

  test("services.openssh.enable = false really turns sshd off; switching back brings it back", async () => {
    const h = hosts[1];
    const off = await buildSystem(`{ networking.hostName = "host2"; services.openssh.enable = false; }`);
    const on = await buildSystem(`{ networking.hostName = "host2"; }`);
    for (const p of [off, on]) await copyToHost(lab, "host2", p);
    assert.equal(await tcpOpen(h.address, 22), true);
    const r = await switchTo(lab, "host2", off, "test");
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /stopping the following units: sshd\.service/);
    assert.equal(await ex("systemctl is-active sshd.service", "host2"), "inactive");
    assert.equal(await tcpOpen(h.address, 22), false, "nothing listens on 22 any more");
    const back = await switchTo(lab, "host2", on, "test");
    assert.equal(back.code, 0, back.stderr);
    assert.match(back.stderr, /the following new units were started: sshd\.service/);
    await waitForPort(h.address, 22, 5000);
  });
});
