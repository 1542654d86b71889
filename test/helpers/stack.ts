/**
 * A stack of the repo's stack program (stacks/index.ts) in a temp directory: Pulumi.yaml points
 * at the program, Pulumi.<stack>.yaml describes machines, configurations live beside it.
 */
import * as fs from "fs";
import * as path from "path";
import { ROOT, STANDIN_NIXPKGS } from "./env";
import { StackRef } from "./engine";

/** One machine of a test stack (NixOps-style names, as in stack config). */
export interface TestMachine {
  targetHost: string;
  targetPort?: number;
  targetUser?: string;
  hostPublicKey?: string;
  /** Body of the machine's configuration.nix (written to <dir>/<name>.nix). */
  config?: string;
  configuration?: string;
  flake?: string;
  action?: string;
  buildOn?: string;
  connectTimeout?: number;
  activationTimeout?: number;
  magicRollback?: boolean;
  confirmTimeout?: number;
  healthChecks?: unknown[];
  /** The machine's site (fan-out). */
  site?: string;
  /** A binary cache as the medium. */
  cache?: { url: string; publicKey: string };
}

/** Writes Pulumi.yaml + Pulumi.<stack>.yaml for the given machines; returns the engine's StackRef. */
export function writeStack(dir: string, stack: string, machines: Record<string, TestMachine>, extra: Record<string, unknown> = {}): StackRef {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, "Pulumi.yaml"), `name: pulumi-nixos\nruntime:\n  name: nodejs\n  options:\n    typescript: true\nmain: ${path.join(ROOT, "stacks", "index.ts")}\n`);
  const ms: Record<string, unknown> = {};
  for (const [name, m] of Object.entries(machines)) {
    const { config, ...rest } = m;
    if (config !== undefined) {
      fs.writeFileSync(path.join(dir, `${name}.nix`), config);
      rest.configuration = `./${name}.nix`;
    }
    ms[name] = rest;
  }
  const cfg: Record<string, unknown> = { "pulumi-nixos:machines": ms, "pulumi-nixos:nixPath": [`nixpkgs=${STANDIN_NIXPKGS}`], ...extra };
  fs.writeFileSync(path.join(dir, `Pulumi.${stack}.yaml`), "config:\n" + Object.entries(cfg).map(([k, v]) => `  ${k}: ${JSON.stringify(v)}`).join("\n") + "\n");
  return { cwd: dir, stack, state: path.join(dir, `${stack}.state.json`) };
}

/** A NixOS-like configuration body for the stand-in nixpkgs. */
export function nixConfig(hostName: string, opts: { role?: string; paths?: number; sizeKB?: number; activation?: string; random?: boolean } = {}): string {
  return `{ ... }: {
  networking.hostName = "${hostName}";
  environment.etc."role".text = "${opts.role ?? hostName}\\n";
  test.closure = { paths = ${opts.paths ?? 8}; sizeKB = ${opts.sizeKB ?? 4}; seed = "${hostName}"; random = ${opts.random ? "true" : "false"}; };
  ${opts.activation ?? ""}
}
`;
}

/**
 * A configuration line: a unit whose start lasts until the test lets it finish (touch /run/slow.go;
 * at most 120 s), then writes /run/slow.done. switch-to-configuration waits for it, as NixOS's does.
 */
export const slowUnit = `systemd.services.slow = { wantedBy = [ "multi-user.target" ];
  serviceConfig = { Type = "oneshot"; RemainAfterExit = true; };
  script = "for i in $(seq 600); do [ -e /run/slow.go ] && break; sleep 0.2; done; echo done > /run/slow.done"; };`;
