/**
 * Channel pins: a nixpkgs tarball URL and its sha256 (the hash of the unpacked tree, as
 * `nix-prefetch-url --unpack` and `builtins.fetchTarball` compute it), like the seed's versions.nix.
 */
import { run, RunOptions, RunResult, RunTimeoutError } from "../util/run";
import { describeTimeout, timeoutMs } from "../util/timeouts";
import { spawnSync } from "child_process";

/** nix-prefetch-url under the fetch deadline, killed with its whole process group on expiry. */
async function prefetchUrl(argv: string[], url: string, label?: string): Promise<RunResult> {
  const opts: RunOptions = { allowFailure: true, timeoutMs: timeoutMs("fetch"), killGroup: true };
  try {
    return await run(argv, opts);
  } catch (e) {
    if (e instanceof RunTimeoutError) throw new Error(`${label ? `${label}: ` : ""}cannot fetch ${url}: no complete answer within ${describeTimeout("fetch")}`);
    throw e;
  }
}

/** One pinned nixpkgs. */
export interface Pin {
  /** A channel URL (`…/nixos-24.05`, serving nixexprs.tar.xz) or a tarball URL (`….tar.gz|.tar.xz|.tar.bz2`). */
  url: string;
  /** Nix base-32 sha256 of the unpacked tree (`nix-prefetch-url --unpack URL`). */
  sha256: string;
}

/** The tarball behind a pin URL: tarball URLs as they are, channel URLs + /nixexprs.tar.xz. */
export function tarballUrl(url: string): string {
  return /\.tar(\.(gz|xz|bz2|zst))?$|\.tgz$/.test(url) ? url : `${url.replace(/\/+$/, "")}/nixexprs.tar.xz`;
}

/** Validates a pin's fields; returns problems naming them. */
export function pinProblems(label: string, p: Partial<Pin>): string[] {
  const out: string[] = [];
  if (!p.url || !/^(https?|file):\/\/\S+$/.test(p.url)) out.push(`${label}: url must be an http(s) or file URL, got '${p.url ?? ""}'`);
  if (!p.sha256 || !/^([0-9a-df-np-sv-z]{52}|[0-9a-f]{64}|sha256-[A-Za-z0-9+/=]{44})$/.test(p.sha256)) {
    out.push(`${label}: sha256 must be a Nix sha256 (52 base-32 characters, as nix-prefetch-url prints), got '${p.sha256 ?? ""}'`);
  }
  return out;
}

/** Downloads and unpacks a URL; returns its hash and store path (no expected hash). */
export async function prefetch(url: string): Promise<{ sha256: string; storePath: string }> {
  const r = await prefetchUrl(["nix-prefetch-url", "--unpack", "--print-path", "--name", "source", tarballUrl(url)], tarballUrl(url));
  if (r.code !== 0) throw new Error(`cannot fetch ${tarballUrl(url)}: ${lastError(r.stderr)}`);
  const [sha256, storePath] = r.stdout.trim().split("\n");
  return { sha256, storePath };
}

const fetched = new Map<string, Promise<string>>();

/**
 * The pin's nixpkgs in the local store, verified against its sha256 (reused from the store when
 * present). A mismatch names the expected and the actual hash.
 */
export function fetchPin(label: string, pin: Pin): Promise<string> {
  const problems = pinProblems(label, pin);
  if (problems.length) return Promise.reject(new Error(problems.join("; ")));
  const key = `${pin.url}#${pin.sha256}`;
  let p = fetched.get(key);
  if (!p) {
    p = (async () => {
      const r = await prefetchUrl(["nix-prefetch-url", "--unpack", "--print-path", "--name", "source", tarballUrl(pin.url), pin.sha256], tarballUrl(pin.url), label);
      if (r.code === 0) return r.stdout.trim().split("\n")[1];
      if (!/hash mismatch/.test(r.stderr)) throw new Error(`${label}: cannot fetch ${tarballUrl(pin.url)}: ${lastError(r.stderr)}`);
      const actual = await prefetch(pin.url);
      throw new Error(`${label}: sha256 mismatch for ${pin.url}: expected ${pin.sha256}, got ${actual.sha256} (run 'pulumi-nixos pin update' if the change is intended)`);
    })();
    fetched.set(key, p);
  }
  return p;
}

function lastError(stderr: string): string {
  const lines = stderr.split("\n").map((l) => l.trim()).filter((l) => l.startsWith("error:"));
  return (lines[lines.length - 1] ?? stderr.trim().split("\n")[0] ?? "").replace(/^error: /, "");
}


/**
 * {@link fetchPin} for code that must finish before resources exist (a NixOps network's machines
 * are only known after evaluating it against its pin): the same check, blocking, under the fetch deadline.
 */
export function fetchPinSync(label: string, pin: Pin): string {
  const problems = pinProblems(label, pin);
  if (problems.length) throw new Error(problems.join("; "));
  const url = tarballUrl(pin.url);
  const r = spawnSync("nix-prefetch-url", ["--unpack", "--print-path", "--name", "source", url, pin.sha256],
    { encoding: "utf8", timeout: timeoutMs("fetch"), killSignal: "SIGKILL", maxBuffer: 16 << 20 });
  if ((r.error as NodeJS.ErrnoException | undefined)?.code === "ETIMEDOUT") throw new Error(`${label}: cannot fetch ${url}: no complete answer within ${describeTimeout("fetch")}`);
  if (r.error) throw new Error(`${label}: cannot run nix-prefetch-url: ${r.error.message}`);
  if (r.status === 0) return r.stdout.trim().split("\n")[1];
  if (/hash mismatch/.test(r.stderr)) throw new Error(`${label}: sha256 mismatch for ${pin.url}: expected ${pin.sha256} (run 'pulumi-nixos pin update' if the change is intended)`);
  throw new Error(`${label}: cannot fetch ${url}: ${lastError(r.stderr)}`);
}
