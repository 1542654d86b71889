import "./helpers/env";
import { describe, test, before, after } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "fs";
import * as path from "path";
import YAML from "yaml";
import { Lab, LabHostInfo } from "../provider/lab/lab";
import { run } from "../provider/util/run";
import { canRunLab, tempDir, ROOT, STANDIN_NIXPKGS } from "./helpers/env";
import { engine, expectExit, stateResources, StackRef } from "./helpers/engine";
import { evaluateSystem } from "../provider/nix/evaluate";

const skip = canRunLab ? false : "the lab needs root on Linux";
const NIX = ["--extra-experimental-features", "nix-command"];

// NixOps copied with `nix-copy-closure --use-substitutes` unless deployment.hasFastConnection
// (nixops/backends/__init__.py copy_closure_to): a networkNix machine on a slow link fetches what
// its own binary caches have. Here the cache is served by a lab host on slow's private network
// (lab `behind`); no host dials anything else.
describe("networkNix: hasFastConnection false substitutes on the target, true never", { skip }, () => {
  let tmp = "";
  let lab: Lab;
  let cache: LabHostInfo;
  let slow: LabHostInfo;
  let fast: LabHostInfo;
  let s: StackRef;
  const ex = async (host: string, cmd: string) => (await lab.exec(host, ["sh", "-c", cmd], { allowFailure: true, timeoutMs: 60_000 })).stdout.trim();

  before(async () => {
    tmp = tempDir("substitutes");
    // The cache sits on slow's private network (behind it): slow reaches it, fast cannot.
    lab = await Lab.up({ dir: path.join(tmp, "lab"), names: ["cache", "slow", "fast"], behind: { cache: "slow" } });
    const byName = (n: string) => hosts.find((h) => h.name === n)!;
    const hosts = await lab.status();
    [cache, slow, fast] = [byName("cache"), byName("slow"), byName("fast")];
    const dir = path.join(tmp, "prog");
    fs.mkdirSync(dir, { recursive: true });
    const machine = (h: LabHostInfo, fastLink: boolean) => `${h.name} = { ... }: {
    deployment.targetHost = "${h.address}";
    deployment.hasFastConnection = ${fastLink};
    networking.hostName = "${h.name}";
    test.closure = { paths = 4; sizeKB = 64; seed = "subst"; random = true; };
  };`;
    fs.writeFileSync(path.join(dir, "network.nix"), `{\n  network.description = "subst";\n  ${machine(slow, false)}\n  ${machine(fast, true)}\n}\n`);
    fs.writeFileSync(path.join(dir, "Pulumi.yaml"), `name: pulumi-nixos\nruntime:\n  name: nodejs\n  options:\n    typescript: true\nmain: ${path.join(ROOT, "stacks/index.ts")}\n`);
    fs.writeFileSync(path.join(dir, "Pulumi.t.yaml"), YAML.stringify({ config: {
      "pulumi-nixos:networkNix": "./network.nix", "pulumi-nixos:nixPath": [`nixpkgs=${STANDIN_NIXPKGS}`], "pulumi-nixos:sshPrivateKeyFile": lab.privateKeyPath,
    } }));
    s = { cwd: dir, stack: "t", state: path.join(dir, "t.state.json") };

    // Both systems, built here, go into a signed cache that the cache host serves over HTTP.
    const nixPath = [`nixpkgs=${STANDIN_NIXPKGS}`];
    const systems = await Promise.all([slow, fast].map((h) => evaluateSystem(h.name, { nixops: { files: [path.join(dir, "network.nix")], machine: h.name }, nixPath })));
    for (const sys of systems) await run(["nix-store", "--realise", sys.drvPath], { timeoutMs: 300_000 });
    const sk = path.join(tmp, "cache.sk");
    fs.writeFileSync(sk, (await run(["nix", ...NIX, "key", "generate-secret", "--key-name", "lab-cache-1"])).stdout, { mode: 0o600 });
    const pk = (await run(["sh", "-c", `nix ${NIX.join(" ")} key convert-secret-to-public < ${sk}`])).stdout.trim();
    // The cache host's /root is <lab>/hosts/cache/root.
    const cacheDir = path.join(tmp, "lab/hosts/cache/root/cache");
    await run(["nix", ...NIX, "copy", "--to", `file://${cacheDir}?secret-key=${sk}`, ...systems.map((x) => x.outPath)], { timeoutMs: 300_000 });
    await lab.exec("cache", ["systemd-run", "--unit=lab-cache", "/usr/bin/python3", "-m", "http.server", "8080", "--bind", cache.address, "--directory", "/root/cache"]);
    for (const h of [slow, fast]) {
      await ex(h.name, `sed -i '/^substituters/d' /etc/nix/nix.conf && printf 'substituters = http://${cache.address}:8080\\ntrusted-public-keys = ${pk}\\n' >> /etc/nix/nix.conf`);
    }
    // Serving (the unit starts asynchronously).
    assert.equal(await ex("slow", `for i in $(seq 100); do curl -sf --max-time 2 http://${cache.address}:8080/nix-cache-info && break; sleep 0.1; done | head -1`), "StoreDir: /nix/store");
  });
  after(async () => {
    await lab?.down();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  test("slow (the default) takes its system from the lab cache; fast gets it copied", async () => {
    const up = await engine("up", s);
    expectExit(up, 0, "up");
    assert.match(up.stdout, /slow: asking the host to substitute \d+ paths from its binary caches/);
    assert.match(up.stdout, /slow: \d+ paths in the closure \(.*\), 0 missing on the host/);
    assert.doesNotMatch(up.stdout, /fast: asking the host to substitute/);
    const st = stateResources(s.state);
    assert.equal(st.slow.outputs.bytesCopied, 0, "nothing copied to the slow host: it substituted everything");
    assert.ok(st.fast.outputs.bytesCopied > 64 * 1024, "the fast host got its closure copied");
    assert.equal(await ex("slow", "readlink /run/current-system"), st.slow.outputs.systemPath);
    assert.equal(await ex("fast", "readlink /run/current-system"), st.fast.outputs.systemPath);
    // The cache's log: narinfos and NARs fetched over its link from slow (slow's end, x.x.x.1, of the
    // cache's /30), and nothing else.
    const log = (await ex("cache", "journalctl -u lab-cache --no-pager -o cat")).split("\n").filter((l) => l.includes('"GET '));
    const slowEnd = cache.address.replace(/\.\d+$/, ".1");
    assert.ok(log.some((l) => /"GET \/\S+\.narinfo HTTP\/1\.[01]" 200/.test(l)) && log.some((l) => /"GET \/nar\/\S+ HTTP\/1\.[01]" 200/.test(l)), log.join("\n"));
    assert.deepEqual([...new Set(log.map((l) => l.split(" ")[0]))], [slowEnd], "every request came from slow");
  });
});
