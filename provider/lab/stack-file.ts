/**
 * `lab up --stack-file FILE`: the lab stack's config written for the lab just made (addresses,
 * ports, pinned host keys, the lab's private key), instead of a committed file whose addresses and
 * key path hold only on a fresh default lab. Other keys and comments of an existing file stay.
 */
import * as fs from "fs";
import * as path from "path";
import { editStackFile } from "../cli/stack-file";
import { packageRoot } from "../util/package-root";
import { LabHostInfo } from "./lab";

/** The directory holding Pulumi.yaml above `dir` (the project root the stack program resolves against). */
function projectRoot(dir: string): string {
  for (let d = path.resolve(dir); ; d = path.dirname(d)) {
    if (fs.existsSync(path.join(d, "Pulumi.yaml")) || fs.existsSync(path.join(d, "Pulumi.yml"))) return d;
    if (path.dirname(d) === d) return path.resolve(dir);
  }
}

/** Writes (or updates) the stack file for these lab hosts; returns the machine names written. */
export function writeLabStackFile(file: string, hosts: LabHostInfo[], privateKeyPath: string): string[] {
  file = path.resolve(file);
  const root = projectRoot(path.dirname(file));
  const rel = (p: string) => (p.startsWith(root + path.sep) ? path.relative(root, p) : p);
  const fixture = (name: string) => [path.join(root, "test/fixtures/lab-network", `${name}.nix`), path.join(packageRoot, "test/fixtures/lab-network", `${name}.nix`)].find((f) => fs.existsSync(f));
  editStackFile(file, (doc) => {
    const old = (doc.getIn(["config", "pulumi-nixos:network", "machines"]) as { toJSON(): Record<string, any> } | undefined)?.toJSON() ?? {};
    const machines: Record<string, Record<string, unknown>> = {};
    for (const h of hosts) {
      const prev = old[h.name] ?? {};
      let configuration = prev.configuration as string | undefined;
      if (!configuration && !prev.imports && !prev.flake) {
        const f = fixture(h.name);
        if (f) configuration = rel(f);
        else {
          // A host the fixtures do not describe: a minimal configuration beside the stack file.
          const own = path.join(path.dirname(file), `lab-${h.name}.nix`);
          if (!fs.existsSync(own)) fs.writeFileSync(own, `{ ... }: { networking.hostName = "${h.name}"; }\n`);
          configuration = rel(own);
        }
      }
      machines[h.name] = { ...prev, targetHost: h.address, ...(h.port !== 22 ? { targetPort: h.port } : {}), hostPublicKey: h.hostPublicKey, ...(configuration ? { configuration } : {}) };
      if (h.port === 22) delete machines[h.name].targetPort;
      // A host behind a bastion (`lab up --behind`): reached through it, its key pinned too.
      const proxyOf = (x: LabHostInfo): Record<string, unknown> => {
        const b = hosts.find((y) => y.name === x.behind)!;
        return { host: b.address, hostKey: b.hostPublicKey, ...(b.behind ? { proxy: proxyOf(b) } : {}) };
      };
      // A host on a lab site (`lab up --site`): the same site for the deploy (fan-out over its LAN).
      if (h.site) machines[h.name].site = h.site;
      if (h.behind) machines[h.name].proxy = proxyOf(h);
      else delete machines[h.name].proxy;
    }
    if (!doc.getIn(["config", "pulumi-nixos:network"])) doc.setIn(["config", "pulumi-nixos:network"], { description: "lab", enableRollback: true, machines: {} });
    doc.setIn(["config", "pulumi-nixos:network", "machines"], machines);
    doc.setIn(["config", "pulumi-nixos:sshPrivateKeyFile"], privateKeyPath);
    if (!doc.getIn(["config", "pulumi-nixos:nixPath"])) doc.setIn(["config", "pulumi-nixos:nixPath"], [`nixpkgs=${rel(path.join(packageRoot, "test/fixtures/nixpkgs"))}`]);
  });
  return hosts.map((h) => h.name);
}
