/**
 * Waves of machine deploys, formed inside the dynamic-provider plugin. The engine calls Update only
 * for resources whose diff says changed, and runs every dynamic resource of a run in ONE plugin
 * process (@pulumi/pulumi cmd/dynamic-provider), so module state here is shared by every Machine
 * of the run. Each deploy asks for its turn; a wave starts when the previous one ended (every
 * machine deployed, confirmed and its health checks passed), and a wave with more failures than
 * allowed stops the rollout: the machines still waiting fail at once and are left as they were.
 *
 * A waiting deploy holds an engine step slot (pkg/resource/deploy/step_executor.go runs at most
 * --parallel steps), so a deploy never waits for one whose Update has not started: waves are formed
 * from the deploys that have arrived. A wave closes as soon as every machine of the network that is
 * to change has arrived (known from Check/Diff, see {@link noteChange}); otherwise SETTLE_MS after
 * the last arrival, so Updates that never come (a cancelled run, --target, a slot-starved engine at
 * --parallel 1) cost seconds, never a deadlock. Keyed by network: two networks roll out apart.
 * Nothing here knows about NixOS: any job keyed by a network and a member name can take turns.
 */
import { MachineRollout, resolveCount } from "./settings";
import { writeLogLine, Logger } from "../util/log";

/** How long a wave that is not full waits for more deploys to arrive. */
export const SETTLE_MS = 2000;

/** One wave, as the summary shows it. */
export interface WaveRecord {
  number: number;
  canary: boolean;
  machines: string[];
  startedAt: Date;
  endedAt?: Date;
  /** Failed machines with a short reason ("failed its health check"). */
  failed: { name: string; why: string }[];
}

interface Waiting { name: string; rank: number; start: () => void; refuse: (e: Error) => void }

/** The rollout of one network in this run. */
class Rollout {
  settings: MachineRollout;
  /** Whether a member is to be deployed in this run (Check/Diff); absent: not seen yet. */
  readonly changes = new Map<string, boolean>();
  readonly arrived = new Set<string>();
  readonly waiting: Waiting[] = [];
  readonly waves: WaveRecord[] = [];
  running?: { wave: WaveRecord; left: number };
  /** Why no later wave starts. */
  stopped?: string;
  private timer?: NodeJS.Timeout;
  private pauseUntil = 0;

  constructor(s: MachineRollout) { this.settings = s; }

  /** Every member that is to change has arrived (or never will change): nothing to wait for. */
  private complete(): boolean {
    return this.settings.members.every((m) => this.arrived.has(m) || this.changes.get(m) === false);
  }

  /**
   * Starts the next wave when one may start; otherwise arms the timer that will. An arrival
   * (`restart`) restarts the settle time; what Check/Diff learn only closes a wave earlier.
   */
  schedule(restart = true): void {
    if (this.running || this.stopped || !this.waiting.length) return;
    const wait = Math.max(this.pauseUntil - Date.now(), this.complete() ? 0 : SETTLE_MS);
    if (this.timer && (restart || wait === 0)) { clearTimeout(this.timer); this.timer = undefined; }
    if (this.timer) return;
    if (wait > 0) { this.timer = setTimeout(() => { this.timer = undefined; this.pauseUntil = 0; this.close(); }, wait); return; }
    this.close();
  }

  /** Forms a wave of the waiting deploys: `order` rank, then name; the canary wave first. */
  private close(): void {
    if (this.running || this.stopped || !this.waiting.length) return;
    const s = this.settings;
    const canary = this.waves.length === 0 && s.canary > 0;
    const size = canary ? s.canary : s.batchSize > 0 ? s.batchSize : Infinity;
    this.waiting.sort((a, b) => a.rank - b.rank || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    const go = this.waiting.splice(0, size);
    const wave: WaveRecord = { number: this.waves.length + 1, canary, machines: go.map((w) => w.name), startedAt: new Date(), failed: [] };
    this.waves.push(wave);
    this.running = { wave, left: go.length };
    summaryLine(s.network, `wave ${wave.number}${canary ? " (canary)" : ""} started: ${wave.machines.join(", ")}`);
    for (const w of go) w.start();
  }

  /** A machine of the running wave ended; the last one ends the wave and decides what follows. */
  finished(name: string, error?: unknown): void {
    const r = this.running!;
    if (error !== undefined) r.wave.failed.push({ name, why: failureReason(error) });
    if (--r.left > 0) return;
    const endedAt = new Date();
    r.wave.endedAt = endedAt;
    this.running = undefined;
    const w = r.wave;
    // The canary wave tolerates no failure; a percentage of maxFailures is of the wave's machines.
    const allowed = w.canary ? 0 : resolveCount(this.settings.maxFailures, w.machines.length, 0);
    const outcome = !w.failed.length ? "deployed" : `${w.failed.map((f) => `${f.name} ${f.why}`).join(", ")} (${w.failed.length} of ${w.machines.length} failed, ${allowed} allowed)`;
    summaryLine(this.settings.network, `wave ${w.number}${w.canary ? " (canary)" : ""}: ${w.machines.join(", ")}; ${clock(w.startedAt)} → ${clock(endedAt)}; ${outcome}`);
    if (w.failed.length > allowed) {
      this.stopped = `the rollout stopped after wave ${w.number}: ${w.failed.map((f) => `${f.name} ${f.why}`).join(", ")}`;
      const left = this.waiting.splice(0).sort((a, b) => (a.name < b.name ? -1 : 1));
      summaryLine(this.settings.network, `${this.stopped}${left.length ? `; not started: ${left.map((x) => x.name).join(", ")}` : ""}`);
      for (const x of left) x.refuse(notStarted(x.name, this.stopped));
      return;
    }
    this.pauseUntil = this.settings.pauseSeconds > 0 ? Date.now() + this.settings.pauseSeconds * 1000 : 0;
    this.schedule();
  }
}

/** Rollouts of this plugin process (one per network), for the run. */
const rollouts = new Map<string, Rollout>();

function rolloutOf(s: MachineRollout): Rollout {
  let r = rollouts.get(s.network);
  if (!r) { r = new Rollout(s); rollouts.set(s.network, r); }
  else r.settings = s; // every member carries the same settings; the newest program wins
  return r;
}

/**
 * What Check/Diff learned about a member: whether its deploy is to run in this run (a create or a
 * system change) or not (unchanged, record-only). A wave closes at once when nothing is awaited.
 */
export function noteChange(s: MachineRollout | undefined, name: string, willDeploy: boolean): void {
  if (!s) return;
  const r = rolloutOf(s);
  r.changes.set(name, willDeploy);
  r.schedule(false);
}

/**
 * Runs `deploy` in the machine's wave: waits (touching nothing) until its wave starts, or fails
 * at once when the rollout stopped. Without a rollout, runs it now.
 */
export async function inWave<T>(s: MachineRollout | undefined, name: string, log: Logger, deploy: () => Promise<T>): Promise<T> {
  if (!s) return deploy();
  const r = rolloutOf(s);
  if (r.stopped) throw notStarted(name, r.stopped);
  r.arrived.add(name);
  r.changes.set(name, true);
  const queued = Date.now();
  await new Promise<void>((start, refuse) => {
    r.waiting.push({ name, rank: s.rank, start, refuse });
    log(`rollout ${s.network}: waiting for its wave`);
    r.schedule();
  });
  const wave = r.running!.wave;
  log(`rollout ${s.network}: wave ${wave.number}${wave.canary ? " (canary)" : ""} (${wave.machines.join(", ")}) started after ${((Date.now() - queued) / 1000).toFixed(1)} s`);
  try {
    const out = await deploy();
    r.finished(name);
    return out;
  } catch (e) {
    r.finished(name, e);
    throw e;
  }
}

/** The waves of a network so far in this run (for tests and the CLI). */
export function wavesOf(network: string): WaveRecord[] {
  return rollouts.get(network)?.waves ?? [];
}

/** The error of a machine whose wave never started: it was not touched. */
function notStarted(name: string, why: string): Error {
  return new Error(`Machine ${name}: not started: ${why}; ${name} was left exactly as it was`);
}

/** A deploy error in a few words, for the wave's outcome. */
export function failureReason(e: unknown): string {
  const m = e instanceof Error ? e.message : String(e);
  if (/health check failed/.test(m)) return "failed its health check";
  if (/not confirmed/.test(m)) return "was not confirmed (rolled back)";
  if (/exited with 4|units failed/.test(m)) return "activated with failed units";
  if (/switch-to-configuration/.test(m)) return "failed to activate";
  if (/connect|unreachable|timed out/i.test(m)) return "could not be reached";
  return "failed";
}

/** `rollout <network>: …`: a lasting line of the run (the plugin's stderr is the stack's diagnostics). */
function summaryLine(network: string, text: string): void {
  writeLogLine(`rollout ${network}: ${text}\n`);
}

const clock = (d: Date) => d.toISOString().slice(11, 23);
