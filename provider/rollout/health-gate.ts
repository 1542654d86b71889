/**
 * A wave ends only when its machines passed their health checks. With magic rollback they run in
 * the confirmation (a failure rolls the host back). Without it (`magicRollback: false`) the deploy
 * runs none, so in a rollout they run here after the switch: a failure leaves the new system on
 * the host (there is no armed rollback to undo it, by the operator's choice), recorded as
 * "updated but unhealthy" so the next `up` retries, and fails the machine: the rollout stops.
 * `action: "boot"` activates nothing now: there is nothing to check until the reboot.
 */
import type { MachineInputs, MachineOutputs } from "../handlers/machine";
import { healthCheckScript, parseHealthOutput } from "../host/health";
import { normalizeConnection } from "../connection";
import { withHost } from "../ssh/pool";
import { Logger } from "../util/log";

/** `outs` when the checks pass (or none are due); otherwise throws a partial failure with `outs` recorded. */
export async function healthGate(i: MachineInputs, outs: MachineOutputs, id: string, log: Logger): Promise<MachineOutputs> {
  const checks = i.healthChecks ?? [];
  if (!i.rollout || i.magicRollback !== false || i.action === "boot" || !checks.length) return outs;
  log(`health checks: ${checks.length} on the host (magicRollback is off: nothing is rolled back)`);
  const timeoutMs = checks.reduce((n, c) => n + ((c.timeout ?? 10) + 1) * ((c.retries ?? 0) + 1) * 1000, 10_000);
  const r = await withHost(normalizeConnection(outs.connection), { pin: outs.hostPublicKey, connectTimeoutMs: i.connectTimeout * 1000 },
    (s) => s.exec(healthCheckScript(checks), { privileged: true, check: false, what: "health checks", timeoutMs }));
  const failed = parseHealthOutput(r.stdout, checks);
  if (!failed.length) return outs;
  const provider = (i as unknown as Record<string, unknown>).__provider;
  throw Object.assign(new Error(`Machine ${i.name}: health check failed: ${failed.join("; ")}; magicRollback is off, so ${i.name} keeps running ${outs.systemPath} (recorded; the next up retries)`), {
    id,
    // The plugin records these as the resource's outputs ("updated but unhealthy").
    properties: { ...outs, ...(provider !== undefined ? { __provider: provider } : {}) },
    reasons: [`health checks failed on ${i.name}: ${failed.join("; ")}`],
  });
}
