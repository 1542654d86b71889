/**
 * A binary cache as the medium: the deployer puts each path there once (a NAR made by
 * `nix-store --dump`, uncompressed, and a .narinfo signed in-process: cache-sign.ts), the hosts
 * substitute from it with signatures checked. `file://` is written directly, `http(s)://` with a
 * PUT per file (what Nix's own HttpBinaryCacheStore::upsertFile does); other schemes are not
 * written by us. The layout is Nix's (libstore/binary-cache-store.cc): `nix-cache-info`,
 * `<hash part>.narinfo`, `nar/<file>.nar`.
 */
import * as fs from "fs";
import * as http from "http";
import * as https from "https";
import * as path from "path";
import { spawn } from "child_process";
import { Readable } from "stream";
import { ClosurePath } from "../nix/closure";
import { Logger, formatBytes, plural } from "../util/log";
import { SigningKey, signPath } from "./cache-sign";
import { narHashBytes, toBase32 } from "./nar-hash";

/** Per cache URL, the paths this process put there (each goes once per run). */
const published = new Map<string, Map<string, Promise<void>>>();

/** Puts into the cache what this process has not put there yet; resolves with the bytes sent. */
export async function publishToCache(url: string, key: SigningKey, paths: ClosurePath[], log: Logger, timeoutMs: number): Promise<number> {
  const mine = published.get(url) ?? new Map<string, Promise<void>>();
  published.set(url, mine);
  const fresh = paths.filter((p) => !mine.has(p.path));
  let bytes = 0;
  const put = async (p: ClosurePath) => {
    const hash = narHashBytes(p.narHash ?? "");
    if (!hash) throw new Error(`${p.path}: no NAR hash in the local store's record`);
    const nar = `nar/${toBase32(hash)}.nar`;
    await upload(url, nar, () => spawn("nix-store", ["--dump", p.path], { stdio: ["ignore", "pipe", "ignore"] }).stdout!, p.narSize, timeoutMs);
    const info = [`StorePath: ${p.path}`, `URL: ${nar}`, "Compression: none", `NarHash: sha256:${toBase32(hash)}`, `NarSize: ${p.narSize}`,
      `References: ${(p.references ?? []).map((r) => path.basename(r)).sort().join(" ")}`,
      `Sig: ${signPath(key, p.path, p.narHash!, p.narSize, p.references ?? [])}`, ""].join("\n");
    await upload(url, `${path.basename(p.path).slice(0, 32)}.narinfo`, () => Readable.from([Buffer.from(info)]), Buffer.byteLength(info), timeoutMs);
    bytes += p.narSize;
  };
  if (fresh.length) {
    log(`cache ${url}: putting ${plural(fresh.length, "path")} (${formatBytes(fresh.reduce((n, p) => n + p.narSize, 0))})`);
    const cacheInfo = Buffer.from("StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 30\n");
    const first = mine.size ? Promise.resolve() : upload(url, "nix-cache-info", () => Readable.from([cacheInfo]), cacheInfo.length, timeoutMs);
    // Claimed at once (before any await), so the Machines deployed alongside put none of them again;
    // in closure order, one at a time, each NAR before its narinfo (which announces the path).
    fresh.reduce((prev, p) => { const next = prev.then(() => put(p)); mine.set(p.path, next); next.catch(() => mine.delete(p.path)); return next; }, first);
  }
  await Promise.all(paths.map((p) => mine.get(p.path)));
  return bytes;
}

/** Writes one file of the cache. */
async function upload(url: string, file: string, body: () => NodeJS.ReadableStream, size: number, timeoutMs: number): Promise<void> {
  const u = new URL(url);
  if (u.protocol === "file:") {
    const dest = path.join(u.pathname, file);
    fs.mkdirSync(path.dirname(dest), { recursive: true });
    await new Promise<void>((resolve, reject) => { const w = fs.createWriteStream(dest + ".tmp"); body().pipe(w).on("finish", resolve).on("error", reject); });
    fs.renameSync(dest + ".tmp", dest);
    return;
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") throw new Error(`cache ${url}: the deployer writes only file:// and http(s):// caches`);
  const target = new URL(file, url.endsWith("/") ? url : url + "/");
  await new Promise<void>((resolve, reject) => {
    const req = (u.protocol === "https:" ? https : http).request(target, { method: "PUT", headers: { "content-length": String(size) }, timeout: timeoutMs }, (res) => {
      res.resume();
      res.on("end", () => (res.statusCode ?? 500) < 300 ? resolve() : reject(new Error(`cache ${url}: PUT ${file} answered ${res.statusCode}`)));
    });
    req.on("timeout", () => req.destroy(new Error(`cache ${url}: PUT ${file} timed out after ${timeoutMs} ms`)));
    req.on("error", reject);
    body().pipe(req);
  });
}
