/**
 * A Pulumi project on disk: Pulumi.yaml (name, runtime, main, stackConfigDir) and the stack's
 * Pulumi.<stack>.yaml, including `secure:` values of the passphrase secrets provider.
 */
import * as crypto from "crypto";
import * as fs from "fs";
import * as path from "path";
import YAML from "yaml";
import { openV1, sealV1 } from "./secrets";

/** What the harness needs to know of a project and one of its stacks. */
export interface ProjectInfo {
  dir: string;
  name: string;
  /** Absolute path of the program's entry file. */
  main: string;
  stack: string;
  stackFile: string;
  /** Full config keys (`project:key`) → string value, as PULUMI_CONFIG carries them. */
  config: Record<string, string>;
  /** Keys of config values that were `secure:`. */
  secretKeys: string[];
}

const PBKDF2_ITERATIONS = 1_000_000; // Pulumi's passphrase provider

/** Reads Pulumi.yaml of dir and the stack's config file. */
export function loadProject(dir: string, stack: string): ProjectInfo {
  dir = path.resolve(dir);
  const projFile = ["Pulumi.yaml", "Pulumi.yml"].map((f) => path.join(dir, f)).find((f) => fs.existsSync(f));
  if (!projFile) throw new Error(`no Pulumi.yaml in ${dir}`);
  const proj = YAML.parse(fs.readFileSync(projFile, "utf8")) ?? {};
  if (typeof proj.name !== "string") throw new Error(`${projFile}: 'name' is required`);
  const runtime = typeof proj.runtime === "string" ? proj.runtime : proj.runtime?.name;
  if (runtime !== "nodejs") throw new Error(`${projFile}: runtime '${runtime}' is not supported by the harness (nodejs only)`);
  const main = resolveMain(dir, proj.main);
  const stackFile = path.join(dir, proj.stackConfigDir ?? ".", `Pulumi.${stack}.yaml`);
  const { config, secretKeys } = fs.existsSync(stackFile) ? readStackConfig(stackFile, proj.name) : { config: {}, secretKeys: [] };
  return { dir, name: proj.name, main, stack, stackFile, config, secretKeys };
}

function resolveMain(dir: string, main: unknown): string {
  const base = path.resolve(dir, typeof main === "string" ? main : ".");
  if (fs.existsSync(base) && fs.statSync(base).isFile()) return base;
  for (const f of ["index.ts", "index.js"]) if (fs.existsSync(path.join(base, f))) return path.join(base, f);
  throw new Error(`no program entry in ${base} (index.ts or index.js)`);
}

function fullKey(project: string, key: string): string {
  return key.includes(":") ? key : `${project}:${key}`;
}

function readStackConfig(file: string, project: string): { config: Record<string, string>; secretKeys: string[] } {
  const doc = YAML.parse(fs.readFileSync(file, "utf8")) ?? {};
  const config: Record<string, string> = {};
  const secretKeys: string[] = [];
  let crypter: ConfigCrypter | undefined;
  for (const [k, v] of Object.entries<unknown>(doc.config ?? {})) {
    const key = fullKey(project, k);
    if (v && typeof v === "object" && !Array.isArray(v) && "secure" in v) {
      crypter ??= ConfigCrypter.forStack(file, doc.encryptionsalt);
      config[key] = crypter.decrypt(String((v as { secure: string }).secure));
      secretKeys.push(key);
    } else {
      config[key] = typeof v === "string" ? v : JSON.stringify(v);
    }
  }
  return { config, secretKeys };
}

/** Pulumi's passphrase crypter for stack config (`encryptionsalt:` and `secure:` values). */
export class ConfigCrypter {
  private constructor(private readonly key: Buffer) {}

  static forStack(file: string, encryptionsalt: unknown): ConfigCrypter {
    const pass = process.env.PULUMI_CONFIG_PASSPHRASE;
    if (pass === undefined) throw new Error(`${file} has secure values: set PULUMI_CONFIG_PASSPHRASE`);
    if (typeof encryptionsalt !== "string") throw new Error(`${file} has secure values but no encryptionsalt`);
    const [, salt] = encryptionsalt.split(":");
    const c = new ConfigCrypter(crypto.pbkdf2Sync(pass, Buffer.from(salt, "base64"), PBKDF2_ITERATIONS, 32, "sha256"));
    if (c.decrypt(encryptionsalt.split(":").slice(2).join(":")) !== "pulumi") {
      throw new Error(`${file}: incorrect passphrase (PULUMI_CONFIG_PASSPHRASE)`);
    }
    return c;
  }

  /** A new salt for a stack file, with its check value, as `pulumi stack init` writes it. */
  static create(): { crypter: ConfigCrypter; encryptionsalt: string } {
    const pass = process.env.PULUMI_CONFIG_PASSPHRASE;
    if (pass === undefined) throw new Error("set PULUMI_CONFIG_PASSPHRASE to store secret config");
    const salt = crypto.randomBytes(8);
    const c = new ConfigCrypter(crypto.pbkdf2Sync(pass, salt, PBKDF2_ITERATIONS, 32, "sha256"));
    return { crypter: c, encryptionsalt: `v1:${salt.toString("base64")}:${c.encrypt("pulumi")}` };
  }

  encrypt(plaintext: string): string { return sealV1(this.key, plaintext); }

  decrypt(value: string): string {
    return openV1(this.key, value, "cannot decrypt a secure config value: wrong PULUMI_CONFIG_PASSPHRASE");
  }
}

/** Sets one config value in a stack file (`pulumi config set [--secret]`). */
export function setStackConfig(info: Pick<ProjectInfo, "stackFile" | "name">, key: string, value: string, isSecret: boolean): void {
  const doc = fs.existsSync(info.stackFile) ? YAML.parseDocument(fs.readFileSync(info.stackFile, "utf8")) : new YAML.Document({});
  const k = fullKey(info.name, key);
  if (isSecret) {
    let salt = doc.get("encryptionsalt") as string | undefined;
    let crypter: ConfigCrypter;
    if (salt) crypter = ConfigCrypter.forStack(info.stackFile, salt);
    else ({ crypter, encryptionsalt: salt } = ConfigCrypter.create());
    doc.set("encryptionsalt", salt);
    doc.setIn(["config", k], { secure: crypter.encrypt(value) });
  } else {
    doc.setIn(["config", k], value);
  }
  fs.mkdirSync(path.dirname(info.stackFile), { recursive: true });
  fs.writeFileSync(info.stackFile, doc.toString());
}
