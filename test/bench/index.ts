/**
 * `npm run bench`: deploy figures measured on the lab, one JSON line per scenario
 * (`{"scenario","ours_s","baseline_s","ratio",…}`), baselines measured in the same run.
 * Baseline = what an operator would script: nix-copy-closure --to, then ssh nix-env --set && switch.
 */
import "../helpers/env";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { Lab, LabHostInfo } from "../../provider/lab/lab";
import { run } from "../../provider/util/run";
import { create, MachineInputs } from "../../provider/handlers/machine";
import { closeAllSessions } from "../../provider/ssh/pool";
import { SshSession, sshStats } from "../../provider/ssh/session";
import { evaluateSystem, evaluationStats } from "../../provider/nix/evaluate";
import { closureOf } from "../../provider/nix/closure";
import { copyClosureTo } from "../../provider/host/push";
import { resourceLogger } from "../../provider/util/log";
import { readCpu, cpuSince } from "./cpu";
import { ROOT, STANDIN_NIXPKGS, tempDir } from "../helpers/env";
import { buildSystem, buildBigSystem, BuiltSystem } from "./closures";
import { endImport, stallImport } from "../helpers/stall";
import { closureDiffScenario } from "./closure-diff";
import { confirmScenario } from "./confirm";
import { bastionScenario } from "./bastion";
import { configErrorScenario } from "./config-error";
import { rolloutScenario } from "./rollout";
import { fanOutScenario } from "./fan-out";

const HOSTS = 10;
const emit = (o: Record<string, unknown>) => process.stdout.write(JSON.stringify(o) + "\n");
const secs = async <T>(fn: () => Promise<T>): Promise<[number, T]> => {
  const t0 = process.hrtime.bigint();
  const r = await fn();
  return [Number(process.hrtime.bigint() - t0) / 1e9, r];
};
const round = (n: number) => Math.round(n * 1000) / 1000;

function inputs(h: LabHostInfo, key: string, sys: BuiltSystem): MachineInputs {
  return {
    name: h.name, connection: { host: h.address, port: h.port, user: "root", privateKey: key },
    systemPath: sys.outPath, drvPath: sys.drvPath, action: "switch", buildOn: "local",
    substituteOnTarget: false, compress: false, connectTimeout: 15, activationTimeout: 600,
  };
}

async function baseline(h: LabHostInfo, keyPath: string, sys: BuiltSystem): Promise<void> {
  const sshOpts = `-i ${keyPath} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR`;
  await run(["nix-copy-closure", "--to", `root@${h.address}`, sys.outPath], { env: { ...process.env, NIX_SSHOPTS: sshOpts } });
  await run(["ssh", ...sshOpts.split(" "), `root@${h.address}`,
    `nix-env -p /nix/var/nix/profiles/system --set ${sys.outPath} && ${sys.outPath}/bin/switch-to-configuration switch >/dev/null`]);
}

/** (g), (i), (j): the same deploys over a 20 ms RTT link (latency relay in front of each sshd). */
async function linkScenarios(lab: Lab, _hosts: LabHostInfo[], key: string, tmp: string): Promise<void> {
  const RTT = 20;
  for (const h of lab.names.slice(0, HOSTS)) await lab.link(h, { rttMs: RTT });
  const hosts = await lab.status();
  const [g1, g2, g3, g4, j1, j2] = await Promise.all(["g1", "g2", "g3", "g4", "j1", "j2"].map((seed) => buildSystem(tmp, `link-${seed}`, { paths: 300, sizeKB: 100, seed })));
  const sshOpts = (h: LabHostInfo) => `-i ${lab.privateKeyPath} -p ${h.port} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR`;

  // (g) small closure to an empty host: our copy (what nix-copy-closure does: connect, query,
  // stream, import) vs nix-copy-closure vs a raw `ssh cat` of the export stream; then a whole
  // deploy (copy + profile + switch) of a same-sized closure for reference.
  const conn = (h: LabHostInfo) => ({ host: h.address, port: h.port, user: "root", privateKey: key });
  const [oursG, pushed] = await secs(() => copyClosureTo(conn(hosts[0]), [g1.outPath], { compress: false, log: resourceLogger(hosts[0].name) }));
  const [nccG] = await secs(() => run(["nix-copy-closure", "--to", `root@${hosts[1].address}`, g2.outPath], { env: { ...process.env, NIX_SSHOPTS: `${sshOpts(hosts[1])}` } }));
  const [rawG] = await secs(() => run(["sh", "-c", `nix-store --export $(nix-store -qR ${g3.outPath}) | ssh ${sshOpts(hosts[2])} root@${hosts[2].address} 'cat > /dev/null'`]));
  const [deployG] = await secs(() => create(inputs(hosts[4], key, g4)));
  emit({ scenario: "g-small-closure-20ms", ours_s: round(oursG), baseline_s: round(nccG), ratio: round(oursG / nccG), speedup: round(nccG / oursG),
    raw_stream_s: round(rawG), ours_vs_raw: round(oursG / rawG), paths: pushed.missing, ours_deploy_s: round(deployG),
    target: "ours >= 5x faster than nix-copy-closure; <= 1.3x the raw stream" });
  await closeAllSessions();

  // (i) no-op and one-changed-path redeploys: seconds and SSH commands (each costs ~2 RTT: channel
  // open, exec; output and exit status follow), next to a bare SSH handshake on the same link.
  const [handshake] = await secs(async () => (await SshSession.connect(conn(hosts[4]))).close());
  const before = { ...sshStats };
  const [noop] = await secs(() => create(inputs(hosts[4], key, g4)));
  const noopCmds = sshStats.commands - before.commands;
  const changed = await buildSystem(tmp, "link-g4", { paths: 300, sizeKB: 100, seed: "g4", role: "changed" });
  const mid = { ...sshStats };
  const [one] = await secs(() => create(inputs(hosts[4], key, changed)));
  emit({ scenario: "i-redeploy-20ms", handshake_s: round(handshake), noop_s: round(noop), noop_ssh_commands: noopCmds,
    noop_after_handshake_s: round(noop - handshake), one_changed_s: round(one),
    one_changed_ssh_commands: sshStats.commands - mid.commands, rtt_ms: RTT, target: "no-op <= SSH handshake + 2 RTT" });
  await closeAllSessions();

  // (j) ten hosts in parallel vs one host, all at 20 ms. The lab's hosts run on this machine's
  // cores: the CPU counters show how much of the run was theirs and the floor it sets.
  const cpuOne = readCpu();
  const [oneJ] = await secs(() => create(inputs(hosts[3], key, j1)));
  const one1 = cpuSince(cpuOne);
  const cpuTen = readCpu();
  const [tenJ] = await secs(() => Promise.all(hosts.slice(0, HOSTS).map((h) => create(inputs(h, key, j2)))));
  const ten = cpuSince(cpuTen);
  emit({ scenario: "j-ten-hosts-20ms", ours_s: round(tenJ), one_host_s: round(oneJ), ratio: round(tenJ / oneJ), target: "<= 2x one host",
    one_host_cpu_s: one1.cpu_s, one_host_hosts_cpu_s: one1.hosts_and_relays_cpu_s, ten_cpu_s: ten.cpu_s, ten_deployer_cpu_s: ten.deployer_cpu_s,
    ten_hosts_and_relays_cpu_s: ten.hosts_and_relays_cpu_s, ten_cpu_floor_s: ten.cpu_floor_s, ours_vs_cpu_floor: round(tenJ / ten.cpu_floor_s),
    // With hosts on their own machines only the deployer's share would be on these cores.
    deployer_floor_vs_one_host: round(ten.deployer_cpu_s / os.cpus().length / oneJ) });
  // (h) 1 GiB, half compressible, at 100 Mbit/s: ours ("auto") vs the best of forced none / zstd.
  if (!process.argv.includes("--skip-h")) {
    const big = await buildBigSystem(tmp, "bench-big", "big");
    for (const n of [5, 6, 7]) await lab.link(hosts[n].name, { rttMs: RTT, rateMbit: 100 });
    const shaped = await lab.status();
    const [auto] = await secs(() => create({ ...inputs(shaped[5], key, big), compress: "auto" }));
    const [none] = await secs(() => create({ ...inputs(shaped[6], key, big), compress: false }));
    const [zstd] = await secs(() => create({ ...inputs(shaped[7], key, big), compress: true }));
    emit({ scenario: "h-1gib-100mbit", ours_s: round(auto), none_s: round(none), zstd_s: round(zstd), ratio: round(auto / Math.min(none, zstd)), target: "<= 1.1x the best" });
    await closeAllSessions();
  }
}

/**
 * (e) variant: the same 1 GiB copy to a host that stops reading mid-import (its `nix-store
 * --import` stopped by pid after 2 s): the provider's memory stays bounded, then the copy fails
 * with a clear stall error after PULUMI_NIXOS_STALL_TIMEOUT (10 s here).
 */
async function stalledImport(lab: Lab, h: LabHostInfo, big: BuiltSystem): Promise<void> {
  const STALL_S = 10;
  const child = run([process.execPath, path.join(ROOT, "dist/test/bench/deploy-child.js"), JSON.stringify({ ...inputs(h, "", big), connection: { host: h.address, port: 22, user: "root" } })],
    { allowFailure: true, timeoutMs: 600_000, killGroup: true, env: { ...process.env, PNX_BENCH_KEY: lab.privateKeyPath, PULUMI_NIXOS_STALL_TIMEOUT: String(STALL_S) } });
  child.catch(() => undefined);
  const pid = await stallImport(lab, h.name, 2000);
  const stopped = Date.now();
  const r = await child;
  const errorAfter = (Date.now() - stopped) / 1000;
  await endImport(lab, h.name, pid);
  const out = JSON.parse(r.stdout.trim().split("\n").pop()!);
  emit({ scenario: "e-stalled-import", peak_rss_mb: Math.round(out.peakRssMB), error_after_stop_s: round(errorAfter), stall_timeout_s: STALL_S,
    error: out.error ?? "(none: the deploy succeeded)", target: "peak RSS <= 150 MB, then a clear timeout error" });
}

async function main(): Promise<void> {
  const tmp = tempDir("bench");
  // Progress lines of the handlers go to stderr; the figures are the JSON lines on stdout.
  // `npm run bench -- --stall` runs only (e)'s stalled-host variant (two hosts).
  const stallOnly = process.argv.includes("--stall");
  // `npm run bench -- --bastion` runs only (l) (its own three-host lab).
  if (process.argv.includes("--bastion")) return bastionScenario(tmp, emit).finally(() => fs.rmSync(tmp, { recursive: true, force: true }));
  // `npm run bench -- --confirm` runs only (m) (its own one-host lab).
  if (process.argv.includes("--confirm")) return confirmScenario(tmp, emit).finally(() => fs.rmSync(tmp, { recursive: true, force: true }));
  // `npm run bench -- --rollout [--rollout-hosts N]` runs only (o) (its own lab; N fitted to inotify).
  if (process.argv.includes("--rollout")) {
    const i = process.argv.indexOf("--rollout-hosts");
    return rolloutScenario(tmp, emit, i > 0 ? Number(process.argv[i + 1]) : 20).finally(() => fs.rmSync(tmp, { recursive: true, force: true }));
  }
  // `npm run bench -- --fan-out [--fan-out-hosts N] [--fan-out-mib M] [--baselines]` runs only (p), (q) (its own site lab).
  if (process.argv.includes("--fan-out")) {
    const num = (flag: string, dflt: number) => { const i = process.argv.indexOf(flag); return i > 0 ? Number(process.argv[i + 1]) : dflt; };
    return fanOutScenario(tmp, emit, { hosts: num("--fan-out-hosts", 10), mib: num("--fan-out-mib", 1024), baselines: process.argv.includes("--baselines") })
      .finally(() => fs.rmSync(tmp, { recursive: true, force: true }));
  }
  // `npm run bench -- --config-error` runs only (n) (no lab).
  if (process.argv.includes("--config-error")) return configErrorScenario(tmp, emit).finally(() => fs.rmSync(tmp, { recursive: true, force: true }));
  // `npm run bench -- --closure-diff` runs only (k) (no lab).
  if (process.argv.includes("--closure-diff")) return closureDiffScenario(tmp, emit).finally(() => fs.rmSync(tmp, { recursive: true, force: true }));
  console.error(`bench: building closures and a ${stallOnly ? 2 : HOSTS + 1}-host lab in ${tmp}`);
  const lab = await Lab.up({ dir: path.join(tmp, "lab"), hosts: stallOnly ? 2 : HOSTS + 1 });
  // The lab must come down however the run ends: a reader that stops early (`| head -1`) makes
  // stdout fail with EPIPE, which would otherwise end the process before `finally`; Ctrl-C too.
  process.stdout.on("error", (e: NodeJS.ErrnoException) => { if (e.code !== "EPIPE") throw e; });
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    process.once(sig, () => { void lab.down().finally(() => process.exit(130)); });
  }
  try {
    const hosts = await lab.status();
    const key = fs.readFileSync(lab.privateKeyPath, "utf8");
    // `npm run bench -- --links` runs only (g), (i), (j).
    if (process.argv.includes("--links")) return await linkScenarios(lab, hosts, key, tmp);
    if (stallOnly) return await stalledImport(lab, hosts[1], await buildBigSystem(tmp, "bench-big", "big"));
    const [a, b, c] = await Promise.all(["a", "b", "c"].map((seed) => buildSystem(tmp, `bench-${seed}`, { paths: 300, sizeKB: 100, seed })));

    // (a) one host, fresh 300-path / ~30 MB closure.
    const [oursA, resA] = await secs(() => create(inputs(hosts[0], key, a)));
    const [baseA] = await secs(() => baseline(hosts[HOSTS], lab.privateKeyPath, a));
    emit({ scenario: "a-one-host-fresh", ours_s: round(oursA), baseline_s: round(baseA), ratio: round(oursA / baseA), target: "ratio <= 1.1",
      paths: resA.outs.closureSize.paths, bytes: resA.outs.closureSize.bytes });

    // (b) ten hosts: ours in parallel, baseline a sequential loop of (a).
    const [oursB] = await secs(() => Promise.all(hosts.slice(0, HOSTS).map((h) => create(inputs(h, key, b)))));
    const [baseB] = await secs(async () => { for (const h of hosts.slice(0, HOSTS)) await baseline(h, lab.privateKeyPath, c); });
    emit({ scenario: "b-ten-hosts", ours_s: round(oursB), baseline_s: round(baseB), ratio: round(oursB / baseB),
      ours_vs_one_host: round(oursB / oursA), target: "ours <= 2x our one-host time" });

    // (c) no-op redeploy: nothing to copy.
    const [oursC, resC] = await secs(() => create(inputs(hosts[0], key, a)));
    const [baseC] = await secs(() => baseline(hosts[HOSTS], lab.privateKeyPath, a));
    emit({ scenario: "c-noop-redeploy", ours_s: round(oursC), baseline_s: round(baseC), ratio: round(oursC / baseC),
      bytes_copied: resC.outs.bytesCopied, preview_contacts_host: false, target: "zero bytes copied; preview contacts no host" });

    // (d) one changed path (a 512 KiB /etc file) on top of closure a.
    const changedConfig = path.join(tmp, "bench-a-changed.nix");
    fs.writeFileSync(changedConfig, `{ ... }: {
  imports = [ ${a.configFile} ];
  environment.etc."big.conf".text = builtins.concatStringsSep "" (builtins.genList (i: "line \${toString i} of a changed configuration file\\n") 13000);
}
`);
    const dDrv = (await run(["nix-instantiate", `${STANDIN_NIXPKGS}/nixos`, "-A", "system", "--arg", "configuration", changedConfig])).stdout.trim();
    const dOut = (await run(["nix-store", "--realise", dDrv])).stdout.trim();
    const d: BuiltSystem = { outPath: dOut, drvPath: dDrv, configFile: changedConfig };
    const before = new Set((await closureOf([a.outPath])).map((p) => p.path));
    const changed = (await closureOf([d.outPath])).filter((p) => !before.has(p.path));
    const changedBytes = changed.reduce((n, p) => n + p.narSize, 0);
    const [oursD, resD] = await secs(() => create(inputs(hosts[0], key, d)));
    const [baseD] = await secs(() => baseline(hosts[HOSTS], lab.privateKeyPath, d));
    emit({ scenario: "d-one-changed-path", ours_s: round(oursD), baseline_s: round(baseD), ratio: round(oursD / baseD),
      changed_paths: changed.length, changed_bytes: changedBytes, bytes_copied: resD.outs.bytesCopied,
      copied_vs_changed: round(resD.outs.bytesCopied / changedBytes), target: "bytes copied <= 1.05x the changed paths" });
    await closeAllSessions();

    // (e) peak RSS of a provider process copying a 1 GiB closure.
    const big = await buildBigSystem(tmp, "bench-big", "big");
    const child = await run([process.execPath, path.join(ROOT, "dist/test/bench/deploy-child.js"), JSON.stringify({ ...inputs(hosts[1], "", big), connection: { host: hosts[1].address, port: 22, user: "root" } })],
      { env: { ...process.env, PNX_BENCH_KEY: lab.privateKeyPath } });
    const e = JSON.parse(child.stdout.trim().split("\n").pop()!);
    const [baseE] = await secs(() => baseline(hosts[2], lab.privateKeyPath, big));
    emit({ scenario: "e-peak-rss-1gib", ours_s: round(e.seconds), baseline_s: round(baseE), ratio: round(e.seconds / baseE),
      peak_rss_mb: Math.round(e.peakRssMB), bytes_copied: e.bytesCopied, target: "peak RSS <= 150 MB" });
    await stalledImport(lab, hosts[3], big);

    // (f) evaluation of 10 machines: one evaluation vs 10 nix-instantiate calls.
    const configs = await Promise.all(Array.from({ length: 10 }, async (_, i) => {
      const f = path.join(tmp, `eval-${i}.nix`);
      fs.writeFileSync(f, `{ ... }: { networking.hostName = "eval${i}"; test.closure = { paths = 30; sizeKB = 1; seed = "eval"; }; }\n`);
      return f;
    }));
    const evalsBefore = evaluationStats.evaluations;
    const [oursF] = await secs(() => Promise.all(configs.map((f, i) => evaluateSystem(`eval${i}`, { configuration: f, nixPath: [`nixpkgs=${STANDIN_NIXPKGS}`] }))));
    const [baseF] = await secs(async () => {
      for (const f of configs) await run(["nix-instantiate", "-I", `nixpkgs=${STANDIN_NIXPKGS}`, "<nixpkgs/nixos>", "-A", "system", "--arg", "configuration", f]);
    });
    emit({ scenario: "f-evaluate-ten", ours_s: round(oursF), baseline_s: round(baseF), ratio: round(oursF / baseF),
      evaluations: evaluationStats.evaluations - evalsBefore, target: "one evaluation" });
    await closureDiffScenario(tmp, emit);
    await configErrorScenario(tmp, emit);
    await closeAllSessions();
    await linkScenarios(lab, hosts, key, tmp);
    await confirmScenario(tmp, emit);
    await bastionScenario(tmp, emit);
  } finally {
    await closeAllSessions();
    await lab.down();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

main().then(() => process.exit(0), (e) => { console.error(`bench failed: ${e instanceof Error ? e.stack : e}`); process.exit(1); });
