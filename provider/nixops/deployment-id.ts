/**
 * The deployment identity a NixOps network's modules see (`uuid`, `deploymentName`): NixOps passed
 * its state file's (nixops/deployment.py `Deployment.eval`: `--argstr uuid self.uuid`,
 * `--argstr deploymentName self.name or ""`). import-nixops carries them over; a stack that was
 * never imported gets its stack name and a UUID derived from project and stack, so the same stack
 * evaluates to the same systems on every checkout (a `networking.hostId` derived from `uuid` stays).
 */
import * as crypto from "crypto";

/** A fixed namespace for pulumi-nixos's name-based deployment UUIDs. */
const NAMESPACE = "3f6c1d2a-8e4b-5c7d-9a0f-6b2e4d8c1a57";

/** A name-based (version 5, SHA-1) UUID of `name` in `namespace`, as RFC 4122 §4.3 defines it. */
export function uuidV5(name: string, namespace: string = NAMESPACE): string {
  const ns = Buffer.from(namespace.replace(/-/g, ""), "hex");
  const h = crypto.createHash("sha1").update(ns).update(name, "utf8").digest().subarray(0, 16);
  h[6] = (h[6] & 0x0f) | 0x50;
  h[8] = (h[8] & 0x3f) | 0x80;
  const x = h.toString("hex");
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}

/** The UUID of a stack never imported from NixOps: the same for the same project and stack. */
export function stackDeploymentUuid(project: string, stack: string): string {
  return uuidV5(`${project}/${stack}`);
}
