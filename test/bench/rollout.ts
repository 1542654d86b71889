/**
 * Bench (o): a rolling deploy (batches of N/4, one `up`) vs what an operator scripts today: four
 * `up --target` runs of N/4 hosts each, with the same good system change, through the engine
 * harness. `npm run bench -- --rollout [--rollout-hosts N]` runs only this (its own lab).
 *
 * Each lab host (systemd as PID 1 in a container, as root) holds inotify instances counted against
 * root's fs.inotify.max_user_instances (never raised here): the hosts this bench may bring up are
 * measured first (one host brought up, its instances counted) and a host count that does not fit
 * is refused with the figures.
 */
import * as fs from "fs";
import * as path from "path";
import { Lab, LabHostInfo } from "../../provider/lab/lab";
import { engine, expectExit, StackRef } from "../helpers/engine";
import { nixConfig, writeStack } from "../helpers/stack";

const round = (n: number) => Math.round(n * 1000) / 1000;

/** inotify instances open on this machine, by lab host cgroup (`pulumi-nixos-lab/<netns>`; "" = not a lab host). */
function inotifyByHost(): Map<string, number> {
  const by = new Map<string, number>();
  for (const p of fs.readdirSync("/proc").filter((x) => /^\d+$/.test(x))) {
    let fds: string[] = [];
    try { fds = fs.readdirSync(`/proc/${p}/fd`); } catch { continue; }
    let n = 0;
    for (const f of fds) { try { if (fs.readlinkSync(`/proc/${p}/fd/${f}`) === "anon_inode:inotify") n++; } catch { /* gone */ } }
    if (!n) continue;
    let host = "";
    // A child forked but not yet exec'd (`(agetty)`) shares its parent's instances: not counted twice.
    try { if (fs.readFileSync(`/proc/${p}/comm`, "utf8").startsWith("(")) continue; } catch { continue; }
    try { host = /\/pulumi-nixos-lab\/([^/\n]+)/.exec(fs.readFileSync(`/proc/${p}/cgroup`, "utf8"))?.[1] ?? ""; } catch { /* gone */ }
    by.set(host, (by.get(host) ?? 0) + n);
  }
  return by;
}
const inotifyInstances = () => [...inotifyByHost().values()].reduce((a, b) => a + b, 0);

/**
 * Instances one booted lab host holds: a one-host lab brought up, counted in its own cgroup
 * (other labs on this machine come and go meanwhile: a difference of totals would count theirs).
 */
async function perHost(tmp: string): Promise<number> {
  const before = new Set(inotifyByHost().keys());
  const lab = await Lab.up({ dir: path.join(tmp, "lab-inotify"), hosts: 1 });
  try {
    // Once booted: PID 1 (5 here), dbus, logind, agetty hold theirs for good.
    await new Promise((r) => setTimeout(r, 3000));
    const mine = [...inotifyByHost()].filter(([h]) => h && !before.has(h)).reduce((a, [, n]) => a + n, 0);
    return Math.max(1, mine);
  } finally { await lab.down(); }
}

export async function rolloutScenario(tmp: string, emit: (o: Record<string, unknown>) => void, wanted: number): Promise<void> {
  const limit = Number(fs.readFileSync("/proc/sys/fs/inotify/max_user_instances", "utf8"));
  const each = await perHost(tmp);
  const inUse = inotifyInstances();
  const fits = Math.floor((limit - inUse) / Math.max(1, each));
  const fit21 = { limit, per_host: each, in_use: inUse, hosts_that_fit: fits, twenty_one_fit: inUse + 21 * each <= limit };
  console.error(`bench rollout: fs.inotify.max_user_instances ${limit}, ${each} per lab host, ${inUse} in use: ${fits} hosts fit`);
  if (wanted > fits) {
    emit({ scenario: "o-rollout", skipped: `${wanted} hosts do not fit fs.inotify.max_user_instances (${limit}; ${each} per host, ${inUse} in use): use --rollout-hosts ${Math.floor(fits / 4) * 4}`, ...fit21 });
    return;
  }
  const batch = Math.max(1, Math.floor(wanted / 4));
  let lab: Lab;
  try {
    lab = await Lab.up({ dir: path.join(tmp, "lab-rollout"), hosts: batch * 4 });
  } catch (e) {
    // Other labs on this machine (and boot-time instances) share root's limit: say so, no figure.
    const why = /inotify/.test(String(e)) ? "a lab host could not create an inotify object (fs.inotify.max_user_instances reached: other labs run)" : String(e).split("\n")[0];
    emit({ scenario: "o-rollout", skipped: why, ...fit21, in_use_at_failure: inotifyInstances() });
    return;
  }
  try {
    const hosts: LabHostInfo[] = await lab.status();
    // What the whole lab holds once its hosts answer (the one-host figure is a prediction).
    const withLab = inotifyInstances();
    const names = hosts.map((_, i) => `r${String(i + 1).padStart(2, "0")}`);
    const dir = path.join(tmp, "rollout-prog");
    let s: StackRef = { cwd: dir, stack: "b", state: path.join(dir, "b.state.json") };
    const write = (role: string, rollout?: Record<string, unknown>) => {
      s = writeStack(dir, "b", Object.fromEntries(names.map((n, i) => [n, { targetHost: hosts[i].address, config: nixConfig(n, { role: `${role}-${n}`, paths: 30, sizeKB: 8 }) }])),
        { "pulumi-nixos:sshPrivateKeyFile": lab.privateKeyPath, ...(rollout ? { "pulumi-nixos:rollout": rollout } : {}) });
    };
    write("v1");
    expectExit(await engine("up", s), 0, "first deploy");
    // Ours: one up, batches of `batch` (no canary: the same four groups as the baseline).
    write("v2", { batchSize: batch });
    const t0 = Date.now();
    const r = await engine("up", s);
    const ours = (Date.now() - t0) / 1000;
    expectExit(r, 0, "rolling up");
    const waves = (r.stdout.split("\nDiagnostics:")[0].match(/rollout network: wave \d+ started/g) ?? []).length;
    // Baseline: four targeted runs, without a rollout.
    write("v3");
    const t1 = Date.now();
    for (let g = 0; g < 4; g++) {
      const targets = names.slice(g * batch, (g + 1) * batch).flatMap((n) => ["--target", `network-${n}`]);
      expectExit(await engine("up", s, targets), 0, `targeted run ${g + 1}`);
    }
    const base = (Date.now() - t1) / 1000;
    emit({ scenario: "o-rollout", hosts: batch * 4, batch, waves, ours_s: round(ours), baseline_s: round(base), ratio: round(ours / base),
      target: "<= 1.2x four --target runs", ...fit21,
      in_use_with_lab: withLab, per_host_in_lab: round((withLab - inUse) / hosts.length) });
  } finally { await lab.down(); }
}
