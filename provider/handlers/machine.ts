/**
 * What the Machine dynamic resource does on create/update/read/delete. Loaded at run time by the
 * serialized provider (see resources/machine-provider.ts), so none of this lands in `__provider`.
 */
import { wired } from "./wire";
import { withReadInputs } from "./read-inputs";
import { commandConnection, CommandConnection } from "../command-connection";
import { samePath } from "../util/recorded-path";
import * as fs from "fs";
import { Connection, connectionLabel, normalizeConnection, pinnedConnection, portOf, withRecordedProxyKeys } from "../connection";
import { closureOf, isValidLocally, realise, ClosurePath } from "../nix/closure";
import { BuildProgress, verboseBuilds } from "../nix/build-progress";
import { pushClosure, sizeOf } from "../host/push";
import { missingOnHost } from "../host/copy";
import { timeoutMs } from "../util/timeouts";
import { FanOutResult, describeFanOut, siteCoordinator } from "../fanout/site";
import { throughCache } from "../fanout/cache-deploy";
import { activationStep, Action, ActivationResult, ActivationStep, SYSTEM_PROFILE } from "../host/activate";
import { HealthCheck, healthCheckProblems } from "../host/health";
import { confirmOrRollBack, isLost, magicOption, recoverAfterDrop } from "./magic-rollback";
import { readFacts } from "../host/facts";
import { withHost } from "../ssh/pool";
import { deployLock } from "../host/lock";
import { SshSession, shq } from "../ssh/session";
import { resourceLogger, formatBytes, Logger, plural } from "../util/log";
import { stackOf, urnOf } from "../util/engine-log";
import { CheckFailure, isUnknown, validateConnection } from "./validate";
import { connectionChanged, recordedConnection } from "./connection-diff";
import { closureCheck } from "./closure-changes";
import { unitCheck } from "./unit-changes";
import { ClosureManifest, isManifest, manifestOf, manifestOfClosure } from "../nix/manifest";
import { diffManifests, summarizeDiff } from "../nix/closure-diff";
import { readRemoteClosure } from "../host/remote-closure";
import { SwitchUnitLines, SwitchUnits } from "../host/dry-activate";
import { inWave, noteChange } from "../rollout/coordinator";
import { healthGate } from "../rollout/health-gate";
import type { MachineRollout } from "../rollout/settings";

/** Machine inputs as the provider receives them (plain values). */
export interface MachineInputs {
  kind?: "machine";
  name: string;
  connection: Connection;
  systemPath: string;
  drvPath?: string;
  configuration?: string;
  flake?: string;
  action: Action;
  buildOn: "local" | "target";
  substituteOnTarget: boolean;
  /** The machine's site (fan-out over its LAN); absent: copied straight over the deployer's link. */
  site?: string;
  /** A binary cache the deployer puts the closure into and the host substitutes from. */
  cache?: { url: string; publicKey: string };
  /** The cache's secret key (never recorded in outputs). */
  cacheSigningKey?: string;
  /** true/false: always/never zstd; "auto": measured per link. */
  compress: boolean | "auto";
  connectTimeout: number;
  activationTimeout: number;
  /**
   * NixOps's `network.enableRollback`: whether the deployer keeps a network profile for
   * `nixops rollback` (nixops/deployment.py). Recorded only: it never deletes host generations.
   */
  enableRollback?: boolean;
  /** Host system generations kept after a successful deploy: a count (the newest N) or "all" (default). */
  keepGenerations?: number | "all";
  /** Labels for selecting machines; a change is recorded without redeploying. */
  tags?: string[];
  /** Build the system during preview (Check) so `closureChanges` is exact. */
  previewBuild?: boolean;
  /** Set by Check in a preview: what changes inside the machine (never a reason to update by itself). */
  closureChanges?: string[];
  /** In a preview: copy the closure and dry-activate it on the host, for `unitChanges` (implies previewBuild). */
  previewDryActivate?: boolean;
  /** Set by Check in a preview with previewDryActivate: `would restart x.service` lines (never a reason to update). */
  unitChanges?: string[];
  /** From the program, removed by Check: whether this run is a preview (see closure-changes.ts). */
  dryRun?: boolean;
  /** Set by Check: the manifest of the system as Check knew it (exact or from its derivations). */
  closureManifest?: ClosureManifest;
  /** Arm a rollback before switching, cancelled only by a confirmation over a new connection (default true). */
  magicRollback?: boolean;
  /** Seconds to confirm after the switch (default 30); the host's deadline is activationTimeout + this. */
  confirmTimeout?: number;
  /** Run on the host over the confirming connection; a failure rolls back. */
  healthChecks?: HealthCheck[];
  /** The program's module arguments (recorded for the plan: closure-changes.ts names those not known yet). */
  specialArgs?: Record<string, unknown>;
  /** Seconds to keep dialing a host that is still coming up (default 0). */
  waitForSsh?: number;
  /** Set by a Network with a rollout: the machine's place in the waves (recorded only). */
  rollout?: MachineRollout;
}

/** Machine outputs: the inputs plus what the deploy found. */
export interface MachineOutputs extends MachineInputs {
  /** Where the host was reached (the ssh config applied): plain outputs, never secret. */
  host: string;
  port: number;
  user: string;
  /** A ready `remote.Command` connection (a secret: it may hold the private key). */
  commandConnection: CommandConnection;
  generation: number;
  previousSystemPath: string;
  nixosVersion: string;
  hostPublicKey: string;
  activatedAt: string;
  closureSize: { bytes: number; paths: number };
  bytesCopied: number;
  /** Units reported failed by the last activation (exit 4); a non-empty list makes the next up retry. */
  failedUnits: string[];
  /** The deployed closure's manifest (exact), the old side of the next closure diff. */
  closureManifest?: ClosureManifest;
}

const ACTIONS = ["switch", "boot", "test"];
const STORE_PATH = /^\/nix\/store\/[0-9a-z]{32}-[^/]+$/;

/** Validates inputs before anything touches a host; unknown values (preview) are skipped. */
async function checkMachine(olds: Partial<MachineInputs>, news: MachineInputs): Promise<{ inputs: MachineInputs; failures: CheckFailure[] }> {
  const f: CheckFailure[] = validateConnection(news.connection);
  if (!isUnknown(news.systemPath) && !STORE_PATH.test(String(news.systemPath ?? ""))) {
    f.push({ property: "systemPath", reason: `Machine ${news.name}: systemPath must be a store path, got '${news.systemPath}'` });
  }
  if (!isUnknown(news.action) && !ACTIONS.includes(news.action)) {
    f.push({ property: "action", reason: `Machine ${news.name}: action must be one of ${ACTIONS.join(", ")}, got '${news.action}'` });
  }
  if (!isUnknown(news.buildOn) && !["local", "target"].includes(news.buildOn)) {
    f.push({ property: "buildOn", reason: `Machine ${news.name}: buildOn must be 'local' or 'target', got '${news.buildOn}'` });
  }
  if (news.buildOn === "target" && !news.drvPath) {
    f.push({ property: "buildOn", reason: `Machine ${news.name}: buildOn 'target' needs a configuration or flake (a drvPath), not only systemPath` });
  }
  if (news.magicRollback !== undefined && !isUnknown(news.magicRollback) && typeof news.magicRollback !== "boolean") {
    f.push({ property: "magicRollback", reason: `Machine ${news.name}: magicRollback must be true or false, got '${news.magicRollback}'` });
  }
  if (news.confirmTimeout !== undefined && !isUnknown(news.confirmTimeout) && !(Number(news.confirmTimeout) > 0)) {
    f.push({ property: "confirmTimeout", reason: `Machine ${news.name}: confirmTimeout must be a positive number of seconds` });
  }
  if (!isUnknown(news.healthChecks)) {
    for (const p of healthCheckProblems("healthChecks", news.healthChecks)) f.push({ property: "healthChecks", reason: `Machine ${news.name}: ${p}` });
  }
  for (const k of ["connectTimeout", "activationTimeout"] as const) {
    if (!isUnknown(news[k]) && !(Number(news[k]) > 0)) f.push({ property: k, reason: `Machine ${news.name}: ${k} must be a positive number of seconds` });
  }
  if (news.keepGenerations !== undefined && !isUnknown(news.keepGenerations) && news.keepGenerations !== "all"
    && !(Number.isInteger(news.keepGenerations) && Number(news.keepGenerations) >= 1)) {
    f.push({ property: "keepGenerations", reason: `Machine ${news.name}: keepGenerations must be a whole number >= 1 or "all", got '${news.keepGenerations}'` });
  }
  if (news.previewBuild !== undefined && !isUnknown(news.previewBuild) && typeof news.previewBuild !== "boolean") {
    f.push({ property: "previewBuild", reason: `Machine ${news.name}: previewBuild must be true or false, got '${news.previewBuild}'` });
  }
  if (news.previewDryActivate !== undefined && !isUnknown(news.previewDryActivate) && typeof news.previewDryActivate !== "boolean") {
    f.push({ property: "previewDryActivate", reason: `Machine ${news.name}: previewDryActivate must be true or false, got '${news.previewDryActivate}'` });
  }
  if (news.waitForSsh !== undefined && !isUnknown(news.waitForSsh) && !(typeof news.waitForSsh === "number" && news.waitForSsh >= 0)) {
    f.push({ property: "waitForSsh", reason: `Machine ${news.name}: waitForSsh must be a number of seconds >= 0, got '${news.waitForSsh}'` });
  }
  if (f.length) { const { dryRun: _d, ...clean } = news; return { inputs: clean, failures: f }; }
  // A new machine deploys in a wave (an existing one is known after its Diff).
  if (!olds.systemPath) noteChange(news.rollout, news.name, true);
  // What changes inside the machine, for the plan (closureChanges is never a reason to update: see diff).
  const { closureChanges: _c, closureManifest: _m, unitChanges: _u, dryRun, ...rest } = news;
  const previewBuild = news.previewBuild === true || news.previewDryActivate === true;
  const closure = await closureCheck(olds, { ...news, previewBuild }, dryRun === true);
  return { inputs: { ...rest, ...closure, ...await unitCheck(olds, news, dryRun === true) }, failures: f };
}

/** Update when the system, action or anything else changed; replace when the host changes. */
/** Defaults of inputs that states written before them lack. */
const INPUT_DEFAULTS: Partial<Record<keyof MachineInputs, unknown>> = { keepGenerations: "all", waitForSsh: 0 };

function diffMachine(_id: string, olds: MachineOutputs, news: MachineInputs): { changes: boolean; replaces: string[]; deleteBeforeReplace: boolean } {
  const replaces = olds.connection?.host !== news.connection?.host ? ["connection"] : [];
  const keys: (keyof MachineInputs)[] = ["systemPath", "action", "enableRollback", "keepGenerations", "buildOn", "substituteOnTarget", "compress", "connectTimeout", "activationTimeout", "drvPath", "tags",
    "magicRollback", "confirmTimeout", "healthChecks", "waitForSsh"];
  // Inputs newer than a recorded state compare as their defaults (an upgrade is no change);
  // paths recorded absolute by older versions name the same file as the relative ones now.
  const value = (x: Partial<MachineInputs>, k: keyof MachineInputs) => JSON.stringify(x[k] ?? INPUT_DEFAULTS[k] ?? null);
  const changed = keys.some((k) => value(olds, k) !== value(news, k))
    || !samePath(olds.configuration, news.configuration) || !samePath(olds.flake, news.flake)
    || connectionChanged(olds.connection, news.connection, olds.hostPublicKey);
  const changes = changed || replaces.length > 0 || (olds.failedUnits?.length ?? 0) > 0;
  // Only deploys take turns in a rollout: record-only updates go at once (see updateMachine).
  noteChange(news.rollout, news.name, changes && (replaces.length > 0 || redeploys(olds, news)));
  return { changes, replaces, deleteBeforeReplace: false };
}


async function createMachine(inputs: MachineInputs): Promise<{ id: string; outs: MachineOutputs }> {
  const id = `${inputs.name}@${inputs.connection.host}:${portOf(inputs.connection)}`;
  const log = resourceLogger(inputs.name, urnOf(inputs));
  const outs = await inWave(inputs.rollout, inputs.name, log, async () => healthGate(inputs, await deploy(inputs, inputs.connection.hostPublicKey), id, log));
  return { id, outs };
}

async function updateMachine(id: string, olds: MachineOutputs, news: MachineInputs): Promise<{ outs: MachineOutputs }> {
  const pin = news.connection.hostPublicKey || olds.hostPublicKey;
  if (!redeploys(olds, news)) {
    // Only connection details or options changed: record them, the host is not touched.
    const { closureManifest: _m, cacheSigningKey: _k, ...rest } = { ...olds, ...news };
    const connection = recordedConnection(news.connection, pin, olds.connection);
    return { outs: { ...rest, ...(olds.closureManifest ? { closureManifest: olds.closureManifest } : {}), ...reachedAt(connection) } };
  }
  const log = resourceLogger(news.name, urnOf(news));
  return { outs: await inWave(news.rollout, news.name, log, async () => healthGate(news,
    await deploy({ ...news, connection: withRecordedProxyKeys(normalizeConnection(news.connection), olds.connection) }, pin, id, olds.closureManifest), id, log)) };
}

/** Whether an update touches the host (a new system or action, a retry), not only the record. */
function redeploys(olds: MachineOutputs, news: MachineInputs): boolean {
  return olds.systemPath !== news.systemPath || olds.action !== news.action || (olds.failedUnits?.length ?? 0) > 0 || !olds.generation;
}

/** Refresh: what does the host run now? A network error is an error, never "resource gone". */
async function readMachine(id: string, props: MachineOutputs): Promise<{ id: string; props: MachineOutputs }> {
  const conn = normalizeConnection(props.connection);
  const pin = props.connection.hostPublicKey || props.hostPublicKey;
  const facts = await withHost(conn, { pin, connectTimeoutMs: (props.connectTimeout ?? 15) * 1000 }, (s) => readFacts(s));
  // `boot` activates at the next reboot: compare the boot default (profile) instead of the running system.
  const observed = props.action === "boot" ? facts.profileSystem : facts.currentSystem;
  return { id, props: { ...props, systemPath: observed, generation: facts.generation, nixosVersion: facts.nixosVersion || props.nixosVersion || "" } };
}

async function removeMachine(_id: string, props: MachineOutputs): Promise<void> {
  resourceLogger(props.name, urnOf(props))(`forgotten; ${connectionLabel(normalizeConnection(props.connection))} keeps running ${props.systemPath}`);
}

/** Connect → realise → query → copy → profile → activate, each phase announced. */
async function deploy(inputs: MachineInputs, pin: string | undefined, id?: string, previous?: ClosureManifest): Promise<MachineOutputs> {
  const log = resourceLogger(inputs.name, urnOf(inputs));
  // switch-to-configuration's NixOS-style unit lines, for the closing summary.
  const units = unitWatcher(log);
  const conn = normalizeConnection(inputs.connection);
  // Local work (build, closure) needs no host: it runs while the connection is set up.
  const local = inputs.buildOn === "target" ? closureOf([inputs.drvPath!]) : localClosure(inputs, log);
  local.catch(() => undefined);
  log(`connecting to ${connectionLabel(conn)}`);
  // The host stays locked against other deployers from the first command to the activation.
  return withHost(conn, { pin, connectTimeoutMs: inputs.connectTimeout * 1000, lock: deployLock(inputs.name, stackOf(inputs)), waitForSshMs: (inputs.waitForSsh ?? 0) * 1000, onWait: log }, async (s) => {
    const hostPublicKey = s.hostPublicKey;
    const activation = { timeoutSec: inputs.activationTimeout, log: units.log, magicRollback: magicOption(inputs) };
    let act: ActivationResult | undefined;
    // Runs an activation step; a connection lost once it started is recovered by reading the host.
    let armedStep: ActivationStep | undefined;
    const activateWith = async (step: ActivationStep, go: () => Promise<boolean>): Promise<ActivationResult | undefined> => {
      try {
        if (!await go()) return undefined;
      } catch (e) {
        if (!step.started() || !isLost(e)) throw e;
        armedStep = step;
        return recoverAfterDrop(inputs, conn, hostPublicKey, step, e, log);
      }
      armedStep = step;
      return step.result(s.label);
    };
    const alone = (step: ActivationStep) => async () => {
      await s.exec(step.script, { stdin: step.stdin, privileged: true, what: step.what, timeoutMs: step.timeoutMs, onLine: step.onLine });
      return true;
    };
    let transfer: Transfer;
    let fanned: FanOutResult | undefined;
    let manifest: ClosureManifest | undefined;
    if (inputs.buildOn === "target") {
      transfer = await buildOnTarget(s, inputs, await local, log);
    } else {
      const closure = await local;
      manifest = manifestOfClosure(inputs.systemPath, closure);
      // Optimistic: if the host has the whole closure, the check and the activation are one command.
      log(`checking which of ${plural(closure.length, "path")} (${formatBytes(sizeOf(closure).bytes)}) the host lacks; ${inputs.action} right away if none`);
      const first = activationStep(inputs.systemPath, inputs.action, { ...activation, requirePaths: closure.map((p) => p.path) });
      act = (await activateWith(first, alone(first)))!;
      if (act.missing.length) {
        let missing = act.missing;
        if (inputs.cache) missing = await throughCache(s, inputs, closure, missing, log);
        if (inputs.site && missing.length) {
          // Over the site's LAN from peers where one has it, else over the uplink once for the site.
          // Peers reach the host where its sshd answered us (SSH_CONNECTION's server address): its
          // LAN address, also when we come through a bastion or a relay (sshd(8), ENVIRONMENT).
          const [, , lanAddress, lanPort] = (await s.exec(`echo "$SSH_CONNECTION"`, { what: "address query", timeoutMs: 30_000 })).stdout.trim().split(/\s+/);
          fanned = await siteCoordinator(inputs.site).obtain({ name: inputs.name, session: s, lanAddress: lanAddress || conn.host, lanPort: Number(lanPort) || portOf(conn), hostPublicKey },
            closure, missing, log, timeoutMs("command"));
          log(describeFanOut(inputs.site, fanned));
          missing = await missingOnHost(s, missing);
        }
        // The activation follows the import in the same command.
        const step = activationStep(inputs.systemPath, inputs.action, activation);
        let pushed: Awaited<ReturnType<typeof pushClosure>> | undefined;
        act = await activateWith(step, async () => {
          pushed = await pushClosure(s, closure, { compress: inputs.compress, substituteOnTarget: inputs.substituteOnTarget, missing, log,
            then: { ...step, announce: `activating (${inputs.action})` } });
          return pushed.followedUp;
        });
        transfer = pushed ?? { closureSize: sizeOf(closure), bytesCopied: 0 };
      } else {
        log(`the host had all ${plural(closure.length, "path")}: nothing copied`);
        transfer = { closureSize: sizeOf(closure), bytesCopied: 0 };
      }
    }
    const { closureSize } = transfer;
    const bytesCopied = transfer.bytesCopied + (fanned ? fanned.uplink.bytes + Object.values(fanned.peers).reduce((n, x) => n + x.bytes, 0) : 0);
    manifest ??= transfer.manifest;
    if (!act) {
      log(`activating (${inputs.action})`);
      const step = activationStep(inputs.systemPath, inputs.action, activation);
      act = (await activateWith(step, alone(step)))!;
    }
    // Armed before the switch: confirmed over a new connection, or rolled back (an error).
    if (act.armed && armedStep) await confirmOrRollBack(inputs, conn, hostPublicKey, s, armedStep, log);
    // The cache's signing key is an input only: never recorded in outputs.
    const { cacheSigningKey: _key, ...recorded } = inputs;
    const outs: MachineOutputs = {
      ...recorded,
      ...reachedAt(pinnedConnection(conn, hostPublicKey, s.proxyHostKeys, s.jumpHostKeys)),
      generation: act.generation,
      previousSystemPath: act.previousSystemPath,
      nixosVersion: readLocalVersion(inputs.systemPath),
      hostPublicKey,
      activatedAt: new Date().toISOString(),
      closureSize,
      bytesCopied,
      failedUnits: [],
      ...(manifest ? { closureManifest: manifest } : {}),
    };
    // The summary compares with what the host ran before (read there when it drifted from the record).
    const before = await manifestBefore(s, previous, act.previousSystemPath, manifest);
    const summary = () => {
      log(deploySummary(act!.generation, before, manifest, bytesCopied, units.seen));
      if (fanned) log(describeFanOut(inputs.site!, { ...fanned, siteUplinkBytes: siteCoordinator(inputs.site!).uplinkBytes }));
    };
    if (act.exitCode === 0) {
      log(`${inputs.action} done: generation ${act.generation}, ${inputs.systemPath}`);
      await pruneGenerations(s, inputs.keepGenerations, log);
      summary();
      return outs;
    }
    if (act.exitCode === 4) {
      // Partial failure: the new system is active, but units failed. Recorded, reported, retried next up.
      const failed = act.failedUnits.length ? act.failedUnits : ["(unnamed)"];
      log(`activation finished with failed units: ${failed.join(", ")}`);
      summary();
      throw Object.assign(new Error(`Machine ${inputs.name}: switch-to-configuration ${inputs.action} exited with 4 (some units failed: ${failed.join(", ")})`), {
        id: id ?? `${inputs.name}@${conn.host}:${portOf(conn)}`,
        // The plugin records these as the resource's outputs ("created but unhealthy").
        properties: { ...outs, failedUnits: failed, ...pick(inputs as unknown as Record<string, unknown>, "__provider") },
        reasons: [`units failed on ${inputs.name}: ${failed.join(", ")}`],
      });
    }
    const why = act.exitCode === 124 ? `timed out after ${inputs.activationTimeout} s (activationTimeout)`
      : act.exitCode === 100 ? "exited 100: the new system needs a reboot (its init is incompatible with the running one); it is the boot default, reboot the host to run it"
        : act.exitCode === 11 ? "exited 11: another switch-to-configuration holds its lock (/run/nixos/switch-to-configuration.lock); nothing was activated, try again when it has finished"
          : `failed with exit ${act.exitCode}`;
    const back = act.reactivated ? `; the host rolled back to generation ${act.reactivated.generation} and re-activated it${act.reactivated.rc ? ` (which exited ${act.reactivated.rc})` : ""}`
      : act.rolledBackTo ? `; the system profile was set back to generation ${act.rolledBackTo}` : "";
    throw new Error(`Machine ${inputs.name}: switch-to-configuration ${inputs.action} ${why}${back}; ` +
      `the host keeps running ${act.previousSystemPath || "its previous system"} and the state keeps the old system. ` +
      `Last output: ${act.tail.slice(-5).join(" | ")}`);
  });
}

/**
 * Keeps the newest `keep` system generations (`nix-env --delete-generations +N`, as
 * `nix-collect-garbage` users do); "all" (the default) keeps every one. NixOps never deleted host
 * generations: its `enableRollback` only decided whether the deployer kept a network profile.
 */
async function pruneGenerations(s: SshSession, keep: number | "all" | undefined, log: Logger): Promise<void> {
  if (keep === undefined || keep === "all") return;
  const r = await s.exec(`nix-env -p ${SYSTEM_PROFILE} --delete-generations +${Math.floor(keep)}`, { privileged: true, what: "deleting old generations" });
  const removed = (r.stdout + r.stderr).split("\n").filter((l) => /^removing (profile )?(generation|version)/.test(l.trim())).length;
  log(`keepGenerations ${keep}: ${removed ? `${plural(removed, "older generation")} deleted` : "no older generation to delete"}`);
}

/**
 * The manifest of what the host ran before this deploy: the recorded one when the host still ran
 * the recorded system, else that system's closure as the host has it (a host changed by hand, or
 * a refresh never run; one command); undefined when that cannot be read, so no change count is
 * made up. A first deploy (nothing recorded) counts none.
 */
async function manifestBefore(s: SshSession, recorded: ClosureManifest | undefined, ran: string, manifest: ClosureManifest | undefined): Promise<ClosureManifest | undefined> {
  if (!isManifest(recorded) || recorded.system === ran) return recorded;
  if (!manifest || !ran || ran === manifest.system) return undefined;
  const closure = await readRemoteClosure(s, ran).catch(() => undefined);
  return closure ? manifestOf(ran, closure, true) : undefined;
}

/** Size of the system closure and what was sent to the host (and the manifest, when built there). */
interface Transfer { closureSize: { bytes: number; paths: number }; bytesCopied: number; manifest?: ClosureManifest }

/** `generation 13 (2 upgraded, 3 added, 7.1 MiB copied; restarted: nginx.service)`: a deploy's last log line. */
export function deploySummary(generation: number, previous: ClosureManifest | undefined, manifest: ClosureManifest | undefined,
  bytesCopied: number, units: { restarted: string[]; reloaded: string[]; started: string[] }): string {
  const changes = !manifest ? "" : isManifest(previous) && previous.system !== manifest.system
    ? `${summarizeDiff(diffManifests(previous, manifest))}, ` : "";
  const u = (["restarted", "reloaded", "started"] as const).filter((k) => units[k].length).map((k) => `${k}: ${units[k].join(", ")}`);
  return `generation ${generation} (${changes}${formatBytes(bytesCopied)} copied${u.length ? "; " + u.join("; ") : ""})`;
}

/**
 * Passes activation lines on to `log` and remembers the units NixOS-style lines name (both
 * switch-to-configuration implementations' lines: host/dry-activate.ts SwitchUnitLines).
 */
function unitWatcher(log: Logger): { log: Logger; seen: SwitchUnits } {
  const lines = new SwitchUnitLines("activation: ");
  return {
    get seen() { return lines.units; },
    log: (line) => { lines.line(line); log(line); },
  };
}


/** The system's closure in the local store, building it first when it is not there. */
async function localClosure(inputs: MachineInputs, log: Logger): Promise<ClosurePath[]> {
  try {
    return await closureOf([inputs.systemPath]);
  } catch {
    // Valid now: another Machine's build of the same system registered it meanwhile (read again);
    // valid before and still unreadable is a real error.
    if (await isValidLocally(inputs.systemPath)) return closureOf([inputs.systemPath]);
  }
  if (!inputs.drvPath) throw new Error(`Machine ${inputs.name}: ${inputs.systemPath} is not in the local store and there is no derivation to build it`);
  const out = await realise(inputs.drvPath, log);
  if (out !== inputs.systemPath) throw new Error(`Machine ${inputs.name}: build produced ${out}, expected ${inputs.systemPath}`);
  return closureOf([inputs.systemPath]);
}

async function buildOnTarget(s: SshSession, inputs: MachineInputs, drvClosure: ClosurePath[], log: Logger): Promise<Transfer> {
  // The same copy step as for a built system, applied to the derivations.
  const copied = await pushClosure(s, drvClosure, { compress: inputs.compress, log });
  const progress = new BuildProgress(log, verboseBuilds(), " on the host");
  const r = await s.exec(`nix-store --realise ${shq(inputs.drvPath!)}`, { privileged: true, what: "build on target", onLine: (l, st) => { if (st === "stderr") progress.line(l); } })
    .catch((e) => { progress.failed(); throw e; });
  progress.succeeded();
  const out = r.stdout.trim().split("\n")[0];
  if (out !== inputs.systemPath) throw new Error(`Machine ${inputs.name}: build on the host produced ${out}, expected ${inputs.systemPath}`);
  const closure = await readRemoteClosure(s, out);
  return { closureSize: sizeOf(closure), bytesCopied: copied.bytesCopied, manifest: manifestOfClosure(out, closure) };
}

/** The recorded connection with what a program chains from it: host, port, user, commandConnection. */
function reachedAt(connection: Connection): Pick<MachineOutputs, "connection" | "host" | "port" | "user" | "commandConnection"> {
  const commandConn = commandConnection(connection);
  return { connection, host: commandConn.host, port: commandConn.port, user: commandConn.user, commandConnection: commandConn };
}

/** `{ [k]: o[k] }` when o has it: never a key with an undefined value. */
const pick = (o: Record<string, unknown>, k: string): Record<string, unknown> => (o[k] !== undefined ? { [k]: o[k] } : {});

function readLocalVersion(systemPath: string): string {
  try { return fs.readFileSync(`${systemPath}/nixos-version`, "utf8").trim(); } catch { return ""; }
}

/** The handlers the serialized provider calls, every result checked before Pulumi records it (wire.ts). */
export const { check, diff, create, update, read, remove } = wired("Machine", withReadInputs(["generation", "previousSystemPath", "nixosVersion", "hostPublicKey", "activatedAt", "closureSize", "bytesCopied", "failedUnits", "host", "port", "user", "commandConnection"], {
  check: checkMachine, diff: diffMachine, create: createMachine, update: updateMachine, read: readMachine, remove: removeMachine,
}));
