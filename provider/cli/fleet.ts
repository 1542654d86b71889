import { Command } from "commander";
import { Fleet, FleetMachine, keysOf, loadFleet, selectMachines } from "../fleet/state";
import * as ops from "../fleet/ops";
import { sendKeys } from "../handlers/key";
import { closeAllSessions } from "../ssh/pool";
import { connect } from "../fleet/ops";
import { liveTable } from "./live-table";
import { drift } from "../fleet/drift";
import { recordSystems } from "../fleet/record";
import { targetArgs, targetsFor } from "./targets";
import { UsageError, noMatch, withExamples } from "./usage";
import { printTable } from "./table";
import { plannedSystems, readStackNetwork } from "../fleet/planned";

interface FleetOpts { stack?: string; state?: string; cwd?: string; include?: string[]; exclude?: string[]; tag?: string[]; json?: boolean }

function fleetCommand(program: Command, name: string, description: string) {
  return program.command(name).description(description)
    .option("--stack <name>", "stack (read with `pulumi stack export --show-secrets`)")
    .option("--state <file>", "a stack export or the engine harness's state file")
    .option("--cwd <dir>", "project directory for --stack")
    .option("--include <names...>", "only these machines")
    .option("--exclude <names...>", "not these machines")
    .option("--tag <tags...>", "only machines with one of these tags")
    .option("--json", "machine-readable output");
}

/** One machine's outcome. */
interface Outcome<T> { m: FleetMachine; r?: T; error?: string }

/**
 * Loads and selects; runs fn on every machine in parallel; non-zero exit when any fails.
 * `live` (text output) gets a table drawn before the hosts answer and each host's rows as it does.
 */
async function onMachines<T>(o: FleetOpts, fn: (m: FleetMachine, fleet: Fleet) => Promise<T>,
  live?: { head: string[]; pending: (m: FleetMachine) => (string | number)[]; rows: (x: Outcome<T>) => (string | number)[][]; minWidths?: number[] }): Promise<Outcome<T>[]> {
  const fleet = loadFleet(o);
  const ms = selectMachines(fleet.machines, o);
  if (!ms.length) throw noMatch(o, fleet.machines);
  // Host locks taken by these commands name the stack (as PULUMI_NODEJS_STACK does in the provider).
  process.env.PULUMI_NODEJS_STACK ??= o.stack ?? ops.stackOf(ms[0]);
  const table = live && !o.json ? liveTable(live.head, ms.map((m) => ({ key: m.urn, row: live.pending(m) })), process.stdout, live.minWidths) : undefined;
  const res: Outcome<T>[] = await Promise.all(ms.map((m) => fn(m, fleet).then((r) => ({ m, r }), (e) => ({ m, error: (e as Error).message }))
    .then((x: Outcome<T>) => { table?.set(m.urn, live!.rows(x)); return x; })));
  table?.end();
  await closeAllSessions();
  if (res.some((x) => x.error)) process.exitCode = 1;
  return res;
}

/** A host's cell while it has not answered yet. */
const WAITING = "…";

/** `info`, `check`, `list-generations`, `rollback`, `reboot`, `send-keys`, `ssh`, `targets`. */
export function registerFleetCommands(program: Command): void {
  withExamples(fleetCommand(program, "info", "status of each machine, like `nixops info`"),
    "npx pulumi-nixos info --stack nixos", "npx pulumi-nixos info --state lab.state.json --tag web --json").action(async (o: FleetOpts) => {
    const res = await onMachines(o, (m) => ops.info(m), {
      head: ["Name", "Status", "Host", "Generation", "System"], minWidths: [0, "Up / Up-to-date".length],
      pending: (m) => [m.name, WAITING, m.connection.host, "-", m.systemPath],
      rows: ({ m, r, error }) => [r ? [r.name, r.status, r.host, r.generation ?? "-", r.system] : [m.name, `error: ${error}`, m.connection.host, "-", m.systemPath]],
    });
    const rows = res.map((x) => x.r ?? { name: x.m.name, error: x.error });
    if (res.some((x) => x.r?.status === "Unreachable")) process.exitCode = 1;
    if (o.json) return console.log(JSON.stringify(rows, null, 2));
  });

  withExamples(fleetCommand(program, "check", "health of each machine, like `nixops check`"),
    "npx pulumi-nixos check --stack nixos --include tiger pigeon").action(async (o: FleetOpts) => {
    if (!o.json) console.log("Machines state:");
    const res = await onMachines(o, (m) => ops.check(m), {
      head: ["Name", "Exists", "Up", "Reachable", "Disks OK", "Load avg.", "System", "Units", "Notes"], minWidths: [0, 3, 3, 9, 8, "0.00 0.00 0.00".length, "running".length],
      pending: (m) => [m.name, WAITING, "", "", "", "", "", "", ""],
      rows: ({ m, r, error }) => [r ? [r.name, r.exists, r.up, r.reachable, r.disksOk, r.load, r.systemState, r.units, r.notes] : [m.name, "-", "-", "-", "-", "-", "-", "-", `error: ${error}`]],
    });
    const rows = res.map((x) => x.r ?? { name: x.m.name, error: x.error });
    if (res.some((x) => x.r?.up !== "Yes")) process.exitCode = 1;
    if (o.json) return console.log(JSON.stringify(rows, null, 2));
  });

  withExamples(fleetCommand(program, "list-generations", "system generations of each machine"),
    "npx pulumi-nixos list-generations --stack nixos --include heron").action(async (o: FleetOpts) => {
    const res = await onMachines(o, (m) => ops.listGenerations(m), {
      head: ["Machine", "Generation", "Date", "", "System"], minWidths: [0, 0, "2026-01-01 00:00:00".length, "(current)".length],
      pending: (m) => [m.name, WAITING, "", "", ""],
      rows: (x) => x.error ? [[x.m.name, "-", "-", "", `error: ${x.error}`]]
        : x.r!.map((g) => [x.m.name, g.number, g.date, g.current ? "(current)" : "", g.system]),
    });
    if (o.json) return console.log(JSON.stringify(Object.fromEntries(res.map((x) => [x.m.name, x.r ?? { error: x.error }])), null, 2));
  });

  withExamples(fleetCommand(program, "diff", "what each host runs now against the recorded system: packages, versions, sizes"),
    "npx pulumi-nixos diff --stack nixos --tag web").action(async (o: FleetOpts) => {
    const res = await onMachines(o, (m) => drift(m));
    if (o.json) { console.log(JSON.stringify(res.map((x) => x.r ?? { name: x.m.name, error: x.error }), null, 2)); return diffExit(res); }
    for (const x of res) {
      if (x.error) { console.log(`${x.m.name}: error: ${x.error}`); continue; }
      const r = x.r!;
      if (r.same) { console.log(`${r.name}: runs the recorded system (${r.recorded})`); continue; }
      console.log(`${r.name}: runs ${r.running || "no system"}, the stack recorded ${r.recorded}:`);
      for (const l of r.changes) console.log(`  ${l}`);
    }
    diffExit(res);
  });

  withExamples(fleetCommand(program, "rollback [generation]", "switch machines to the previous (or given) generation"),
    "npx pulumi-nixos rollback --stack nixos --include heron", "npx pulumi-nixos rollback 202 --stack nixos").action(async (gen: string | undefined, o: FleetOpts) => {
    const res = await onMachines(o, (m) => ops.rollback(m, gen ? Number(gen) : undefined));
    // The state records what the hosts run now: refresh shows no drift, the next up redeploys the program's system.
    const done = res.filter((x) => x.r);
    let recorded = "";
    try {
      recordSystems(o, done.map((x) => ({ urn: x.m.urn, systemPath: x.r!.system, generation: x.r!.generation })));
      recorded = done.length ? "the stack's state records it: `pulumi up` redeploys the program's system, `pulumi refresh` shows no drift" : "";
    } catch (e) {
      process.exitCode = 1;
      recorded = `the state was not updated: ${(e as Error).message}`;
    }
    if (o.json) return console.log(JSON.stringify(res.map((x) => ({ name: x.m.name, ...x.r, error: x.error })), null, 2));
    for (const x of res) console.log(x.error ? `${x.m.name}: rollback failed: ${x.error}` : `${x.m.name}: now generation ${x.r!.generation} (${x.r!.system})`);
    if (recorded) console.log(`Note: ${recorded}.`);
  });

  withExamples(fleetCommand(program, "reboot", "reboot machines, wait until they are back, re-upload their keys"),
    "npx pulumi-nixos reboot --stack nixos --include heron").action(async (o: FleetOpts) => {
    const res = await onMachines(o, (m, fleet) => ops.reboot(m, keysOf(fleet, m)));
    if (o.json) return console.log(JSON.stringify(res.map((x) => ({ name: x.m.name, ...x.r, error: x.error })), null, 2));
    for (const x of res) console.log(x.error ? `${x.m.name}: ${x.error}` : `${x.m.name}: back up (boot ${x.r!.bootId}, system ${x.r!.systemState}); keys re-uploaded: ${x.r!.keys.join(", ") || "none"}`);
  });

  withExamples(fleetCommand(program, "send-keys", "re-upload the machines' keys without deploying"),
    "npx pulumi-nixos send-keys --stack nixos", "npx pulumi-nixos send-keys --state lab.state.json --include host1").action(async (o: FleetOpts) => {
    const res = await onMachines(o, (m, fleet) => sendKeys(keysOf(fleet, m), { [m.connection.host]: m.hostPublicKey }));
    if (o.json) return console.log(JSON.stringify(res.map((x) => ({ name: x.m.name, keys: x.r, error: x.error })), null, 2));
    for (const x of res) console.log(x.error ? `${x.m.name}: ${x.error}` : `${x.m.name}: ${x.r!.length ? x.r!.join(", ") : "no keys"}`);
  });

  withExamples(fleetCommand(program, "ssh <machine> [command...]", "a shell or a command on a machine, with the stack's key and pinned host key (exits with the command's code)"),
    "npx pulumi-nixos ssh heron --stack nixos", "npx pulumi-nixos ssh heron --stack nixos -- systemctl --failed")
    .action(async (name: string, command: string[], o: FleetOpts) => {
      const fleet = loadFleet(o);
      const [m] = selectMachines(fleet.machines, { include: [name] });
      const s = await connect(m);
      try {
        if (command.length) {
          const r = await s.exec(command.join(" "), { check: false, onLine: (l, st) => (st === "stdout" ? process.stdout : process.stderr).write(l + "\n"), what: "command" });
          process.exitCode = r.code ?? 1;
        } else {
          process.exitCode = await s.interactiveShell();
        }
      } finally {
        s.close();
      }
    });

  withExamples(fleetCommand(program, "dry-activate", "what each host would stop, restart, reload and start with the stack config's system (copies closures, activates nothing)"),
    "npx pulumi-nixos dry-activate --state lab.state.json --include web", "npx pulumi-nixos dry-activate --stack nixos --tag web --json")
    .action(async (o: FleetOpts) => {
      const fleet = loadFleet(o);
      const stack = o.stack ?? (fleet.machines[0] ? ops.stackOf(fleet.machines[0]) : undefined);
      if (!stack) throw new UsageError("which stack? give --stack NAME (its config plans the systems)");
      const sn = readStackNetwork({ stack, cwd: o.cwd });
      const ms = selectMachines(fleet.machines, o);
      if (!ms.length) throw noMatch(o, fleet.machines);
      const planned = await plannedSystems(sn, ms.filter((m) => sn.net.machines?.[m.name]).map((m) => m.name));
      const res = await onMachines({ ...o, include: ms.map((m) => m.name), exclude: [], tag: [] }, async (m) => {
        if (!planned[m.name]) throw new Error(`not in the stack config's network any more (pulumi up would delete it)`);
        return ops.dryActivate(m, planned[m.name]);
      });
      if (o.json) {
        return console.log(JSON.stringify(res.map((x) => x.r
          ? { name: x.m.name, planned: x.r.planned, current: x.r.current, unchanged: x.r.unchanged, copied: x.r.copied, ...x.r.actions, changes: x.r.lines }
          : { name: x.m.name, error: x.error }), null, 2));
      }
      const rows: string[][] = [];
      for (const x of res) {
        if (x.error) { rows.push([x.m.name, "error", x.error]); continue; }
        const r = x.r!;
        if (r.unchanged) { rows.push([x.m.name, "unchanged", "runs the planned system already (nothing copied)"]); continue; }
        if (!r.lines.length) { rows.push([x.m.name, "no unit changes", r.planned]); continue; }
        for (const l of r.lines) { const i = l.lastIndexOf(" "); rows.push([x.m.name, l.slice(0, i), l.slice(i + 1)]); }
      }
      printTable(["Machine", "Action", "Unit"], rows);
    });

  withExamples(program.command("targets").description("print `--target` arguments for `pulumi up` (machines with their keys, channel and parents), unquoted for $(...)"),
    "pulumi up --stack nixos $(npx pulumi-nixos targets --stack nixos --include heron)",
    "pulumi destroy --stack nixos $(npx pulumi-nixos targets --stack nixos --include heron --no-parents)")
    .option("--stack <name>", "stack: URNs from its config (also before the first up)")
    .option("--state <file>", "a stack export or the engine harness's state: the URNs it records")
    .option("--cwd <dir>", "project directory for --stack", ".")
    .option("--network <name>", "name of the Network component (default: the description's `description`, else network)")
    .option("--tag <tags...>", "machines with one of these tags").option("--include <names...>", "these machines")
    .option("--exclude <names...>", "not these machines").option("--json", "a JSON list of URNs")
    .option("--no-parents", "leave out the Stack and Network (for `pulumi destroy`, which would delete them too)")
    .action((o) => {
      const urns = targetsFor(o);
      console.log(o.json ? JSON.stringify(urns, null, 2) : targetArgs(urns));
    });
}

/** `diff`'s exit code, as diff(1)'s: 0 every host runs its recorded system, 1 one differs, 2 an error. */
function diffExit(res: { r?: { same: boolean }; error?: string }[]): void {
  process.exitCode = res.some((x) => x.error) ? 2 : res.some((x) => !x.r!.same) ? 1 : 0;
}
