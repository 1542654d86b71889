/**
 * Bench (p) and (q): a site of N hosts behind one shaped uplink (100 Mbit/s, 40 ms RTT), a fresh
 * closure of M MiB of random data (incompressible; a per-run seed, so nothing is cached anywhere).
 * (p) one `up` deploying all N with fan-out (`site:`), next to one host alone over the same uplink;
 * (q) the same N hosts through a binary cache served over http by a lab host on the site.
 * Uplink bytes are read from the uplink veth's counters (what the machine sent into the site).
 * `npm run bench -- --fan-out [--fan-out-hosts N] [--fan-out-mib M] [--baselines]` (its own lab).
 */
import * as fs from "fs";
import * as path from "path";
import { Lab, LabHostInfo } from "../../provider/lab/lab";
import { run } from "../../provider/util/run";
import { engine, expectExit, stateResources, StackRef } from "../helpers/engine";
import { nixConfig, writeStack, TestMachine } from "../helpers/stack";
import { STANDIN_NIXPKGS, tempDir } from "../helpers/env";
import { loadProject, setStackConfig } from "../engine/project";
import { readCpu, cpuSince } from "./cpu";

const round = (n: number) => Math.round(n * 1000) / 1000;
const SITE = "lan";
const RATE_MBIT = 100, RTT_MS = 40;
/** The closure's random content is split over this many store paths. */
const PATHS = 8;
const TARGET = "ratio <= 1.5 (N hosts vs one host over the same uplink); uplink_vs_closure <= 1.1";

/** A binary cache over http (GET, HEAD, PUT as Nix's HttpBinaryCacheStore uses), run by a lab host (as test/fan-out.test.ts). */
const CACHE_SERVER = `const http=require("http"),fs=require("fs"),path=require("path");const root="/var/cache/pnx";
http.createServer((q,r)=>{const f=path.join(root,path.normalize(decodeURIComponent(q.url.split("?")[0])));if(!f.startsWith(root+"/")){r.statusCode=403;return r.end();}
if(q.method==="PUT"){fs.mkdirSync(path.dirname(f),{recursive:true});const t=f+"."+Math.random()+".tmp";const w=fs.createWriteStream(t);q.pipe(w);w.on("finish",()=>{fs.renameSync(t,f);r.end();});return;}
fs.stat(f,(e,st)=>{if(e||!st.isFile()){r.statusCode=404;return r.end();}r.setHeader("content-length",st.size);if(q.method==="HEAD")return r.end();fs.createReadStream(f).pipe(r);});}).listen(8080,process.argv[1]);`;

export async function fanOutScenario(tmp: string, emit: (o: Record<string, unknown>) => void, o: { hosts: number; mib: number; baselines: boolean }): Promise<void> {
  const runId = `${process.pid.toString(36)}${Date.now().toString(36)}`;
  const sizeKB = Math.ceil((o.mib * 1024) / PATHS);
  // Hosts f01…fN form the fleet; f00 is the lone host (and serves the cache in (q)).
  const fleet = Array.from({ length: o.hosts }, (_, i) => `f${String(i + 1).padStart(2, "0")}`);
  const names = ["f00", ...fleet];
  /** A fleet of like nodes: one configuration, one closure; `seed` makes its fillers new. */
  const config = (seed: string) => nixConfig(`fan-${seed}`, { role: seed, paths: PATHS, sizeKB, random: true });
  // Built by nix in the local store before any timing (the very systems the stacks evaluate to): the measured `up`s only evaluate and copy.
  const build = async (label: string) => {
    const seed = `${label}-${runId}`;
    const file = path.join(tmp, `build-${label}.nix`);
    fs.writeFileSync(file, config(seed));
    const drv = (await run(["nix-instantiate", `${STANDIN_NIXPKGS}/nixos`, "-A", "system", "--arg", "configuration", file])).stdout.trim();
    const outPath = (await run(["nix-store", "--realise", "--max-jobs", "8", drv])).stdout.trim();
    return { seed, outPath };
  };
  console.error(`bench fan-out: ${o.hosts} hosts + 1 on site ${SITE}, ${o.mib} MiB fresh closures, uplink ${RATE_MBIT} Mbit/s ${RTT_MS} ms RTT`);
  const seeds = { one: await build("one"), p: await build("p"), q: await build("q"), ...(o.baselines ? { direct: await build("direct"), loop: await build("loop") } : {}) };

  const lab = await Lab.up({ dir: path.join(tmp, "lab-fan-out"), names, sites: { [SITE]: names } });
  // The lab comes down however the run ends (Ctrl-C too), as in the other scenarios.
  const onSig = () => { void lab.down().finally(() => process.exit(130)); };
  for (const sig of ["SIGINT", "SIGTERM"] as const) process.once(sig, onSig);
  try {
    // The hosts' LAN addresses (once shaped, the deployer reaches each through its relay port instead).
    const lanAddress = new Map((await lab.status()).map((h) => [h.name, h.address]));
    await lab.linkSite(SITE, { rateMbit: RATE_MBIT, rttMs: RTT_MS });
    const hosts = await lab.status();
    const byName = new Map(hosts.map((h) => [h.name, h]));
    const uplinkTx = () => Number(fs.readFileSync(`/sys/class/net/${lab.uplinkDevice(SITE)}/statistics/tx_bytes`, "utf8"));
    const stack = (dir: string, ms: string[], m: (h: LabHostInfo) => Partial<TestMachine>, seed: string) =>
      writeStack(path.join(tmp, dir), "bench", Object.fromEntries(ms.map((n) => { const h = byName.get(n)!; return [n, { targetHost: h.address, targetPort: h.port, config: config(seed), ...m(h) }]; })),
        { "pulumi-nixos:sshPrivateKeyFile": lab.privateKeyPath });
    /** One timed `up`: seconds, uplink bytes, CPU split, the closure's NAR bytes (from state). */
    const timedUp = async (s: StackRef, what: string) => {
      const tx0 = uplinkTx(), cpu0 = readCpu(), t0 = Date.now();
      const r = await engine("up", s);
      const seconds = (Date.now() - t0) / 1000, cpu = cpuSince(cpu0), uplink = uplinkTx() - tx0;
      expectExit(r, 0, what);
      const st = stateResources(s.state);
      const closureBytes: number = Object.values(st).find((x) => x.outputs?.closureSize)!.outputs.closureSize.bytes;
      const out = r.stdout + r.stderr;
      const lines = out.split("\n");
      // Where each host's paths came from, and any peer copy not taken (with why), for the reader.
      for (const l of lines.filter((x) => /site \S+: \d|not taken|refused|cache \S+: \d/.test(x))) console.error(`bench fan-out: ${what}: ${l.trim()}`);
      return { seconds, uplink, cpu, closureBytes, out,
        peerLines: lines.filter((l) => /over the LAN/.test(l)).length, refused: lines.filter((l) => /not taken|refused/.test(l)).length,
        firstRefusal: lines.find((l) => /not taken|refused/.test(l))?.trim().slice(0, 400) };
    };
    const figures = (scenario: string, ours: Awaited<ReturnType<typeof timedUp>>, oneS: number) => ({
      scenario, ours_s: round(ours.seconds), one_host_s: round(oneS), ratio: round(ours.seconds / oneS),
      uplink_bytes: ours.uplink, closure_bytes: ours.closureBytes, uplink_vs_closure: round(ours.uplink / ours.closureBytes), target: TARGET,
    });
    const detail = (scenario: string, ours: Awaited<ReturnType<typeof timedUp>>, one: Awaited<ReturnType<typeof timedUp>>) => ({
      scenario, hosts: o.hosts, closure_mib: o.mib, paths: PATHS, rate_mbit: RATE_MBIT, rtt_ms: RTT_MS,
      wire_floor_s: round((ours.closureBytes * 8) / (RATE_MBIT * 1e6)),
      ours_cpu_s: ours.cpu.cpu_s, ours_deployer_cpu_s: ours.cpu.deployer_cpu_s, ours_hosts_and_relays_cpu_s: ours.cpu.hosts_and_relays_cpu_s,
      ours_cpu_floor_s: ours.cpu.cpu_floor_s, one_host_cpu_s: one.cpu.cpu_s, one_host_cpu_floor_s: one.cpu.cpu_floor_s, one_host_uplink_bytes: one.uplink,
      peer_copy_lines: ours.peerLines, refused_lines: ours.refused, ...(ours.firstRefusal ? { first_refusal: ours.firstRefusal } : {}),
    });

    // One host alone over the same uplink (on the site, so the same path; nobody to pass it to).
    const one = await timedUp(stack("one", ["f00"], () => ({ site: SITE }), seeds.one.seed), "one host");
    console.error(`bench fan-out: one host ${round(one.seconds)} s, uplink ${one.uplink} bytes`);

    // (p) all N hosts in one `up`, fanned out over the site's LAN.
    const p = await timedUp(stack("p", fleet, () => ({ site: SITE }), seeds.p.seed), "fan-out up");
    emit(figures("p-fan-out-site", p, one.seconds));
    emit(detail("p-fan-out-site-detail", p, one));

    // (q) the same through a cache on the site: the deployer puts each path there once, the hosts substitute.
    const server = { name: "f00", address: lanAddress.get("f00")! };
    const keys = tempDir("fan-out-cache-keys");
    await lab.exec(server.name, ["sh", "-c", `mkdir -p /var/cache/pnx; nohup node -e '${CACHE_SERVER}' ${server.address} >/dev/null 2>&1 & echo $! > /run/cache-server.pid`]);
    try {
      await run(["nix-store", "--generate-binary-cache-key", `pnx-bench-${runId}`, path.join(keys, "sec"), path.join(keys, "pub")]);
      const pub = fs.readFileSync(path.join(keys, "pub"), "utf8").trim();
      const s = stack("q", fleet, () => ({ cache: { url: `http://${server.address}:8080`, publicKey: pub } }), seeds.q.seed);
      // The signing key is a stack secret (set in-process, as `config set --secret` does: never in argv).
      setStackConfig(loadProject(s.cwd, s.stack), "pulumi-nixos:cacheSigningKey", fs.readFileSync(path.join(keys, "sec"), "utf8").trim(), true);
      const q = await timedUp(s, "cache up");
      emit(figures("q-fan-out-cache", q, one.seconds));
      emit(detail("q-fan-out-cache-detail", q, one));
    } finally {
      await lab.exec(server.name, ["sh", "-c", "kill $(cat /run/cache-server.pid); rm -rf /var/cache/pnx /run/cache-server.pid"], { allowFailure: true });
      fs.rmSync(keys, { recursive: true, force: true });
    }

    if (o.baselines) {
      // Our direct parallel deploy (no site): the closure crosses the uplink once per host.
      const d = await timedUp(stack("direct", fleet, () => ({}), seeds.direct!.seed), "direct up");
      // What an operator scripts today: nix-copy-closure to each host in turn (then switch).
      const loopSys = seeds.loop!.outPath;
      const tx0 = uplinkTx(), t0 = Date.now();
      for (const n of fleet) {
        const h = byName.get(n)!;
        const ssh = `-i ${lab.privateKeyPath} -p ${h.port} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR`;
        await run(["nix-copy-closure", "--to", `root@${h.address}`, loopSys], { env: { ...process.env, NIX_SSHOPTS: ssh }, timeoutMs: 3_600_000 });
        await run(["ssh", ...ssh.split(" "), `root@${h.address}`, `nix-env -p /nix/var/nix/profiles/system --set ${loopSys} && ${loopSys}/bin/switch-to-configuration switch >/dev/null`]);
      }
      const loopS = (Date.now() - t0) / 1000, loopUplink = uplinkTx() - tx0;
      emit({ scenario: "p-fan-out-baselines", ours_s: round(p.seconds), direct_parallel_s: round(d.seconds), direct_uplink_bytes: d.uplink,
        direct_uplink_vs_closure: round(d.uplink / d.closureBytes), nix_copy_closure_loop_s: round(loopS), loop_uplink_bytes: loopUplink,
        ours_vs_direct: round(p.seconds / d.seconds), ours_vs_loop: round(p.seconds / loopS) });
    }
  } finally {
    for (const sig of ["SIGINT", "SIGTERM"] as const) process.removeListener(sig, onSig);
    await lab.down();
  }
}
