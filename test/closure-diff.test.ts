import "./helpers/env";
import { test } from "node:test";
import * as assert from "node:assert/strict";
import { compareVersions, parseStoreName } from "../provider/nix/names";
import { manifestOf } from "../provider/nix/manifest";
import { diffManifests, formatDiff, summarizeDiff } from "../provider/nix/closure-diff";
import { check } from "../provider/handlers/machine";
import * as fs from "fs";
import * as path from "path";
import { Lab } from "../provider/lab/lab";
import { run } from "../provider/util/run";
import { ROOT, STANDIN_NIXPKGS, canRunLab, tempDir } from "./helpers/env";
import { engine, expectExit, stateResources } from "./helpers/engine";
import { writeStack } from "./helpers/stack";
import { buildSystem, copyToHost, switchTo } from "./helpers/standin";

const CLI = [process.execPath, path.join(ROOT, "bin/pulumi-nixos.js")];

/** A store path with a made-up hash (the seed makes rebuilds differ). */
const sp = (name: string, seed = "a") => `/nix/store/${(seed.repeat(32) + "0".repeat(32)).slice(0, 32)}-${name}`;

test("store names: name and version split as Nix's DrvName, output suffixes after a version stripped", () => {
  const cases: [string, string, string, string][] = [
    [sp("openssl-3.0.13-lib"), "openssl", "3.0.13", "lib"],
    [sp("openssl-3.0.13"), "openssl", "3.0.13", ""],
    [sp("nginx-1.26.1"), "nginx", "1.26.1", ""],
    [sp("nixos-system-heron-24.05.standin"), "nixos-system-heron", "24.05.standin", ""],
    [sp("python3.11-requests-2.31.0"), "python3.11-requests", "2.31.0", ""],
    [sp("unit-sshd.service"), "unit-sshd.service", "", ""],
    [sp("hello-standin"), "hello-standin", "", ""],
    [sp("glibc-lib"), "glibc-lib", "", ""], // no version: `-lib` stays part of the name
    [sp("util-linux-2.39-bin"), "util-linux", "2.39", "bin"],
    [sp("openssl-3.0.13.drv"), "openssl", "3.0.13", ""],
    [sp("filler-heron-12"), "filler-heron", "12", ""],
    [sp("gcc-13.2.0-unstable"), "gcc", "13.2.0-unstable", ""], // not an output name: kept in the version
  ];
  for (const [p, name, version, output] of cases) {
    const n = parseStoreName(p);
    assert.deepEqual([n.name, n.version, n.output], [name, version, output], p);
    assert.equal(n.hash.length, 32);
  }
});

test("versions compare as Nix's compareVersions", () => {
  const lt: [string, string][] = [["1.2.3", "1.10"], ["2.3a", "2.3.1"], ["1.0pre1", "1.0"], ["1.0", "1.0.1"], ["1.24.0", "1.26.1"], ["1.2.13", "1.3.1"], ["a", "b"], ["2.3", "2.3a"]];
  for (const [a, b] of lt) {
    assert.equal(compareVersions(a, b), -1, `${a} < ${b}`);
    assert.equal(compareVersions(b, a), 1, `${b} > ${a}`);
  }
  assert.equal(compareVersions("1.0", "1.0"), 0);
  assert.equal(compareVersions("1.0", "1-0"), 0, "separators do not matter");
});

test("diff lines: version changes, added, removed, rebuilt, then the size; ordered by name; capped", () => {
  const sys1 = sp("nixos-system-heron-24.05", "s"), sys2 = sp("nixos-system-heron-24.05", "t");
  const old = manifestOf(sys1, [
    { path: sys1, narSize: 1000 },
    { path: sp("nginx-1.24.0", "n"), narSize: 4 << 20 },
    { path: sp("openssl-3.0.13", "o"), narSize: 1 << 20 },
    { path: sp("openssl-3.0.13-lib", "p"), narSize: 1 << 20 },
    { path: sp("zlib-1.2.13", "z"), narSize: 100 },
    { path: sp("zlib-1.3.1", "y"), narSize: 100 },
    { path: sp("memcached-1.6.21", "m"), narSize: 200 },
    { path: sp("etc-role", "e"), narSize: 10 },
  ], true);
  assert.equal(old.paths, 8);
  assert.ok(!old.packages.some((l) => l.startsWith("nixos-system")), "the toplevel itself is not a package");
  assert.ok(old.packages.includes("openssl 3.0.13 oooooooo,pppppppp"), "one entry for both outputs: " + old.packages.join(" | "));
  const neu = manifestOf(sys2, [
    { path: sys2, narSize: 1000 },
    { path: sp("nginx-1.26.1", "q"), narSize: 5 << 20 },
    { path: sp("openssl-3.0.13", "r"), narSize: 1 << 20 },        // rebuilt: no path in common
    { path: sp("openssl-3.0.13-lib", "w"), narSize: 1 << 20 },
    { path: sp("zlib-1.3.1", "y"), narSize: 100 },                // one of two versions left
    { path: sp("redis-7.2.4", "x"), narSize: 300 },
    { path: sp("etc-role", "f"), narSize: 10 },
  ], true);
  const d = diffManifests(old, neu);
  assert.deepEqual(formatDiff(d), [
    "nginx 1.24.0 → 1.26.1",
    "zlib 1.2.13, 1.3.1 → 1.3.1",
    "+ redis 7.2.4",
    "- memcached 1.6.21",
    "openssl 3.0.13 (rebuilt)",
    "1 unversioned path changed: etc-role",
    "closure +1.0 MiB (8 → 7 paths)",
  ]);
  assert.equal(summarizeDiff(d), "2 upgraded, 1 added, 1 removed, 1 rebuilt");
  assert.equal(summarizeDiff(diffManifests(neu, old)), "2 downgraded, 1 added, 1 removed, 1 rebuilt");
  // Downgrade direction and a label first; the same manifest on both sides: only the size line.
  assert.deepEqual(formatDiff(diffManifests(neu, old), { header: "h" }).slice(0, 3), ["h", "nginx 1.26.1 → 1.24.0", "zlib 1.3.1 → 1.2.13, 1.3.1"]);
  assert.deepEqual(formatDiff(diffManifests(old, old)), ["closure +0 B (8 → 8 paths)"]);

  // 100 changed packages: 30 lines, then the count of the rest, then the size.
  const many = (v: string, seed: string) => manifestOf(sys1, Array.from({ length: 100 }, (_, i) => ({ path: sp(`pkg${String(i).padStart(3, "0")}-${v}`, seed), narSize: 10 })), true);
  const capped = formatDiff(diffManifests(many("1.0", "a"), many("1.1", "b")));
  assert.equal(capped.length, 32);
  assert.equal(capped[0], "pkg000 1.0 → 1.1");
  assert.equal(capped[30], "… and 70 more");
  assert.equal(capped[31], "closure +0 B (100 → 100 paths)");
});

test("approximate sides: no sizes, the new side restricted to given names, removals kept", () => {
  const sys = sp("nixos-system-heron-1", "s");
  const old = manifestOf(sys, [{ path: sp("nginx-1.24.0", "n"), narSize: 10 }, { path: sp("memcached-1.6.21", "m"), narSize: 5 }], true);
  const approx = manifestOf(sp("nixos-system-heron-1", "t"), [{ path: sp("nginx-1.26.1", "q") }, { path: sp("gcc-13.2.0", "g") }, { path: sp("redis-7.2.4", "r") }], false);
  assert.equal(approx.bytes, undefined);
  const lines = formatDiff(diffManifests(old, approx, { newNames: new Set(["nginx", "memcached", "redis"]) }), { header: "approximate" });
  assert.deepEqual(lines, ["approximate", "nginx 1.24.0 → 1.26.1", "+ redis 7.2.4", "- memcached 1.6.21", "closure size: known once built (deployed: 15 B, 2 paths)"]);
});

test("Machine check: closure properties only when defined (the SDK's Struct rejects undefined), dryRun removed, previewBuild validated", async () => {
  const news = { name: "heron", connection: { host: "h", port: 22, user: "root", privateKey: "-----BEGIN OPENSSH PRIVATE KEY-----\n(not read)\n-----END OPENSSH PRIVATE KEY-----\n" }, systemPath: sp("nixos-system-heron-1", "s"), action: "switch" as const,
    buildOn: "local" as const, substituteOnTarget: false, compress: false, connectTimeout: 1, activationTimeout: 1 };
  const noUndefined = (o: object) => assert.ok(!Object.values(o).includes(undefined), JSON.stringify(o));
  // A new machine in a preview: nothing to compare, no key at all.
  const fresh = await check({}, { ...news, dryRun: true });
  assert.deepEqual(fresh.failures, []);
  assert.equal("closureChanges" in fresh.inputs, false);
  assert.equal("dryRun" in fresh.inputs, false);
  noUndefined(fresh.inputs);
  // A changed system that is neither here nor derivable: one line says why, the preview goes on.
  const changed = await check({ systemPath: sp("nixos-system-heron-0", "r") }, { ...news, dryRun: true });
  assert.match(changed.inputs.closureChanges?.[0] ?? "", /^closure changes unavailable: .* not in the local store and there is no derivation/);
  noUndefined(changed.inputs);
  // An up records no lines; the same system keeps the recorded manifest.
  const manifest = manifestOf(news.systemPath, [{ path: news.systemPath, narSize: 1 }], true);
  const same = await check({ systemPath: news.systemPath, closureManifest: manifest }, { ...news, dryRun: false });
  assert.deepEqual(same.inputs.closureManifest, manifest);
  assert.equal("closureChanges" in same.inputs, false);
  // A state from before manifests: an up records the deployed system's when it is in the store.
  const built = (await run(["nix-build", "--no-out-link", "-E", `(import ${STANDIN_NIXPKGS} {}).redis`])).stdout.trim();
  const old = await check({ systemPath: built }, { ...news, systemPath: built, dryRun: false });
  assert.deepEqual(old.inputs.closureManifest, manifestOf(built, [{ path: built, narSize: old.inputs.closureManifest?.bytes }], true));
  assert.equal((await check({ systemPath: built }, { ...news, systemPath: built, dryRun: true })).inputs.closureManifest, undefined, "a preview records nothing");
  const bad = await check({}, { ...news, previewBuild: "yes" as unknown as boolean });
  assert.deepEqual(bad.failures, [{ property: "previewBuild", reason: "Machine heron: previewBuild must be true or false, got 'yes'" }]);
});

// ---- on the lab: preview, deploy, drift -----------------------------------------------------

const skip = canRunLab ? false : "the lab needs root on Linux";

/** Makes this run's systems new to the local store (built or not is what the test decides). */
const RUN = `${process.pid}-${Date.now()}`;

/** heron's configuration: packages and an nginx.service whose unit names the nginx package. */
function heron(packages: string, nginx: string): string {
  return `{ pkgs, ... }: let nginx = ${nginx}; in {
  networking.hostName = "heron";
  environment.etc."run".text = "${RUN}";
  environment.systemPackages = [ ${packages} ];
  systemd.services.nginx = { wantedBy = [ "multi-user.target" ]; path = [ nginx ]; script = "exec sleep 100000"; };
}
`;
}
// v1: nginx 1.24.0, curl (which brings zlib 1.2.13 beside 1.3.1), memcached.
const V1 = heron("nginx pkgs.curl pkgs.memcached", "pkgs.nginx_1_24");
// v2: nginx 1.26.1 on an openssl rebuilt at the same version, redis; curl and memcached gone.
const V2 = heron("nginx pkgs.redis", `pkgs.nginx.override { deps = [ (pkgs.openssl.override { build = "2"; }) pkgs.zlib ]; }`);
// v3: back to the usual openssl build, memcached again.
const V3 = heron("nginx pkgs.redis pkgs.memcached", "pkgs.nginx");

const EXPECTED_V1_V2 = ["nginx 1.24.0 → 1.26.1", "zlib 1.2.13, 1.3.1 → 1.3.1", "+ redis 7.2.4", "- curl 8.7.1", "- memcached 1.6.21", "openssl 3.0.13 (rebuilt)"];

/** The `heron: closure: …` lines a run logged. */
const closureLines = (r: { stdout: string; stderr: string }) => (r.stdout + "\n" + r.stderr).split("\n")
  .map((l) => /heron: closure: (.*)$/.exec(l)?.[1]).filter((l): l is string => l !== undefined);

test("preview shows the package diff (approximate unbuilt, exact built or with previewBuild); deploy summary; diff shows a hand change; another operator's deploy", { skip }, async () => {
  const tmp = tempDir("closure-diff");
  const lab = await Lab.up({ dir: path.join(tmp, "lab"), hosts: 1, names: ["heron"] });
  try {
    const [h] = await lab.status();
    const extra = { "pulumi-nixos:sshPrivateKeyFile": lab.privateKeyPath };
    const stack = (config: string, more: Record<string, unknown> = {}) => writeStack(path.join(tmp, "prog"), "lab", { heron: { targetHost: h.address, config } }, { ...extra, ...more });
    let s = stack(V1);
    // A new machine has nothing to compare with: the preview works and shows no closureChanges.
    const pv0 = await engine("preview", s);
    expectExit(pv0, 0, "preview of a new machine");
    assert.match(pv0.stdout, /\+ {2}pulumi-nodejs:dynamic\/nixos:Machine network-heron create/);
    assert.doesNotMatch(pv0.stdout + pv0.stderr, /closureChanges|heron: closure/);
    const up1 = await engine("up", s);
    expectExit(up1, 0, "first up");
    const log1 = up1.stdout + up1.stderr;
    assert.match(log1, /heron: generation \d+ \([\d.]+ (B|KiB|MiB) copied; (restarted|started): [^)]*nginx\.service[^)]*\)/, "the first deploy's summary");
    let st = stateResources(s.state).heron;
    const m1 = st.outputs.closureManifest;
    assert.equal(m1.system, st.outputs.systemPath);
    assert.equal(m1.exact, true);
    assert.equal(m1.paths, st.outputs.closureSize.paths);
    assert.equal(m1.bytes, st.outputs.closureSize.bytes);
    assert.ok(m1.packages.some((l: string) => /^zlib 1\.2\.13 /.test(l)) && m1.packages.some((l: string) => /^zlib 1\.3\.1 /.test(l)), "two zlibs in one closure");
    assert.ok(m1.packages.some((l: string) => /^openssl 3\.0\.13 \w{8},\w{8}$/.test(l)), "openssl's out and lib outputs under one version");
    assert.equal(st.inputs.closureManifest.exact, false, "the up's Check saw v1 unbuilt: its derivations' manifest");
    assert.equal(st.inputs.closureManifest.system, m1.system);

    // v2, not built: the plan's lines come from the derivations and say so.
    s = stack(V2);
    const pv = await engine("preview", s);
    expectExit(pv, 0, "preview v2 unbuilt");
    assert.match(pv.stdout, /~ {2}pulumi-nodejs:dynamic\/nixos:Machine network-heron \[diff: .*~closureChanges/);
    assert.match(pv.stdout, /~ closureChanges: undefined => \["approximate: not built yet — set previewBuild for the exact list","nginx 1\.24\.0 → 1\.26\.1"/);
    assert.doesNotMatch(pv.stdout, /closureManifest|dryRun/, "the plan shows the lines, not the manifest nor the preview flag");
    const approx = closureLines(pv);
    assert.equal(approx[0], "approximate: not built yet — set previewBuild for the exact list");
    assert.deepEqual(approx.slice(1, 1 + EXPECTED_V1_V2.length), EXPECTED_V1_V2);
    assert.match(approx[approx.length - 1], /^closure size: known once built \(deployed: [\d.]+ \w+, \d+ paths\)$/);
    const v2 = /systemPath: "[^"]+" => "([^"]+)"/.exec(pv.stdout)![1];
    assert.equal(fs.existsSync(v2), false, "a plain preview builds nothing");

    // previewBuild (stack config): the preview builds it, the lines are exact.
    const pvb = await engine("preview", stack(V2, { "pulumi-nixos:previewBuild": true }));
    expectExit(pvb, 0, "preview v2 with previewBuild");
    const exact = closureLines(pvb);
    assert.deepEqual(exact.slice(0, EXPECTED_V1_V2.length), EXPECTED_V1_V2);
    assert.match(exact.join("\n"), /^\d+ unversioned paths? changed: .*system-path/m);
    assert.match(exact[exact.length - 1], /^closure [+-][\d.]+ \w+ \(\d+ → \d+ paths\)$/);
    assert.equal(fs.existsSync(v2), true, "previewBuild built the system");
    // Built now (by an earlier run): exact without previewBuild too.
    s = stack(V2);
    assert.deepEqual(closureLines(await engine("preview", s)), exact);

    const up2 = await engine("up", s);
    expectExit(up2, 0, "up v2");
    const summary = /heron: (generation \d+ \(.*\))$/m.exec(up2.stdout + up2.stderr)?.[1];
    assert.match(summary ?? "", /^generation \d+ \(2 upgraded, 1 added, 2 removed, 1 rebuilt, [\d.]+ \w+ copied; restarted: nginx\.service\)$/);
    st = stateResources(s.state).heron;
    assert.equal(st.inputs.closureChanges, undefined, "an up records no lines: the next plan never shows them as the old side");
    assert.equal(st.inputs.dryRun, undefined);
    assert.equal(st.outputs.closureManifest.system, v2);
    assert.deepEqual(st.inputs.closureManifest, st.outputs.closureManifest, "Check recorded the built system's manifest for the next preview");

    // A no-op: nothing shows, not even the last run's lines; an up after the preview contacts no host.
    const noop = await engine("preview", s);
    expectExit(noop, 0, "no-op preview");
    assert.match(noop.stdout, /3 unchanged/);
    assert.doesNotMatch(noop.stdout + noop.stderr, /closureChanges|heron: closure:/);
    await lab.cut("heron");
    const noopUp = await engine("up", s);
    await lab.restore("heron");
    expectExit(noopUp, 0, "no-op up with the host cut off");
    assert.match(noopUp.stdout, /3 unchanged/);
    assert.deepEqual(stateResources(s.state).heron.inputs.closureManifest, st.outputs.closureManifest, "the recorded manifest is kept");

    // By hand, heron gets another system: `pulumi-nixos diff` shows what it runs against the record.
    fs.writeFileSync(path.join(tmp, "hand.nix"), heron("nginx pkgs.redis pkgs.hello", "pkgs.nginx_1_24"));
    const hand = await buildSystem(path.join(tmp, "hand.nix"));
    await copyToHost(lab, "heron", hand);
    expectExit(await switchTo(lab, "heron", hand), 0, "switch by hand");
    const df = await run([...CLI, "diff", "--state", s.state], { allowFailure: true });
    expectExit(df, 1, "pulumi-nixos diff (the host differs from the record: exit 1, as diff(1))");
    assert.match(df.stdout, new RegExp(`^heron: runs ${hand}, the stack recorded ${v2}:$`, "m"));
    const dl = df.stdout.split("\n").filter((l) => l.startsWith("  ")).map((l) => l.trim());
    assert.deepEqual(dl.slice(0, 3), ["nginx 1.26.1 → 1.24.0", "+ hello-standin", "openssl 3.0.13 (rebuilt)"]);
    assert.match(dl[dl.length - 1], /^closure [+-][\d.]+ \w+ \(\d+ → \d+ paths\)$/);
    const djr = await run([...CLI, "diff", "--state", s.state, "--json", "--include", "heron"], { allowFailure: true });
    assert.equal(djr.code, 1, "--json: the same exit code");
    const dj = JSON.parse(djr.stdout);
    assert.deepEqual(dj.map((r: any) => [r.name, r.same, r.running, r.changes[0]]), [["heron", false, hand, "nginx 1.26.1 → 1.24.0"]]);

    // Another operator deployed v2: it is not in this store, only its manifest in the state.
    await run(["nix-store", "--delete", v2], { allowFailure: false });
    assert.equal(fs.existsSync(v2), false);
    s = stack(V3);
    const pv3 = await engine("preview", s);
    expectExit(pv3, 0, "preview v3");
    const other = closureLines(pv3);
    assert.match(pv3.stdout, /~ closureChanges: undefined => \["approximate/, "the last run's lines are not the old side");
    // nginx 1.26.1 is rebuilt too: the usual openssl is its input again.
    assert.deepEqual(other.slice(0, 4), ["approximate: not built yet — set previewBuild for the exact list", "+ memcached 1.6.21", "nginx 1.26.1 (rebuilt)", "openssl 3.0.13 (rebuilt)"]);

    // Built on the host: the manifest and the summary come from the host's closure. The host still
    // runs the hand-made system (no refresh since): the summary counts against that, not the
    // record (v2 → v3 would be "1 added, 2 rebuilt").
    s = writeStack(path.join(tmp, "prog"), "lab", { heron: { targetHost: h.address, config: V3, buildOn: "target" } }, extra);
    const up3 = await engine("up", s);
    expectExit(up3, 0, "up v3 built on the host");
    assert.match(up3.stdout + up3.stderr, /heron: generation \d+ \(1 upgraded, 1 added, 1 removed, [\d.]+ \w+ copied; restarted: nginx\.service\)$/m,
      "hand → v3: nginx 1.24.0 → 1.26.1, + memcached, - hello-standin");
    st = stateResources(s.state).heron;
    assert.equal(st.outputs.closureManifest.exact, true);
    assert.equal(st.outputs.closureManifest.system, st.outputs.systemPath);
    assert.equal(st.outputs.closureManifest.paths, st.outputs.closureSize.paths);
  } finally {
    await lab.down();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});
