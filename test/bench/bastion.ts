/**
 * (l) a fresh deploy through one bastion vs the same deploy direct, on a lab whose host sits
 * behind another lab host (`behind`). Every byte of the closure crosses the bastion's sshd twice
 * (in, then out over the forwarded channel) and is encrypted twice on this machine: the CPU
 * counters show that cost next to the wall time (all hosts share this machine's cores).
 */
import * as path from "path";
import * as fs from "fs";
import { Lab } from "../../provider/lab/lab";
import { create, MachineInputs } from "../../provider/handlers/machine";
import { closeAllSessions } from "../../provider/ssh/pool";
import { Connection } from "../../provider/connection";
import { buildSystem, BuiltSystem } from "./closures";
import { readCpu, cpuSince } from "./cpu";

const round = (n: number) => Math.round(n * 1000) / 1000;

function inputs(name: string, connection: Connection, sys: BuiltSystem): MachineInputs {
  return {
    name, connection, systemPath: sys.outPath, drvPath: sys.drvPath, action: "switch", buildOn: "local",
    substituteOnTarget: false, compress: false, connectTimeout: 15, activationTimeout: 600,
  };
}

/** Runs (l) on its own three-host lab (direct, gate, inner behind gate); emits one line. */
export async function bastionScenario(tmp: string, emit: (o: Record<string, unknown>) => void, rounds = 2): Promise<void> {
  const lab = await Lab.up({ dir: path.join(tmp, "lab-bastion"), names: ["direct", "gate", "inner"], behind: { inner: "gate" } });
  try {
    const hosts = Object.fromEntries((await lab.status()).map((h) => [h.name, h]));
    const key = fs.readFileSync(lab.privateKeyPath, "utf8");
    const direct: Connection = { host: hosts.direct.address, port: 22, user: "root", privateKey: key, sshConfig: false };
    const viaGate: Connection = { host: hosts.inner.address, port: 22, user: "root", privateKey: key, sshConfig: false,
      proxy: { host: hosts.gate.address, port: 22, user: "root", privateKey: key } };
    const d: number[] = [], b: number[] = [], floor: number[] = [];
    // Alternating fresh closures (same size as (a): 300 paths, ~30 MB), best of `rounds` each.
    for (let i = 0; i < rounds; i++) {
      const [sd, sb] = await Promise.all(["d", "b"].map((w) => buildSystem(tmp, `bastion-${w}${i}`, { paths: 300, sizeKB: 100, seed: `bastion-${w}${i}` })));
      let t0 = process.hrtime.bigint();
      await create(inputs("direct", direct, sd));
      d.push(Number(process.hrtime.bigint() - t0) / 1e9);
      await closeAllSessions();
      const cpu = readCpu();
      t0 = process.hrtime.bigint();
      await create(inputs("inner", viaGate, sb));
      b.push(Number(process.hrtime.bigint() - t0) / 1e9);
      floor.push(cpuSince(cpu).cpu_floor_s);
      await closeAllSessions();
    }
    const bi = b.indexOf(Math.min(...b));
    const best = (xs: number[]) => Math.min(...xs);
    emit({ scenario: "l-bastion-fresh", ours_s: round(best(b)), direct_s: round(best(d)), ratio: round(best(b) / best(d)),
      cpu_floor_s: floor[bi], ours_vs_cpu_floor: round(b[bi] / floor[bi]), runs_bastion_s: b.map(round), runs_direct_s: d.map(round),
      target: "<= 1.2x direct, or <= 1.1x the CPU floor" });
  } finally {
    await closeAllSessions();
    await lab.down();
  }
}
