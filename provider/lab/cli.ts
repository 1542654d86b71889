import { Command } from "commander";
import { DEFAULT_LAB_DIR, DEFAULT_LAB_INIT, Lab } from "./lab";
import { printTable } from "../cli/table";
import { writeLabStackFile } from "./stack-file";

/** Adds `lab up|status|exec|cut|restore|reboot|down` to the CLI. */
export function registerLabCommands(program: Command): void {
  const lab = program.command("lab").description(`local NixOS-like test hosts (needs root; default --dir ${DEFAULT_LAB_DIR})`);
  const dirOpt = ["--dir <dir>", "lab directory", DEFAULT_LAB_DIR] as const;

  lab.command("up").description("create hosts: own netns, /nix, /etc, /run/keys; systemd as PID 1 (or --init none); sshd")
    .option(...dirOpt)
    .option("--hosts <n>", "number of hosts", "3")
    .option("--names <list>", "comma-separated host names (instead of host1..N)")
    .option("--init <kind>", "systemd: systemd as PID 1, booted from a seeded stand-in NixOS generation; none: sshd without an init", DEFAULT_LAB_INIT)
    .option("--behind <name>", "put the other hosts on a network reachable only through lab host NAME (a bastion; outbound they reach the lab network through its NAT); HOST=NAME (repeatable) for one host, e.g. a chain: --behind host2=host1 --behind host3=host2", (v: string, acc: string[]) => [...acc, v], [] as string[])
    .option("--site <name>", "put hosts on a site: one bridge (the LAN, unshaped) in a site namespace, reached through ONE veth (the uplink; shape it with lab link --site). NAME: every host; NAME=h1,h2 (repeatable): those", (v: string, acc: string[]) => [...acc, v], [] as string[])
    .option("--stack-file <file>", "write this stack config file for the lab made (e.g. stacks/Pulumi.lab.yaml): addresses, pinned host keys, the lab's key")
    .action(async (o) => {
      const names = o.names ? String(o.names).split(",").map((s: string) => s.trim()).filter(Boolean) : undefined;
      const all = names ?? Array.from({ length: Number(o.hosts) }, (_, i) => `host${i + 1}`);
      const behind: Record<string, string> = {};
      for (const b of o.behind as string[]) {
        const [h, via] = b.includes("=") ? b.split("=", 2) : [undefined, b];
        for (const n of h ? [h] : all.filter((x) => x !== via)) behind[n] = via;
      }
      const sites: Record<string, string[]> = {};
      for (const v of o.site as string[]) {
        const [site, list] = v.includes("=") ? v.split("=", 2) : [v, undefined];
        sites[site] = list ? list.split(",").map((x) => x.trim()).filter(Boolean) : all;
      }
      const l = await Lab.up({ dir: o.dir, hosts: Number(o.hosts), names, init: o.init, behind, sites });
      const st = await l.status();
      printStatus(st);
      console.log(`private key: ${l.privateKeyPath}`);
      if (o.stackFile) console.log(`stack file: ${o.stackFile} (machines ${writeLabStackFile(o.stackFile, st, l.privateKeyPath).join(", ")})`);
    });

  lab.command("status").description("list hosts (--json: name, address, port, user, privateKeyPath, hostPublicKey, state)")
    .option(...dirOpt).option("--json", "machine-readable output")
    .action(async (o) => {
      const st = await Lab.open(o.dir).status();
      if (o.json) console.log(JSON.stringify(st, null, 2));
      else printStatus(st);
    });

  lab.command("exec <name> <cmd...>").description("run a command inside a host as its root: lab exec NAME -- CMD...")
    .option(...dirOpt)
    .action(async (name: string, cmd: string[], o) => {
      const r = await Lab.open(o.dir).exec(name, cmd, { allowFailure: true });
      process.stdout.write(r.stdout);
      process.stderr.write(r.stderr);
      process.exitCode = r.code ?? 1;
    });

  for (const [verb, what] of [["cut", "take a host off the network"], ["restore", "put a cut host back"],
    ["reboot", "reboot one host (never the machine): new boot id, empty /run/keys"]] as const) {
    lab.command(`${verb} <name>`).description(what).option(...dirOpt)
      .action(async (name: string, o) => { await Lab.open(o.dir)[verb](name); console.log(`${name}: ${verb} done`); });
  }

  lab.command("link [name]").description("shape a host's link (or a site's uplink with --site NAME): latency through a relay (--rtt), bandwidth with tbf (--rate); --clear removes both")
    .option(...dirOpt).option("--site <site>", "shape this site's uplink instead of one host's link").option("--rtt <ms>", "round-trip time to add").option("--rate <mbit>", "bandwidth limit, Mbit/s").option("--clear", "remove shaping")
    .action(async (name: string | undefined, o) => {
      const l = Lab.open(o.dir);
      if (o.site) {
        if (o.clear) await l.clearSiteLink(o.site);
        else await l.linkSite(o.site, { rttMs: o.rtt ? Number(o.rtt) : undefined, rateMbit: o.rate ? Number(o.rate) : undefined });
        console.log(o.clear ? `site ${o.site}: uplink shaping removed` : `site ${o.site}: uplink rtt ${o.rtt ?? 0} ms, rate ${o.rate ?? "unlimited"} Mbit/s (lab status gives each host's address and port)`);
        return;
      }
      if (!name) throw new Error("lab link: name a host, or a site with --site NAME");
      if (o.clear) await l.clearLink(name);
      else await l.link(name, { rttMs: o.rtt ? Number(o.rtt) : undefined, rateMbit: o.rate ? Number(o.rate) : undefined });
      const h = (await l.status()).find((x) => x.name === name)!;
      console.log(o.clear ? `${name}: link shaping removed` : `${name}: reach it at ${h.address}:${h.port} (rtt ${o.rtt ?? 0} ms, rate ${o.rate ?? "unlimited"} Mbit/s)`);
    });

  lab.command("down").description("remove every process, namespace, veth, mount and file of the lab")
    .option(...dirOpt)
    .action(async (o) => { await Lab.open(o.dir).down(); console.log(`lab in ${o.dir} removed`); });
}

function printStatus(hosts: Awaited<ReturnType<Lab["status"]>>): void {
  // "Via" only for a lab with hosts behind a bastion (the plain table is parsed by scripts).
  const via = hosts.some((h) => h.behind);
  const site = hosts.some((h) => h.site);
  printTable(["Name", "Address", "Port", ...(via ? ["Via"] : []), ...(site ? ["Site"] : []), "State", "Init", "Generation", "Current system"],
    hosts.map((h) => [h.name, h.address, h.port, ...(via ? [h.behind ?? "-"] : []), ...(site ? [h.site ?? "-"] : []), h.state, h.init, h.generation ?? "-", h.currentSystem ?? "-"]));
}
