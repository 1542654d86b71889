/**
 * `npm run demo` (root, Linux): a 3-host lab, the lab stack deployed, one machine's configuration
 * edited, the preview (exactly one update), the deploy, each host's generation, and teardown.
 * Uses the real `pulumi` CLI when one is on PATH and the engine harness otherwise.
 */
import "./helpers/env";
import * as fs from "fs";
import * as path from "path";
import { Lab } from "../provider/lab/lab";
import { engine, StackRef } from "./helpers/engine";
import { hasPulumiCli, pulumiCli } from "./helpers/real-cli";
import { writeStack } from "./helpers/stack";
import { ROOT, tempDir } from "./helpers/env";

async function main(): Promise<void> {
  const real = await hasPulumiCli();
  console.log(real ? "demo: using the real pulumi CLI (file backend)" : "demo: using the engine harness (no pulumi binary on PATH)");
  const drive = (op: "preview" | "up", s: StackRef) => (real ? pulumiCli(op, s) : engine(op, s));
  const tmp = tempDir("demo");
  console.log(`demo: bringing up 3 lab hosts in ${tmp}/lab`);
  const lab = await Lab.up({ dir: path.join(tmp, "lab"), hosts: 3 });
  try {
    const hosts = await lab.status();
    const prog = path.join(tmp, "prog");
    fs.cpSync(path.join(ROOT, "test/fixtures/lab-network"), prog, { recursive: true });
    const s = writeStack(prog, "lab", Object.fromEntries(hosts.map((h) => [h.name, { targetHost: h.address, configuration: `./${h.name}.nix` }])),
      { "pulumi-nixos:sshPrivateKeyFile": lab.privateKeyPath });
    const step = async (title: string, op: "preview" | "up") => {
      console.log(`\n=== ${title}`);
      const r = await drive(op, s);
      process.stdout.write(r.stdout + r.stderr);
      if (r.code !== 0) throw new Error(`${title} failed`);
    };
    await step("pulumi up: deploy the lab stack", "up");
    const file = path.join(prog, "host2.nix");
    fs.writeFileSync(file, fs.readFileSync(file, "utf8").replace('"host2\\n"', '"host2, edited by the demo\\n"'));
    console.log(`\n=== edited ${file}: /etc/role changes on host2`);
    await step("pulumi preview: exactly one update", "preview");
    await step("pulumi up: deploy the change", "up");
    console.log("\n=== generations per host");
    for (const h of await lab.status()) console.log(`${h.name}  generation ${h.generation}  ${h.currentSystem}`);
  } finally {
    console.log("\ndemo: tearing the lab down");
    await lab.down();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

main().then(() => process.exit(0), (e) => { console.error(`demo failed: ${e instanceof Error ? e.message : e}`); process.exit(1); });
