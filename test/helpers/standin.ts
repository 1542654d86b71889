/** Building stand-in NixOS systems and putting them on lab hosts by hand (no provider involved). */
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { Lab } from "../../provider/lab/lab";
import { run } from "../../provider/util/run";
import { STANDIN_NIXPKGS } from "./env";

/** Builds the stand-in system of a configuration (a Nix expression: path, set or module function). */
export async function buildSystem(configuration: string): Promise<string> {
  return (await run(["nix-build", "--no-out-link", "-E", `(import ${STANDIN_NIXPKGS}/nixos { configuration = ${configuration}; }).system`],
    { timeoutMs: 120_000 })).stdout.trim();
}

/** Copies a store path's closure into a lab host's own store. */
export async function copyToHost(lab: Lab, host: string, storePath: string): Promise<void> {
  const f = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "pnx-nar-")), "c.nar");
  try {
    await run(["sh", "-c", `nix-store --export $(nix-store -qR "$1") > "$2"`, "sh", storePath, f]);
    await lab.exec(host, ["sh", "-c", "nix-store --import >/dev/null"], { input: fs.readFileSync(f), timeoutMs: 60_000 });
  } finally {
    fs.rmSync(path.dirname(f), { recursive: true, force: true });
  }
}

/** Sets the system profile (for switch/boot) and runs switch-to-configuration on the host, as root there. */
export async function switchTo(lab: Lab, host: string, system: string, action: "switch" | "boot" | "test" | "dry-activate" = "switch") {
  const setProfile = action === "switch" || action === "boot" ? `nix-env -p /nix/var/nix/profiles/system --set ${system} && ` : "";
  return lab.exec(host, ["sh", "-c", `${setProfile}${system}/bin/switch-to-configuration ${action}`], { allowFailure: true, timeoutMs: 120_000 });
}
