/**
 * A Pulumi project on disk as the CLI reads it: Pulumi.yaml (name, runtime and its options, main,
 * stackConfigDir), the program's working directory and entry point (pkg/engine/project.go
 * getPwdMain), and the stack's Pulumi.<stack>.yaml with `secure:` values of the passphrase secrets
 * provider (its `encryptionsalt`).
 */
import * as fs from "fs";
import * as path from "path";
import YAML from "yaml";
import { PassphraseSecrets } from "../../provider/state/passphrase";

/** What the harness needs to know of a project and one of its stacks. */
export interface ProjectInfo {
  /** The project root: the directory holding Pulumi.yaml (`--root-directory`). */
  dir: string;
  name: string;
  /** The program's working directory (`--pwd`): the directory of `main`, or the root. */
  pwd: string;
  /** The entry point handed to the SDK's runner: a file name in pwd, or "." (package.json decides). */
  entry: string;
  /** runtime.options.typescript (default true, as the language host has it). */
  typescript: boolean;
  /** runtime.options.tsconfig, if given. */
  tsconfig?: string;
  /** runtime.options.nodeargs, split on spaces. */
  nodeargs: string[];
  stack: string;
  stackFile: string;
  /** Full config keys (`project:key`) → string value (objects as JSON), as the engine holds them. */
  config: Record<string, string>;
  /** Keys of config values that were `secure:`. */
  secretKeys: string[];
  /** The stack file's `encryptionsalt` (passphrase secrets provider state), if any. */
  encryptionsalt?: string;
}

/** getPwdMain of pkg/engine/project.go: pwd and entry point for a project root and its `main`. */
export function getPwdMain(root: string, main: string | undefined): { pwd: string; entry: string } {
  if (!main) return { pwd: root, entry: "." };
  const abs = path.resolve(root, main);
  let st: fs.Stats;
  try {
    st = fs.statSync(abs);
  } catch (e) {
    throw new Error(`project 'main' could not be read: ${e instanceof Error ? e.message : e}`);
  }
  return st.isDirectory() ? { pwd: abs, entry: "." } : { pwd: path.dirname(abs), entry: path.basename(abs) };
}

/** Reads Pulumi.yaml of dir and the stack's config file (secure values opened with the passphrase). */
export function loadProject(dir: string, stack: string): ProjectInfo {
  dir = path.resolve(dir);
  const projFile = ["Pulumi.yaml", "Pulumi.yml"].map((f) => path.join(dir, f)).find((f) => fs.existsSync(f));
  if (!projFile) throw new Error(`no Pulumi.yaml in ${dir}`);
  const proj = YAML.parse(fs.readFileSync(projFile, "utf8")) ?? {};
  if (typeof proj.name !== "string") throw new Error(`${projFile}: 'name' is required`);
  const runtime = typeof proj.runtime === "string" ? proj.runtime : proj.runtime?.name;
  if (runtime !== "nodejs") throw new Error(`${projFile}: runtime '${runtime}' is not supported by the harness (nodejs only)`);
  const options = (typeof proj.runtime === "object" ? proj.runtime.options : undefined) ?? {};
  if (options.typescript !== undefined && typeof options.typescript !== "boolean") throw new Error(`${projFile}: typescript option must be a boolean`);
  const { pwd, entry } = getPwdMain(dir, proj.main);
  const stackFile = path.join(dir, proj.stackConfigDir ?? ".", `Pulumi.${stack}.yaml`);
  const doc = fs.existsSync(stackFile) ? YAML.parse(fs.readFileSync(stackFile, "utf8")) ?? {} : {};
  const encryptionsalt = typeof doc.encryptionsalt === "string" ? doc.encryptionsalt : undefined;
  const { config, secretKeys } = readConfig(doc, proj.name, stackFile, encryptionsalt);
  return {
    dir, name: proj.name, pwd, entry, stack, stackFile, config, secretKeys, encryptionsalt,
    typescript: options.typescript ?? true,
    tsconfig: typeof options.tsconfig === "string" ? options.tsconfig : undefined,
    nodeargs: typeof options.nodeargs === "string" ? options.nodeargs.split(/\s+/).filter(Boolean) : [],
  };
}

function fullKey(project: string, key: string): string {
  return key.includes(":") ? key : `${project}:${key}`;
}

function readConfig(doc: any, project: string, file: string, salt: string | undefined): { config: Record<string, string>; secretKeys: string[] } {
  const config: Record<string, string> = {};
  const secretKeys: string[] = [];
  let secrets: PassphraseSecrets | undefined;
  const open = (v: string) => {
    if (!salt) throw new Error(`${file} has secure values but no encryptionsalt`);
    secrets ??= PassphraseSecrets.open(salt, undefined, `stack config ${file}`);
    return secrets.decrypt(v, `cannot decrypt ${file}: incorrect passphrase (PULUMI_CONFIG_PASSPHRASE)`);
  };
  for (const [k, v] of Object.entries<unknown>(doc.config ?? {})) {
    const key = fullKey(project, k);
    if (v && typeof v === "object" && !Array.isArray(v) && "secure" in v) {
      config[key] = open(String((v as { secure: string }).secure));
      secretKeys.push(key);
    } else {
      config[key] = typeof v === "string" ? v : JSON.stringify(v);
    }
  }
  return { config, secretKeys };
}

/** Sets one config value in a stack file (`pulumi config set [--secret]`), creating the salt on first use. */
export function setStackConfig(info: Pick<ProjectInfo, "stackFile" | "name">, key: string, value: string, isSecret: boolean): void {
  const doc = fs.existsSync(info.stackFile) ? YAML.parseDocument(fs.readFileSync(info.stackFile, "utf8")) : new YAML.Document({});
  const k = fullKey(info.name, key);
  if (isSecret) {
    const salt = doc.get("encryptionsalt") as string | undefined;
    const m = salt ? PassphraseSecrets.open(salt, undefined, `stack config ${info.stackFile}`) : PassphraseSecrets.create();
    doc.set("encryptionsalt", m.state);
    doc.setIn(["config", k], { secure: m.encrypt(value) });
  } else {
    doc.setIn(["config", k], value);
  }
  fs.mkdirSync(path.dirname(info.stackFile), { recursive: true });
  fs.writeFileSync(info.stackFile, doc.toString());
}

/** Writes the passphrase salt into the stack file when it has none (as `pulumi stack init` does). */
export function ensureEncryptionSalt(info: ProjectInfo): PassphraseSecrets {
  if (info.encryptionsalt) return PassphraseSecrets.open(info.encryptionsalt, undefined, `stack ${info.stack}`);
  const m = PassphraseSecrets.create();
  const doc = fs.existsSync(info.stackFile) ? YAML.parseDocument(fs.readFileSync(info.stackFile, "utf8")) : new YAML.Document({});
  doc.set("encryptionsalt", m.state);
  fs.mkdirSync(path.dirname(info.stackFile), { recursive: true });
  fs.writeFileSync(info.stackFile, doc.toString());
  info.encryptionsalt = m.state;
  return m;
}
