/** A system's closure as a host has it (paths and NAR sizes), read in one remote command. */
import { ClosurePath } from "../nix/closure";
import { SshSession, shq } from "../ssh/session";

const MARK = "@@pulumi-nixos-sizes";

/**
 * The closure of `system` on the host (default: what `/run/current-system` points at), with
 * `nix-store -q --size` per path: no experimental CLI needed on the host. Resolves with the
 * system's store path and its closure.
 */
export async function readRemoteClosure(s: SshSession, system?: string): Promise<ClosurePath[] & { system?: string }> {
  const target = system ? shq(system) : "\"$(readlink -f /run/current-system)\"";
  const r = await s.exec([
    `p=${target}`,
    `[ -n "$p" ] && [ -e "$p" ] || { echo "no system at ${system ?? "/run/current-system"}" >&2; exit 3; }`,
    `echo "$p"`,
    `set -- $(nix-store -qR "$p") || exit 4`,
    `printf '%s\\n' "$@"`,
    `echo ${MARK}`,
    `nix-store -q --size "$@"`,
  ].join("\n"), { privileged: true, what: "reading the closure" });
  const lines = r.stdout.split("\n").filter(Boolean);
  const at = lines.indexOf(MARK);
  const paths = lines.slice(1, at), sizes = lines.slice(at + 1).map(Number);
  if (at < 0 || sizes.length !== paths.length) throw new Error(`${s.label}: unexpected closure listing from the host`);
  return Object.assign(paths.map((path, i) => ({ path, narSize: sizes[i] })), { system: lines[0] });
}
