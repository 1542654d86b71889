/**
 * Who wrote something on a host (a key file, a channel pin): owner records let a delete remove
 * only what its own resource wrote, not what a renamed or moved successor wrote since.
 */
import { stackOf, urnOf } from "../util/engine-log";

/** A resource's identity for owner records: its URN (a rename or a move changes it), else `<stack>::<resource>` for resources recorded before URNs reached handlers. */
export function resourceOwner(resource: string, props: unknown): string {
  return urnOf(props) ?? `${stackOf(props) ?? "unknown"}::${resource}`;
}

/** The resource's name in an owner record, for messages. */
export const ownerName = (owner: string): string => owner.split("::").pop() ?? owner;
