import "./helpers/env";
import { describe, test, before, after } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "fs";
import * as path from "path";
import { Lab, LabHostInfo } from "../provider/lab/lab";
import { run, RunResult } from "../provider/util/run";
import { canRunLab, tempDir, ROOT } from "./helpers/env";
import { engine, expectExit, stateResources, StackRef } from "./helpers/engine";
import { writeStack, TestMachine } from "./helpers/stack";
import { buildSystem, copyToHost, switchTo } from "./helpers/standin";
import { parseDryActivate, unitChangeLines } from "../provider/host/dry-activate";

const skip = canRunLab ? false : "the lab needs root on Linux";
const CLI = [process.execPath, path.join(ROOT, "bin/pulumi-nixos.js")];

// A long-running service whose starts are recorded (to see that nothing restarted it).
const daemon = (name: string, version: string, opts = "") => `${name} = { description = "${name}"; wantedBy = [ "multi-user.target" ];
  script = "echo ${version} >> /run/${name}.starts; exec sleep infinity"; ${opts} };`;
/** The machine's configuration: bars-app and quiet (restartIfChanged = false) at these versions. */
const web = (bars: string, quiet: string) => `{ ... }: { networking.hostName = "web";
  systemd.services = { ${daemon("bars-app", bars)} ${daemon("quiet", quiet, "restartIfChanged = false;")} }; }`;

describe("dry-activate: what each host would do, before a deploy", { skip }, () => {
  let tmp = "";
  let lab: Lab;
  let hosts: LabHostInfo[] = [];
  let s: StackRef;
  const ex = async (cmd: string, host = "web") => (await lab.exec(host, ["sh", "-c", cmd], { allowFailure: true, timeoutMs: 60_000 })).stdout.trim();
  const stack = (config: string, extra: Record<string, unknown> = {}) => writeStack(path.join(tmp, "prog"), "t",
    { web: { targetHost: hosts[0].address, config, keys: { tok: { file: "./tok.txt" } } } as TestMachine },
    { "pulumi-nixos:sshPrivateKeyFile": lab.privateKeyPath, ...extra });
  const cli = (...args: string[]): Promise<RunResult> => run([...CLI, "dry-activate", "--state", s.state, "--cwd", s.cwd, ...args], { allowFailure: true, timeoutMs: 300_000 });
  const json = async (...args: string[]) => {
    const r = await cli(...args, "--json");
    try { return { code: r.code, rows: JSON.parse(r.stdout), stderr: r.stderr }; } catch { throw new Error(`not JSON: ${r.stdout}\n${r.stderr}`); }
  };
  /** What must not change on the host: profile generation, current system, unit states and starts, keys. */
  const hostState = () => ex([
    "readlink /nix/var/nix/profiles/system", "readlink -f /run/current-system",
    "systemctl is-active bars-app.service quiet.service", "cat /run/bars-app.starts /run/quiet.starts",
    "stat -c '%n %Y %a' /run/keys/tok", "ls /etc/systemd/system/ | sort | md5sum",
  ].join("; "));

  before(async () => {
    tmp = tempDir("dry-activate");
    lab = await Lab.up({ dir: path.join(tmp, "lab"), hosts: 2, names: ["web", "bare"] });
    hosts = await lab.status();
    fs.mkdirSync(path.join(tmp, "prog"), { recursive: true });
    fs.writeFileSync(path.join(tmp, "prog", "tok.txt"), "token-1\n");
    s = stack(web("1", "1"));
    expectExit(await engine("up", s), 0, "first up");
  });
  after(async () => {
    await lab?.down();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  test("a changed service: named under 'would restart' and nothing else; the host is unchanged but for the copied closure", async () => {
    const before = await hostState();
    s = stack(web("2", "1"));
    const r = await json();
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.rows.length, 1);
    const [row] = r.rows;
    assert.deepEqual(row.changes, ["would restart bars-app.service"]);
    // As NixOS's (stopIfChanged defaults to true): stopped before the activation, started after.
    assert.deepEqual([row.wouldStop, row.wouldStart, row.wouldRestart, row.wouldReload, row.notRestarting, row.restartSystemd],
      [["bars-app.service"], ["bars-app.service"], [], [], [], false]);
    assert.ok(row.copied.paths > 0, "the closure was copied");
    assert.equal(await hostState(), before, "generation, current system, units and keys unchanged");
    assert.equal(await ex(`nix-store --check-validity ${row.planned} && echo valid`), "valid", "the planned system is in the host's store");
    assert.equal(await ex("ls /run/pulumi-nixos/lock 2>/dev/null || echo none"), "none", "the host lock was released");

    // The table: one row per host and action.
    const t = await cli();
    assert.equal(t.code, 0, t.stderr);
    assert.match(t.stdout, /^Machine +Action +Unit$/m);
    assert.match(t.stdout, /^web +would restart +bars-app\.service$/m);
    assert.equal(t.stdout.trim().split("\n").length, 2, t.stdout);
  });

  test("restartIfChanged = false: 'would NOT restart'", async () => {
    s = stack(web("2", "2"));
    const r = await json();
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.rows[0].changes, ["would restart bars-app.service", "would NOT restart quiet.service"]);
  });

  test("a preview with previewDryActivate shows the same lines in the plan, and never updates for them alone", async () => {
    s = stack(web("2", "1"), { "pulumi-nixos:previewDryActivate": true });
    const before = await hostState();
    const pv = await engine("preview", s);
    expectExit(pv, 0, "preview");
    assert.match(pv.stdout, /~ unitChanges: undefined => \["would restart bars-app\.service"\]/, pv.stdout);
    assert.match(pv.stdout + pv.stderr, /web: units: would restart bars-app\.service/);
    assert.equal(await hostState(), before, "a preview changes nothing on the host");
    // Deployed: the next preview has nothing to say (same system).
    expectExit(await engine("up", s), 0, "up");
    assert.equal(await ex("cat /run/bars-app.starts"), "1\n2", "the deploy restarted it, as the plan said");
    const again = await engine("preview", s);
    expectExit(again, 0, "preview unchanged");
    assert.doesNotMatch(again.stdout, /unitChanges|~ {2}pulumi-nodejs:dynamic\/nixos:Machine/);
    assert.equal(stateResources(s.state).web.inputs.unitChanges, undefined, "an up records no lines");
  });

  test("an unchanged host copies nothing and says so", async () => {
    const r = await json();
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.rows[0].unchanged, true);
    assert.deepEqual(r.rows[0].copied, { paths: 0, bytes: 0 });
    assert.deepEqual(r.rows[0].changes, []);
    assert.match((await cli()).stdout, /^web +unchanged +runs the planned system already/m);
  });

  test("refused while a deploy holds the host or its rollback timer is armed", async () => {
    s = stack(web("3", "1"));
    const now = Number(await ex("date +%s"));
    await ex(`mkdir -p /run/pulumi-nixos && printf '%s' '{"machine":"web","op":"deploy","user":"alice@laptop","stack":"prod","pid":4242,"nonce":"n1","since":${now},"expires":${now + 600}}' > /run/pulumi-nixos/lock`);
    let r = await cli();
    assert.equal(r.code, 1);
    assert.match(r.stdout + r.stderr, /alice@laptop \(stack prod/);
    await ex("rm -f /run/pulumi-nixos/lock");
    await ex("systemd-run --unit=pulumi-nixos-rollback-test --on-active=600 /bin/true");
    r = await cli();
    assert.equal(r.code, 1);
    assert.match(r.stdout + r.stderr, /awaits its confirmation \(rollback timer pulumi-nixos-rollback-test\.timer armed\); nothing was copied/);
    await ex("systemctl stop pulumi-nixos-rollback-test.timer");
    assert.equal(await ex("cat /run/bars-app.starts"), "1\n2", "nothing was restarted");
  });

  test("the stand-in's dry-activate as NixOS's: stopIfChanged = false, sockets, X-StopOnReconfiguration, systemd's re-exec", async () => {
    const conf = (v: string, extra = "") => `{ ... }: { networking.hostName = "bare"; ${extra}
      systemd.sockets.echo = { wantedBy = [ "sockets.target" ]; listenStreams = [ "127.0.0.1:7777" ]; };
      systemd.targets.phase = { wantedBy = [ "multi-user.target" ]; unitConfig.X-StopOnReconfiguration = true; };
      systemd.services = { ${daemon("hot", v, "stopIfChanged = false;")}
        echo = { description = "echo"; script = "echo ${v} >> /run/echo.starts; exec sleep infinity"; }; }; }`;
    const v1 = await buildSystem(conf("1"));
    const v2 = await buildSystem(conf("2"));
    const v3 = await buildSystem(conf("1", `environment.etc."systemd/system.conf".text = "[Manager]\\nDefaultTimeoutStopSec=20s\\n";`));
    for (const p of [v1, v2, v3]) await copyToHost(lab, "bare", p);
    const r1 = await switchTo(lab, "bare", v1);
    assert.equal(r1.code, 0, r1.stderr);
    // echo.service is socket-activated (as such services are, wanted by nothing): a connection starts it.
    await ex("bash -c 'exec 3<>/dev/tcp/127.0.0.1/7777'; for i in $(seq 100); do systemctl is-active -q echo.service && break; sleep 0.1; done", "bare");
    assert.equal(await ex("systemctl is-active echo.socket echo.service hot.service phase.target", "bare"), "active\nactive\nactive\nactive");
    const dry = await switchTo(lab, "bare", v2, "dry-activate");
    assert.equal(dry.code, 0, dry.stderr);
    // echo.service is socket-activated: its socket is stopped and started instead of it; hot is
    // restarted (stopIfChanged = false); the target is stopped and started but not shown.
    assert.match(dry.stderr, /^would stop the following units: echo\.service, echo\.socket$/m);
    assert.match(dry.stderr, /^would restart the following units: hot\.service$/m);
    assert.match(dry.stderr, /^would start the following units: echo\.socket$/m);
    assert.doesNotMatch(dry.stderr, /phase\.target|would restart systemd/);
    assert.deepEqual(unitChangeLines(parseDryActivate(dry.stderr)), ["would stop echo.service", "would restart echo.socket", "would restart hot.service"]);
    const sys = await switchTo(lab, "bare", v3, "dry-activate");
    assert.equal(sys.code, 0, sys.stderr);
    assert.match(sys.stderr, /^would restart systemd$/m, "a new system.conf re-executes systemd");
    assert.deepEqual(unitChangeLines(parseDryActivate(sys.stderr)), ["would restart systemd"]);
    // The switch does what the dry run said: the X-StopOnReconfiguration target goes down and up.
    const entered = () => ex("systemctl show -p ActiveEnterTimestampMonotonic --value phase.target", "bare");
    const t0 = await entered();
    const r2 = await switchTo(lab, "bare", v2);
    assert.equal(r2.code, 0, r2.stderr);
    assert.match(r2.stderr, /^stopping the following units: echo\.service, echo\.socket$/m);
    assert.match(r2.stderr, /^restarting the following units: hot\.service$/m);
    assert.notEqual(await entered(), t0, "phase.target was stopped and started again");
    assert.equal(await ex("systemctl is-active echo.socket hot.service phase.target; cat /run/hot.starts", "bare"), "active\nactive\nactive\n1\n2");
    assert.equal(await ex("systemctl is-active echo.service", "bare"), "inactive", "the service waits for its socket again");
  });
});
