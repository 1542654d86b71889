/**
 * Bench (m): what magic rollback's confirmation costs on a 20 ms RTT link — a new SSH handshake
 * plus one command — next to a bare handshake, and a changed-system deploy with and without it.
 * `npm run bench -- --confirm` runs only this (its own one-host lab).
 */
import * as fs from "fs";
import * as path from "path";
import { Lab } from "../../provider/lab/lab";
import { create, MachineInputs } from "../../provider/handlers/machine";
import { closeAllSessions } from "../../provider/ssh/pool";
import { SshSession, sshStats } from "../../provider/ssh/session";
import { confirm } from "../../provider/host/rollback";
import { buildSystem, BuiltSystem } from "./closures";

const RTT = 20;
const round = (n: number) => Math.round(n * 1000) / 1000;
async function secs<T>(fn: () => Promise<T>): Promise<[number, T]> {
  const t0 = process.hrtime.bigint();
  const r = await fn();
  return [Number(process.hrtime.bigint() - t0) / 1e9, r];
}

export async function confirmScenario(tmp: string, emit: (o: Record<string, unknown>) => void): Promise<void> {
  const lab = await Lab.up({ dir: path.join(tmp, "lab-confirm"), hosts: 1 });
  try {
    await lab.link("host1", { rttMs: RTT });
    const [h] = await lab.status();
    const key = fs.readFileSync(lab.privateKeyPath, "utf8");
    const conn = { host: h.address, port: h.port, user: "root", privateKey: key } as MachineInputs["connection"];
    const systems = await Promise.all(["a", "b", "c"].map((seed) => buildSystem(tmp, `confirm-${seed}`, { paths: 20, sizeKB: 4, seed })));
    const inputs = (sys: BuiltSystem, magicRollback: boolean): MachineInputs => ({
      name: "host1", connection: conn, systemPath: sys.outPath, drvPath: sys.drvPath, action: "switch", buildOn: "local",
      substituteOnTarget: false, compress: false, connectTimeout: 15, activationTimeout: 600, magicRollback,
    });
    await create(inputs(systems[0], false));
    await closeAllSessions();
    // Best of 5: a bare handshake, and the confirmation itself (a nonce with nothing armed: the same
    // handshake and command a real one costs).
    let handshake = Infinity, confirmS = Infinity, commands = 0, connections = 0;
    for (let i = 0; i < 5; i++) {
      handshake = Math.min(handshake, (await secs(async () => (await SshSession.connect(conn)).close()))[0]);
      const before = { ...sshStats };
      const [t, r] = await secs(() => confirm(conn, `bench${i}${Date.now()}`, { confirmTimeoutSec: 30, connectTimeoutSec: 15, healthChecks: [], log: () => undefined }));
      if (!r.confirmed) throw new Error(`bench confirmation failed: ${JSON.stringify(r)}`);
      confirmS = Math.min(confirmS, t);
      commands = sshStats.commands - before.commands;
      connections = sshStats.connections - before.connections;
    }
    // Whole deploys of a changed system (fresh connection each), with and without magic rollback.
    const deploy = async (sys: BuiltSystem, magic: boolean) => {
      const before = { ...sshStats };
      const [t] = await secs(() => create(inputs(sys, magic)));
      await closeAllSessions();
      return { s: t, commands: sshStats.commands - before.commands, connections: sshStats.connections - before.connections };
    };
    const withMagic = await deploy(systems[1], true);
    const without = await deploy(systems[2], false);
    emit({ scenario: "m-confirmation-20ms", confirm_s: round(confirmS), handshake_s: round(handshake), confirm_ssh_commands: commands, confirm_connections: connections,
      deploy_with_s: round(withMagic.s), deploy_without_s: round(without.s), deploy_with_ssh_commands: withMagic.commands, deploy_without_ssh_commands: without.commands,
      deploy_with_connections: withMagic.connections, deploy_without_connections: without.connections, rtt_ms: RTT,
      target: "confirmation = one new handshake + one command (≈ handshake + 2 RTT)" });
  } finally {
    await closeAllSessions();
    await lab.down();
  }
}
