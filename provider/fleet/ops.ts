/** Fleet operations on live hosts: status, health, generations, rollback, reboot, keys. */
import * as net from "net";
import { FleetMachine } from "./state";
import { portOf } from "../connection";
import { applySshConfig } from "../ssh/ssh-config";
import * as crypto from "crypto";
import { ConnectionLostError, SshSession } from "../ssh/session";
import { readFacts } from "../host/facts";
import { SWITCH_UNIT, SYSTEM_PROFILE, switchFunction } from "../host/activate";
import { STATE_DIR } from "../host/rollback";
import { parseKeyValues } from "../util/key-values";
import { sendKeys } from "../handlers/key";
import type { KeyInputs } from "../handlers/key";
import { HostLockedError, withHostLock } from "../host/lock";
import { describeTimeout, timeoutMs } from "../util/timeouts";
import { HostDryActivation, dryActivateOnHost } from "../host/dry-activate-host";

const CONNECT_MS = 5000;

/** Opens a session with the stack's key and pinned host key (no dial starts after `deadline`, epoch ms). */
export function connect(m: FleetMachine, deadline?: number): Promise<SshSession> {
  return SshSession.connect(m.connection, { pin: m.connection.hostPublicKey || m.hostPublicKey, timeoutMs: CONNECT_MS, deadline });
}

async function withSession<T>(m: FleetMachine, fn: (s: SshSession) => Promise<T>): Promise<T> {
  const s = await connect(m);
  try { return await fn(s); } finally { s.close(); }
}

/**
 * A read-only look at one host within one total budget (`PULUMI_NIXOS_FLEET_TIMEOUT`, 10 s):
 * dials, retries and the reading itself, so one dead host costs the command that much at most.
 */
export async function withReadSession<T>(m: FleetMachine, fn: (s: SshSession) => Promise<T>): Promise<T> {
  const budget = timeoutMs("fleet");
  const deadline = Date.now() + budget;
  const s = await connect(m, deadline).catch((e: Error) => {
    // Out of budget: say so (the last dial's own error follows).
    throw Date.now() + 200 >= deadline ? new Error(`no answer within ${describeTimeout("fleet", budget)}: ${e.message}`) : e;
  });
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([fn(s), new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer from ${s.label} within ${describeTimeout("fleet", budget)}`)), Math.max(1, deadline - Date.now()));
    })]);
  } finally { clearTimeout(timer); s.close(); }
}

/** The stack a machine's URN names (`urn:pulumi:STACK::…`). */
export const stackOf = (m: FleetMachine): string | undefined => /^urn:pulumi:([^:]+)::/.exec(m.urn)?.[1];

/** A session on a host held under the host lock (provider/host/lock.ts), released by the command `releaseWith` picks. */
function withLockedSession<T>(m: FleetMachine, op: string, releaseWith: (script: string) => boolean, fn: (s: SshSession) => Promise<T>): Promise<T> {
  return withSession(m, (s) => withHostLock(s, { machine: m.name, op, stack: process.env.PULUMI_NODEJS_STACK ?? stackOf(m), releaseWith }, () => fn(s)));
}

/** `nixops info` row. */
export interface InfoRow { name: string; status: string; host: string; generation: number | null; system: string; error?: string }

export async function info(m: FleetMachine): Promise<InfoRow> {
  try {
    const f = await withReadSession(m, readFacts);
    return { name: m.name, status: f.currentSystem === m.systemPath ? "Up / Up-to-date" : "Up / Outdated", host: m.connection.host, generation: f.generation || null, system: f.currentSystem };
  } catch (e) {
    return { name: m.name, status: "Unreachable", host: m.connection.host, generation: m.generation ?? null, system: m.systemPath, error: (e as Error).message };
  }
}

/** `nixops check` row. */
export interface CheckRow {
  name: string; exists: string; up: string; reachable: string; disksOk: string; load: string; units: string;
  /** `systemctl is-system-running`: running, degraded, starting, …; N/A without systemd. */
  systemState: string;
  notes: string;
}

function tcpReachable(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port, timeout: CONNECT_MS });
    s.once("connect", () => { s.destroy(); resolve(true); });
    s.once("error", () => resolve(false));
    s.once("timeout", () => { s.destroy(); resolve(false); });
  });
}

export async function check(m: FleetMachine): Promise<CheckRow> {
  const row: CheckRow = { name: m.name, exists: "Yes", up: "No", reachable: "No", disksOk: "N/A", load: "", units: "", systemState: "", notes: "" };
  // Where ssh would dial (an alias resolved by the ssh config). Behind a bastion the address is
  // not ours to dial: the session below says whether it answers.
  const dial = applySshConfig(m.connection);
  if (!dial.proxy && !(await tcpReachable(dial.host, portOf(dial)))) { row.notes = "no answer on the SSH port"; return row; }
  row.reachable = "Yes";
  try {
    const out = await withReadSession(m, (s) => s.exec([
      "cut -d' ' -f1-3 /proc/loadavg",
      "df -P / | awk 'NR==2 { sub(\"%\", \"\", $5); print $5 }'",
      "if [ -d /run/systemd/system ]; then systemctl --failed --plain --no-legend --no-pager | awk '{ print $1 }' | tr '\\n' ' '; echo; else echo N/A; fi",
      SYSTEM_STATE,
    ].join("\n"), { what: "health check" }));
    const [load, disk, units, state] = out.stdout.split("\n");
    row.systemState = (state ?? "").trim() || "unknown";
    row.up = "Yes";
    row.load = load.trim();
    row.disksOk = Number(disk) >= 95 ? `No (/ ${disk}% full)` : "Yes";
    row.units = units.trim() === "N/A" ? "N/A" : units.trim().split(/\s+/).filter(Boolean).map((u) => `${u} [failed]`).join(", ");
  } catch (e) {
    row.notes = (e as Error).message;
  }
  return row;
}

/** One system generation. */
export interface Generation { number: number; date: string; current: boolean; system: string }

export async function listGenerations(m: FleetMachine): Promise<Generation[]> {
  const out = await withReadSession(m, (s) => s.exec(
    `nix-env -p ${SYSTEM_PROFILE} --list-generations | while read n d t cur; do echo "$n|$d $t|$cur|$(readlink ${SYSTEM_PROFILE}-$n-link)"; done`,
    { privileged: true, what: "listing generations" }));
  return out.stdout.trim().split("\n").filter(Boolean).map((l) => {
    const [n, date, cur, system] = l.split("|");
    return { number: Number(n), date, current: cur.includes("current"), system };
  });
}

/** Seconds a `rollback`'s switch may take (then its unit is stopped). */
const ROLLBACK_SWITCH_SEC = 300;

/**
 * Switches to the previous (or given) generation; returns the system now running. The switch
 * runs as a deploy's does (activate.ts's run_switch: in a transient unit where the host runs
 * systemd), so a generation whose switch restarts sshd cannot kill it half-way (nixpkgs#39118);
 * its output goes to the log, its exit code is reported.
 */
export async function rollback(m: FleetMachine, generation?: number): Promise<{ generation: number; system: string }> {
  const tag = `rollback-${crypto.randomBytes(6).toString("hex")}`;
  const rcFile = `${STATE_DIR}/switch-${tag}.rc`;
  const report = (f: Record<string, string>, tail: string) => {
    const gen = Number(/system-(\d+)-link/.exec(f.link ?? "")?.[1]);
    if (f.rc !== "0") {
      throw new Error(`${m.name}: rollback: the system profile is now generation ${gen}, but its switch-to-configuration switch ` +
        `${f.rc ? `exited ${f.rc}${f.rc === "124" ? ` (timed out after ${ROLLBACK_SWITCH_SEC} s)` : ""}` : "left no exit code"}; the host runs ${f.system || "no system"}.` +
        `${tail ? ` Last output: ${tail}` : ""}`);
    }
    return { generation: gen, system: f.system ?? "" };
  };
  const facts = `echo "link=$(readlink ${SYSTEM_PROFILE})"; echo "system=$(readlink -f /run/current-system)"`;
  return withLockedSession(m, "rollback", () => true, async (s) => {
    const sw = generation ? `--switch-generation ${Number(generation)}` : "--rollback";
    try {
      const r = await s.exec([
        switchFunction(ROLLBACK_SWITCH_SEC),
        `nix-env -p ${SYSTEM_PROFILE} ${sw} >/dev/null || exit 90`,
        `run_switch "$(readlink -f ${SYSTEM_PROFILE})" switch ${tag} >&2`,
        // Removed only once printed: a session gone by now leaves it for afterDrop to read.
        `echo "rc=$rc"`, facts, `rm -f ${rcFile}`,
      ].join("\n"), { privileged: true, what: "rollback", timeoutMs: (ROLLBACK_SWITCH_SEC + 60) * 1000 });
      return report(parseKeyValues(r.stdout), r.stderr.trim().split("\n").slice(-3).join(" | "));
    } catch (e) {
      if (!(e instanceof ConnectionLostError)) throw e;
      // The session went (e.g. the generation's switch restarted sshd or the network): the switch
      // goes on in its unit; a new connection reads how it ended.
      return report(await afterDrop(m, rcFile, facts), "");
    }
  });
}

/** After a rollback's session dropped: reconnects (bounded), waits for the switch unit to end, reads its exit code. */
async function afterDrop(m: FleetMachine, rcFile: string, facts: string): Promise<Record<string, string>> {
  const deadline = Date.now() + (ROLLBACK_SWITCH_SEC + 60) * 1000;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const f = await withSession(m, async (s) => parseKeyValues((await s.exec([
        `st=$(systemctl show -p ActiveState --value ${SWITCH_UNIT}.service 2>/dev/null); echo "state=$st"`,
        `echo "rc=$(cat ${rcFile} 2>/dev/null)"`, facts,
        `case "$st" in active|activating|deactivating) ;; *) rm -f ${rcFile} ;; esac`,
      ].join("\n"), { privileged: true, what: "reading the rollback's outcome", timeoutMs: 30_000 })).stdout));
      if (!["active", "activating", "deactivating"].includes(f.state ?? "")) return f;
    } catch (e) { last = e; }
    await new Promise((r) => setTimeout(r, 1000));
  }
  throw new Error(`${m.name}: rollback: the connection was lost during the switch and the host could not be read again in time${last ? ` (${(last as Error).message})` : ""}; run list-generations once it answers`);
}

/** Prints `systemctl is-system-running`'s state (N/A on a host without systemd). */
const SYSTEM_STATE = "if [ -d /run/systemd/system ]; then systemctl is-system-running 2>/dev/null || true; else echo N/A; fi";

/** States of `systemctl is-system-running` while the boot is not finished. */
const BOOTING = new Set(["initializing", "starting"]);

/**
 * Reboots a host, waits for a new boot id, re-uploads its keys (NixOps `reboot`), then waits for
 * systemd to settle (`is-system-running` no longer starting: a boot may be waiting for those keys).
 */
export async function reboot(m: FleetMachine, keys: KeyInputs[], timeoutMs = 300_000): Promise<{ bootId: string; keys: string[]; systemState: string }> {
  // Locked until the reboot command (which releases it: the keys' uploads take it again after).
  const before = await withLockedSession(m, "reboot", (script) => script.includes("reboot) >/dev/null"), async (s) => {
    const id = (await readFacts(s)).bootId;
    // The session may drop while the command runs: that is the reboot working.
    await s.exec("(sleep 0.2; reboot) >/dev/null 2>&1 &", { privileged: true, what: "reboot", check: false }).catch((e) => { if (e instanceof HostLockedError) throw e; });
    return id;
  });
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (Date.now() > deadline) throw new Error(`${m.name} did not come back within ${timeoutMs / 1000} s`);
    await new Promise((r) => setTimeout(r, 500));
    const id = await withSession(m, async (s) => (await readFacts(s)).bootId).catch(() => undefined);
    if (id && id !== before) {
      const sent = keys.length ? await sendKeys(keys, { [m.connection.host]: m.hostPublicKey }) : [];
      for (;;) {
        const state = (await withSession(m, (s) => s.exec(SYSTEM_STATE, { what: "system state" })).catch(() => undefined))?.stdout.trim();
        if (state && !BOOTING.has(state)) return { bootId: id, keys: sent, systemState: state };
        if (Date.now() > deadline) throw new Error(`${m.name} came back (boot ${id}) but systemd is still ${state ?? "unreachable"} after ${timeoutMs / 1000} s`);
        await new Promise((r) => setTimeout(r, 500));
      }
    }
  }
}

/** `dry-activate`: what the host would do with its planned system (copied, never activated: host/dry-activate-host.ts). */
export function dryActivate(m: FleetMachine, planned: string, log?: (line: string) => void): Promise<HostDryActivation> {
  return withSession(m, (s) => dryActivateOnHost(s, m.name, planned, { stack: process.env.PULUMI_NODEJS_STACK ?? stackOf(m), log }));
}
