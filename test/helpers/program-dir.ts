/**
 * A user's program directory outside the repo: its own Pulumi.yaml, index.ts and node_modules, with
 * pulumi-nixos reached by package name. Used to test what survives moving or reinstalling the package.
 */
import * as fs from "fs";
import * as path from "path";
import { ROOT } from "./env";

/** What a program needs of the package at run time (what `npm pack` ships, see package.json "files"). */
const PACKAGE_PARTS = ["package.json", "bin", "dist", "provider"];

/** Copies the built package to `dir` (a checkout of it); its dependencies are the repo's node_modules. */
export function copyPackage(dir: string): string {
  fs.mkdirSync(dir, { recursive: true });
  for (const p of PACKAGE_PARTS) fs.cpSync(path.join(ROOT, p), path.join(dir, p), { recursive: true });
  fs.symlinkSync(path.join(ROOT, "node_modules"), path.join(dir, "node_modules"));
  return dir;
}

/**
 * node_modules of a program: links to the repo's packages (so @pulumi/pulumi is the one instance
 * the engine harness uses) and `pulumi-nixos` linked to `pkgDir`.
 */
export function linkNodeModules(programDir: string, pkgDir: string): void {
  const nm = path.join(programDir, "node_modules");
  fs.rmSync(nm, { recursive: true, force: true });
  fs.mkdirSync(nm, { recursive: true });
  for (const e of fs.readdirSync(path.join(ROOT, "node_modules"))) {
    if (e === "pulumi-nixos" || e === ".package-lock.json") continue;
    fs.symlinkSync(path.join(ROOT, "node_modules", e), path.join(nm, e));
  }
  fs.symlinkSync(pkgDir, path.join(nm, "pulumi-nixos"));
}

/** A TypeScript program as a user writes it: one Machine and one DeploymentKey from `pulumi-nixos`. */
export const USER_PROGRAM = `import * as fs from "fs";
import * as pulumi from "@pulumi/pulumi";
import { DeploymentKey, Machine } from "pulumi-nixos";

const config = new pulumi.Config();
const connection = { host: config.require("host"), privateKey: pulumi.secret(fs.readFileSync(config.require("keyFile"), "utf8")) };
const keys = config.getBoolean("withKey") === false ? [] : [new DeploymentKey("app-token", { connection, text: pulumi.secret("token of the user program\\n") })];
const machine = new Machine("box", {
  connection,
  configuration: "./box.nix",
  nixPath: [\`nixpkgs=\${config.require("nixpkgs")}\`],
}, { dependsOn: keys });
export const system = machine.systemPath;
`;

/** Pulumi.yaml + Pulumi.<stack>.yaml + index.ts + box.nix of the user program. */
export function writeUserProgram(dir: string, name: string, stack: string, config: Record<string, unknown>, boxNix: string): void {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, "Pulumi.yaml"), `name: ${name}\nruntime:\n  name: nodejs\n  options:\n    typescript: true\nmain: index.ts\n`);
  fs.writeFileSync(path.join(dir, "index.ts"), USER_PROGRAM);
  fs.writeFileSync(path.join(dir, "box.nix"), boxNix);
  writeUserConfig(dir, name, stack, config);
}

/** Rewrites the stack config (`key: value` under the project's namespace unless the key has one). */
export function writeUserConfig(dir: string, name: string, stack: string, config: Record<string, unknown>): void {
  const lines = Object.entries(config).map(([k, v]) => `  ${k.includes(":") ? k : `${name}:${k}`}: ${JSON.stringify(v)}`);
  fs.writeFileSync(path.join(dir, `Pulumi.${stack}.yaml`), `config:\n${lines.join("\n")}\n`);
}
