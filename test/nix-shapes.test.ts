/**
 * Issue 24: every Nix JSON the deployer parses, in each shape Nix printed from 2.8 to 2.33, through
 * the readers (provider/nix/nix-json.ts); the closure, manifest and derivation readers under a
 * `nix` printing 2.32's shapes; and on the lab, a deploy and a preview closure diff with it.
 * Run here: Debian's Nix 2.8. Emulated (test/helpers/nix-wrapper.ts): 2.19–2.32's path-info map
 * and 2.15+'s `nix derivation show` with 2.32's basenames. The 2.33 shapes are recorded below only.
 */
import "./helpers/env";
import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "fs";
import * as path from "path";
import { derivationShowCommand, parseDerivations, parseNixVersion, parsePathInfo, pathInfoCommand } from "../provider/nix/nix-json";
import { closureOf } from "../provider/nix/closure";
import { derivationManifest, localManifests } from "../provider/nix/manifest";
import { run } from "../provider/util/run";
import { sameNarHash } from "../provider/fanout/nar-hash";
import { nix232Wrapper } from "./helpers/nix-wrapper";
import { Lab } from "../provider/lab/lab";
import { STANDIN_NIXPKGS, canRunLab, tempDir } from "./helpers/env";
import { engine, expectExit, stateResources } from "./helpers/engine";
import { writeStack } from "./helpers/stack";

const A = "/nix/store/0a3fmpx7kzm4dzsvwjb8fjr2ni0ak8yw-foo";
const B = "/nix/store/1bv9gyqaxv2snwxsd0pbdxc7lkyzcaif-bar";
const GONE = "/nix/store/2c7d2yzzw9fdjq7r5sswjfkxqxfrpdlj-baz";
const base = (p: string) => path.basename(p);

// ≤ 2.18: a list; an invalid path as { path, valid: false } (nix path-info's old JSON writer); the
// NAR hashes are the later shapes' in base-32 (as `nix-hash --to-base32` prints them).
const PATH_INFO_2_8 = JSON.stringify([
  { path: A, narHash: "sha256:1476r2f1nccfi3d6l0yxj5m4xww6irm6x3mhz3ifpzi5nlql1ys2", narSize: 120, references: [B], registrationTime: 1 },
  { path: B, narHash: "sha256:055nldzkxaagy5l4018b0zajh4yrl5dg77321c81gaszxwd5iy7m", narSize: 80, references: [] },
  { path: GONE, valid: false },
]);
// 2.19–2.32: a map keyed by store path, `null` for an invalid one (rl-2.19.md; tests/functional/path-info.sh).
const PATH_INFO_2_19 = JSON.stringify({
  [A]: { narHash: "sha256-QvtAMbUl/uvi+LCObmqOhvNOapHdA2raiI4xG5zI5pA=", narSize: 120, references: [B] },
  [B]: { narHash: "sha256-9fhYGu9fqxcQC2Kc81qh2RMo1QcLBUBo8U+pPn+jthQ=", narSize: 80, references: [] },
  [GONE]: null,
});
// 2.33 --json-format 1: the same map, now with version and storeDir (rl-2.33.md).
const PATH_INFO_2_33_V1 = JSON.stringify({ version: 1, storeDir: "/nix/store", ...JSON.parse(PATH_INFO_2_19) });
// 2.33 --json-format 2: wrapped, basenames for keys and references (rl-2.33.md).
const PATH_INFO_2_33_V2 = JSON.stringify({
  version: 2, storeDir: "/nix/store",
  info: {
    [base(A)]: { version: 2, narHash: "sha256-QvtAMbUl/uvi+LCObmqOhvNOapHdA2raiI4xG5zI5pA=", narSize: 120, references: [base(B)], ca: null },
    [base(B)]: { version: 2, narHash: "sha256-9fhYGu9fqxcQC2Kc81qh2RMo1QcLBUBo8U+pPn+jthQ=", narSize: 80, references: [], ca: null },
    [base(GONE)]: null,
  },
});

test("path-info JSON of every Nix (2.8 list, 2.19 map, 2.33 formats 1 and 2) reads the same", () => {
  const expected = [{ path: A, narSize: 120, references: [B] }, { path: B, narSize: 80, references: [] }];
  const hashes = ["sha256-QvtAMbUl/uvi+LCObmqOhvNOapHdA2raiI4xG5zI5pA=", "sha256-9fhYGu9fqxcQC2Kc81qh2RMo1QcLBUBo8U+pPn+jthQ="];
  for (const [v, s] of [["2.8", PATH_INFO_2_8], ["2.19", PATH_INFO_2_19], ["2.33 v1", PATH_INFO_2_33_V1], ["2.33 v2", PATH_INFO_2_33_V2]]) {
    const got = parsePathInfo(s);
    assert.deepEqual(got.map(({ narHash: _h, ...rest }) => rest), expected, v);
    // The NAR hash is kept in the notation Nix printed; every notation means the same hash.
    got.forEach((p, i) => assert.ok(sameNarHash(p.narHash, hashes[i]), `${v}: ${p.path}'s narHash ${p.narHash}`));
  }
});

const DRV = "/nix/store/3dkw8jr3bk6vj7ga1b2ylfx6xk1qpcm1-foo.drv";
const DEP = "/nix/store/4fzyvnyl8fxg7yh6dm0wjmbnhvhqfxy7-bar.drv";
const SRC = "/nix/store/5g0k9h8wgsqdv3w7cxq4mqq7cbzbq3cz-builder.sh";
const OUT = "/nix/store/6hq0jycjqj1xrrvbwxydgpb5q4zd6z2m-foo";
// 2.8–2.17 (`nix show-derivation`; `nix derivation show` from 2.15): full paths, inputDrvs name → outputs.
const DRV_2_8 = JSON.stringify({ [DRV]: { outputs: { out: { path: OUT } }, inputSrcs: [SRC], inputDrvs: { [DEP]: ["out"] }, env: { name: "foo" } } });
// 2.18–2.31: inputDrvs values { outputs, dynamicOutputs } (dynamic derivations).
const DRV_2_18 = JSON.stringify({ [DRV]: { outputs: { out: { path: OUT } }, inputSrcs: [SRC], inputDrvs: { [DEP]: { outputs: ["out"], dynamicOutputs: {} } } } });
// 2.32: store paths by basename, version 3 (rl-2.32.md; doc/manual/source/protocols/json/derivation.md).
const DRV_2_32 = JSON.stringify({ [base(DRV)]: { version: 3, name: "foo", outputs: { out: { path: base(OUT) } }, inputSrcs: [base(SRC)], inputDrvs: { [base(DEP)]: { outputs: ["out"], dynamicOutputs: {} } } } });
// 2.33: version 4, inputs nested as { srcs, drvs } (rl-2.33.md).
const DRV_2_33 = JSON.stringify({ [base(DRV)]: { version: 4, name: "foo", outputs: { out: { path: base(OUT) } }, inputs: { srcs: [base(SRC)], drvs: { [base(DEP)]: { outputs: ["out"], dynamicOutputs: {} } } } } });

test("derivation JSON of every Nix (2.8 full paths, 2.18 inputDrvs, 2.32 basenames, 2.33 nested inputs) reads the same", () => {
  const expected = new Map([[DRV, { outputs: { out: OUT }, inputSrcs: [SRC], inputDrvs: [DEP] }]]);
  for (const [v, s] of [["2.8", DRV_2_8], ["2.18", DRV_2_18], ["2.32", DRV_2_32], ["2.33", DRV_2_33]]) {
    assert.deepEqual(parseDerivations(s), expected, v);
  }
});

test("the commands follow the version: derivation show from 2.15, path-info --json-format 2 from 2.33", () => {
  assert.deepEqual(parseNixVersion("nix (Nix) 2.8.0\n"), [2, 8]);
  assert.deepEqual(parseNixVersion("nix (Nix) 2.32.0pre20251006_dirty"), [2, 32]);
  const tail = (a: string[]) => a.slice(3);
  assert.deepEqual(tail(derivationShowCommand([2, 8], ["-r", DRV])), ["show-derivation", "-r", DRV]);
  assert.deepEqual(tail(derivationShowCommand([2, 15], ["-r", DRV])), ["derivation", "show", "-r", DRV]);
  assert.deepEqual(tail(pathInfoCommand([2, 19], [A])), ["path-info", "--json", A]);
  assert.deepEqual(tail(pathInfoCommand([2, 33], [A])), ["path-info", "--json", "--json-format", "2", A]);
});

/** Runs f with the 2.32-printing wrapper first on PATH; returns f's result and the wrapper's calls. */
async function withWrapper<T>(f: () => Promise<T>): Promise<{ value: T; calls: string[][] }> {
  const w = nix232Wrapper();
  const before = process.env.PATH;
  process.env.PATH = `${w.dir}:${before}`;
  try {
    const value = await f();
    return { value, calls: fs.readFileSync(w.log, "utf8").trim().split("\n").map((l) => JSON.parse(l)) };
  } finally {
    process.env.PATH = before;
    w.cleanup();
  }
}

test("closure, manifests and the derivation manifest read the same under Nix 2.8 and under a nix printing 2.32's shapes", async () => {
  const drv = (await run(["nix-instantiate", "-E", `(import ${STANDIN_NIXPKGS} { }).nginx`])).stdout.trim();
  const out = (await run(["nix-store", "--realise", drv])).stdout.trim();
  const real = { closure: await closureOf([out]), manifests: await localManifests([out]), drv: await derivationManifest(out, drv) };
  assert.ok(real.closure.length >= 4, "nginx, openssl (out, lib), zlib");
  const wrapped = await withWrapper(async () => ({ closure: await closureOf([out]), manifests: await localManifests([out]), drv: await derivationManifest(out, drv) }));
  assert.deepEqual(wrapped.value, real);
  assert.ok(wrapped.calls.some((a) => a.includes("path-info")), "path-info went through the wrapper");
  assert.ok(wrapped.calls.some((a) => a.join(" ").includes("derivation show")), "derivation show went through the wrapper");
});

test("deploy and preview closure diff with a nix printing 2.32's shapes (path-info map, basenames)", { skip: canRunLab ? false : "the lab needs root on Linux" }, async () => {
  const tmp = tempDir("nix-shapes");
  const w = nix232Wrapper();
  const env = { ...process.env, PATH: `${w.dir}:${process.env.PATH}` };
  const lab = await Lab.up({ dir: path.join(tmp, "lab"), hosts: 1, names: ["heron"] });
  try {
    const [h] = await lab.status();
    const run1 = `${process.pid}-${Date.now()}`;
    const conf = (nginx: string) => `{ pkgs, ... }: { networking.hostName = "heron"; environment.etc."run".text = "${run1}";
      environment.systemPackages = [ ${nginx} pkgs.redis ]; }`;
    const stack = (config: string) => writeStack(path.join(tmp, "prog"), "lab", { heron: { targetHost: h.address, config } }, { "pulumi-nixos:sshPrivateKeyFile": lab.privateKeyPath });
    let s = stack(conf("pkgs.nginx_1_24"));
    const up = await engine("up", s, [], env);
    expectExit(up, 0, "up under the 2.32 wrapper");
    const st = stateResources(s.state).heron;
    const running = (await lab.exec("heron", ["readlink", "/run/current-system"])).stdout.trim();
    assert.equal(running, st.outputs.systemPath, "the host runs the deployed system");
    assert.equal(st.outputs.closureManifest.exact, true);
    assert.equal(st.outputs.closureManifest.paths, st.outputs.closureSize.paths);
    assert.ok(st.outputs.closureSize.paths > 5, "the whole closure was read (and copied)");
    // Unbuilt v2: the approximate diff from `nix derivation show` in 2.32's basenames.
    s = stack(conf("pkgs.nginx"));
    const pv = await engine("preview", s, [], env);
    expectExit(pv, 0, "preview under the 2.32 wrapper");
    assert.match(pv.stdout, /~ closureChanges: undefined => \["approximate: not built yet — set previewBuild for the exact list","nginx 1\.24\.0 → 1\.26\.1"/);
    const calls = fs.readFileSync(w.log, "utf8");
    assert.match(calls, /"path-info","--json"/);
    assert.match(calls, /"derivation","show"/);
  } finally {
    await lab.down();
    w.cleanup();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});
