/**
 * CPU accounting for benchmarks: the lab's hosts share this machine's cores with the deployer,
 * so a parallel deploy can be bound by the hosts' own work (sshd, nix-store --import). These
 * counters split a run's CPU time into the bench process, its children and everything else.
 */
import * as fs from "fs";
import * as os from "os";

/** A reading of the counters. */
export interface CpuReading { at: number; machine: number; self: number; children: number }

/** Busy CPU seconds of the whole machine (user, nice, system, irq, softirq). */
function machineBusy(): number {
  const f = fs.readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1).map(Number);
  return (f[0] + f[1] + f[2] + f[5] + f[6]) / 100;
}

/** CPU seconds of this process's reaped children (cutime + cstime). */
function childrenCpu(): number {
  const f = fs.readFileSync("/proc/self/stat", "utf8").split(") ")[1].split(" ");
  return (Number(f[13]) + Number(f[14])) / 100;
}

export function readCpu(): CpuReading {
  const u = process.cpuUsage();
  return { at: Number(process.hrtime.bigint()) / 1e9, machine: machineBusy(), self: (u.user + u.system) / 1e6, children: childrenCpu() };
}

/** CPU spent between two readings, and the floor it sets on wall time with this many cores. */
export function cpuSince(a: CpuReading, b: CpuReading = readCpu()): Record<string, number> {
  const r = (n: number) => Math.round(n * 100) / 100;
  const machine = b.machine - a.machine, self = b.self - a.self, children = b.children - a.children;
  return {
    cpu_s: r(machine),
    deployer_cpu_s: r(self + children),
    hosts_and_relays_cpu_s: r(Math.max(0, machine - self - children)),
    cpu_floor_s: r(machine / os.cpus().length),
  };
}
