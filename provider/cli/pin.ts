import { Command } from "commander";
import { prefetch } from "../pins/pin";
import { editStackFile, stackConfigFile } from "./stack-file";
import { pinLocation } from "./pin-location";
import { withExamples } from "./usage";

/** `pin add NAME URL` and `pin update NAME`: compute the sha256 and write it into stack config. */
export function registerPinCommands(program: Command): void {
  const pin = program.command("pin").description("channel pins of a stack (where its network keeps them: pulumi-nixos:network.pins, the networkFile's pins, or pulumi-nixos:pins), hashes computed for you");
  const common = (c: Command) => c
    .option("--stack <name>", "stack whose Pulumi.<stack>.yaml is edited")
    .option("--cwd <dir>", "project directory (Pulumi.yaml)", ".")
    .option("--config-file <file>", "edit this stack file instead");

  withExamples(common(pin.command("add <name> <url>").description("pin NAME to URL (channel or tarball), with its sha256")),
    "npx pulumi-nixos pin add nixos https://releases.nixos.org/nixos/24.05/nixos-24.05.1234.abcdef/nixexprs.tar.xz --stack nixos")
    .action(async (name: string, url: string, o) => {
      const { file, keys, label } = pinLocation(stackConfigFile(o).file, o.cwd);
      const { sha256 } = await prefetch(url);
      editStackFile(file, (doc) => doc.setIn([...keys, name], { url, sha256 }));
      console.log(`pin ${name}: ${url} sha256 ${sha256} → ${label}`);
    });

  withExamples(common(pin.command("update <name>").description("re-fetch NAME's URL and record its current sha256")),
    "npx pulumi-nixos pin update nixos --stack nixos", "npx pulumi-nixos pin update nixos --url NEW_URL --stack nixos")
    .option("--url <url>", "move the pin to a new URL")
    .action(async (name: string, o) => {
      const { file, keys, label } = pinLocation(stackConfigFile(o).file, o.cwd);
      let url = o.url as string | undefined;
      let old = "";
      editStackFile(file, (doc) => {
        const cur = doc.getIn([...keys, name]) as YAML_Map | undefined;
        if (!cur && !url) throw new Error(`no pin '${name}' in ${label} (use pin add)`);
        url ??= String(cur?.get("url"));
        old = cur ? String(cur.get("sha256")) : "";
      });
      const { sha256 } = await prefetch(url!);
      editStackFile(file, (doc) => doc.setIn([...keys, name], { url, sha256 }));
      console.log(old === sha256 ? `pin ${name}: unchanged (${sha256})` : `pin ${name}: ${url} sha256 ${old || "(none)"} → ${sha256}`);
    });
}

interface YAML_Map { get(key: string): unknown }
