/** Locating and editing a stack's config file (Pulumi.<stack>.yaml in the project's stackConfigDir). */
import * as fs from "fs";
import * as path from "path";
import YAML from "yaml";

/** The stack config file for `stack` of the project in `cwd` (or an explicit file). */
export function stackConfigFile(opts: { cwd?: string; stack?: string; configFile?: string }): { file: string; project: string } {
  const cwd = path.resolve(opts.cwd ?? ".");
  const projFile = ["Pulumi.yaml", "Pulumi.yml"].map((f) => path.join(cwd, f)).find((f) => fs.existsSync(f));
  const proj = projFile ? YAML.parse(fs.readFileSync(projFile, "utf8")) ?? {} : {};
  if (opts.configFile) return { file: path.resolve(opts.configFile), project: proj.name ?? "pulumi-nixos" };
  if (!opts.stack) throw new Error("name the stack: --stack NAME (or --config-file FILE)");
  if (!projFile) throw new Error(`no Pulumi.yaml in ${cwd} (use --cwd or --config-file)`);
  return { file: path.join(cwd, proj.stackConfigDir ?? ".", `Pulumi.${opts.stack}.yaml`), project: proj.name };
}

/** Reads, changes and writes a stack file, keeping its comments and other keys. */
export function editStackFile(file: string, edit: (doc: YAML.Document) => void): void {
  const doc = fs.existsSync(file) ? YAML.parseDocument(fs.readFileSync(file, "utf8")) : new YAML.Document({ config: {} });
  edit(doc);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, doc.toString());
}
