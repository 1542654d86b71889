/** What a host runs now, read in one round trip (refresh, info, drift). */
import { parseKeyValues } from "../util/key-values";
import { SshSession } from "../ssh/session";
import { SYSTEM_PROFILE } from "./activate";

/** Facts about a host's system. */
export interface HostFacts {
  /** Target of /run/current-system ("" when none). */
  currentSystem: string;
  /** Target of the system profile ("" when none). */
  profileSystem: string;
  /** Generation the system profile points at (0 when none). */
  generation: number;
  /** `nixos-version` of the current system, if it has one. */
  nixosVersion: string;
  bootId: string;
}

export async function readFacts(s: SshSession): Promise<HostFacts> {
  const r = await s.exec([
    "echo \"current=$(test -e /run/current-system && readlink -f /run/current-system)\"",
    `echo "profile=$(test -e ${SYSTEM_PROFILE} && readlink -f ${SYSTEM_PROFILE})"`,
    `echo "gen=$(readlink ${SYSTEM_PROFILE} 2>/dev/null | sed -n 's/.*system-\\([0-9]*\\)-link$/\\1/p')"`,
    "echo \"version=$(cat /run/current-system/nixos-version 2>/dev/null)\"",
    "echo \"boot=$(cat /proc/sys/kernel/random/boot_id 2>/dev/null)\"",
  ].join("\n"), { what: "reading system facts" });
  const f = parseKeyValues(r.stdout);
  return {
    currentSystem: f.current ?? "",
    profileSystem: f.profile ?? "",
    generation: Number(f.gen) || 0,
    nixosVersion: f.version ?? "",
    bootId: f.boot ?? "",
  };
}
