/**
 * How the Pulumi CLI's Node.js language host starts a program, for tests that must not depend on
 * the engine harness: pwd and entry point by `main` (pulumi's getPwdMain), `--root-directory` = the
 * directory holding Pulumi.yaml, and cmd/run's choice of entry for ".". `runUnderMocks` runs a
 * project that way in a child process under the SDK's mocks and returns what it registered.
 */
import * as fs from "fs";
import * as path from "path";
import YAML from "yaml";
import { run } from "../../provider/util/run";

/** pulumi's getPwdMain: `main` a file → its directory and basename; a directory → it and "."; absent → the project and ".". */
export function pwdMain(projectDir: string): { pwd: string; main: string } {
  const proj = YAML.parse(fs.readFileSync(path.join(projectDir, "Pulumi.yaml"), "utf8")) ?? {};
  if (!proj.main) return { pwd: projectDir, main: "." };
  const abs = path.resolve(projectDir, proj.main);
  if (fs.statSync(abs).isDirectory()) return { pwd: abs, main: "." };
  return { pwd: path.dirname(abs), main: path.basename(abs) };
}

/** cmd/run's program for entry ".": the nearest package.json's exports["."] or main, else the directory. */
export function entryPoint(pwd: string, main: string): string {
  if (main !== ".") return path.join(pwd, main);
  for (let d = pwd; ; d = path.dirname(d)) {
    const f = path.join(d, "package.json");
    if (fs.existsSync(f)) {
      const pkg = JSON.parse(fs.readFileSync(f, "utf8"));
      const e = typeof pkg.exports === "string" ? pkg.exports : pkg.exports?.["."];
      const rel = typeof e === "string" ? e : e?.default ?? e?.require ?? pkg.main;
      return rel && fs.existsSync(path.join(d, rel)) ? path.join(d, rel) : pwd;
    }
    if (path.dirname(d) === d) return pwd;
  }
}

/** One resource the program registered. */
export interface Registration { type: string; name: string; inputs: Record<string, any> }

/** Runs the project's stack under mocks, started the way the CLI starts it; plain config only. */
export async function runUnderMocks(projectDir: string, stack: string): Promise<{ code: number | null; registrations: Registration[]; stderr: string }> {
  const r = await run([process.execPath, __filename, projectDir, stack], { allowFailure: true, timeoutMs: 300_000 });
  const line = r.stdout.split("\n").find((l) => l.startsWith("REGISTRATIONS "));
  return { code: r.code, registrations: line ? JSON.parse(line.slice("REGISTRATIONS ".length)) : [], stderr: r.stderr + r.stdout };
}

/** The child: environment and cwd as the CLI sets them, then the SDK's mocks record registrations. */
async function child(projectDir: string, stack: string): Promise<void> {
  const proj = YAML.parse(fs.readFileSync(path.join(projectDir, "Pulumi.yaml"), "utf8"));
  const stackFile = path.join(projectDir, proj.stackConfigDir ?? ".", `Pulumi.${stack}.yaml`);
  const cfg = (YAML.parse(fs.readFileSync(stackFile, "utf8")) ?? {}).config ?? {};
  const config: Record<string, string> = {};
  for (const [k, v] of Object.entries(cfg)) config[k.includes(":") ? k : `${proj.name}:${k}`] = typeof v === "string" ? v : JSON.stringify(v);
  const { pwd, main } = pwdMain(projectDir);
  Object.assign(process.env, {
    PULUMI_NODEJS_ROOT_DIRECTORY: projectDir, PULUMI_NODEJS_PROJECT: proj.name, PULUMI_NODEJS_STACK: stack,
    PULUMI_CONFIG: JSON.stringify(config), PULUMI_CONFIG_SECRET_KEYS: "[]",
  });
  process.chdir(pwd);
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  require("ts-node").register({ transpileOnly: true, skipProject: true, compilerOptions: { module: "commonjs", target: "es2020", esModuleInterop: true } });
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const pulumi = require("@pulumi/pulumi");
  const registrations: Registration[] = [];
  pulumi.runtime.setMocks({
    newResource: (a: { type: string; name: string; inputs: Record<string, any> }) => {
      registrations.push({ type: a.type, name: a.name, inputs: a.inputs });
      return { id: `${a.name}-id`, state: a.inputs };
    },
    call: () => ({}),
  }, proj.name, stack, true);
  require(entryPoint(pwd, main));
  // Registrations wait for their inputs (evaluations): done when the SDK's RPC queue has drained.
  await pulumi.runtime.disconnect();
  console.log("REGISTRATIONS " + JSON.stringify(registrations.map((x) => ({ ...x, inputs: { ...x.inputs, __provider: undefined } }))));
}

if (require.main === module) {
  child(process.argv[2], process.argv[3]).then(() => process.exit(0), (e) => { console.error(e instanceof Error ? e.stack : e); process.exit(1); });
}
