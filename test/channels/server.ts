/**
 * Channel tarballs for tests: `nixexprs.tar.xz` of the stand-in nixpkgs at given versions, served
 * over HTTP on a lab gateway address (reachable from the machine and from every lab host).
 */
import * as fs from "fs";
import * as http from "http";
import * as path from "path";
import { AddressInfo } from "net";
import { run } from "../../provider/util/run";
import { STANDIN_NIXPKGS } from "../helpers/env";
import type { Lab } from "../../provider/lab/lab";

/** A served channel version. */
export interface ServedChannel {
  version: string;
  /** Channel URL (serves `<url>/nixexprs.tar.xz`). */
  url: string;
  /** Hash of the unpacked tree, computed independently with nix-hash. */
  sha256: string;
}

/** A running channel server. */
export interface ChannelServer {
  channels: Record<string, ServedChannel>;
  close(): Promise<void>;
}

/** Builds one tarball per version in dir and serves them on address. */
export async function startChannelServer(dir: string, address: string, versions: string[]): Promise<ChannelServer> {
  const files = new Map<string, string>();
  const hashes = new Map<string, string>();
  for (const v of versions) {
    const top = path.join(dir, "src", v, `nixpkgs-${v}`);
    fs.cpSync(STANDIN_NIXPKGS, top, { recursive: true });
    fs.writeFileSync(path.join(top, ".version"), `${v}\n`);
    fs.mkdirSync(path.join(dir, "www", v), { recursive: true });
    const tarball = path.join(dir, "www", v, "nixexprs.tar.xz");
    await run(["tar", "-C", path.dirname(top), "--sort=name", "--mtime=@1", "--owner=0", "--group=0", "-cJf", tarball, path.basename(top)]);
    files.set(`/${v}/nixexprs.tar.xz`, tarball);
    hashes.set(v, (await run(["nix-hash", "--type", "sha256", "--base32", top])).stdout.trim());
  }
  const server = http.createServer((req, res) => {
    const p = new URL(req.url ?? "/", "http://x").pathname;
    // nix-channel first fetches the channel URL itself (to follow redirects, as nixos.org does).
    if (versions.some((v) => p === `/${v}` || p === `/${v}/`)) { res.writeHead(200, { "Content-Type": "text/html" }); res.end("<html>channel</html>"); return; }
    const f = files.get(p);
    if (!f) { res.writeHead(404); res.end("not found"); return; }
    res.writeHead(200, { "Content-Type": "application/x-xz" });
    fs.createReadStream(f).pipe(res);
  });
  await new Promise<void>((r) => server.listen(0, address, r));
  const { port } = server.address() as AddressInfo;
  const channels = Object.fromEntries(versions.map((v) => [v, { version: v, url: `http://${address}:${port}/${v}`, sha256: hashes.get(v)! }]));
  return { channels, close: () => new Promise((r) => server.close(() => r())) };
}

/** What a lab host's root `nixos` channel is: `nix-channel --list`, then the unpacked tree's version ("" when none). */
export async function hostChannel(lab: Lab, host: string): Promise<string> {
  return (await lab.exec(host, ["sh", "-c", "nix-channel --list; cat /nix/var/nix/profiles/per-user/root/channels/nixos/.version 2>/dev/null"], { allowFailure: true })).stdout.trim();
}

/** Points a lab host's `nixos` channel at url by hand (drift, or a channel from before pulumi-nixos). */
export async function setChannelByHand(lab: Lab, host: string, url: string): Promise<void> {
  await lab.exec(host, ["sh", "-c", `nix-channel --add ${url} nixos && nix-channel --update nixos`]);
}
