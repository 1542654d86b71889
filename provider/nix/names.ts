/**
 * Package names and versions from store path names, as `nix store diff-closures` reads them
 * (NixOS/nix src/nix/diff-closures.cc `getClosureInfo` + `DrvName`), with nvd's care for output
 * suffixes, and Nix's version order (`compareVersions`). Pure functions: no store access.
 */

/** What a store path name says about its package. */
export interface StoreName {
  /** The 32-character store hash ("" for a bare name). */
  hash: string;
  /** Package name: everything before the first dash not followed by a letter (`DrvName`). */
  name: string;
  /** Version ("" when the name has none), without the output suffix. */
  version: string;
  /** Output name stripped from the end (`lib`, `dev`, …; "" for `out` or none). */
  output: string;
}

/**
 * Output names stripped from a versioned name (`openssl-3.0.13-lib` → openssl 3.0.13, output lib).
 * Nix strips any `-[a-z]+` and admits it cannot tell `-bin` from a version suffix like
 * `-unstable`; we strip only NixOS's usual output names, and only after a version.
 */
const OUTPUTS = new Set(["bin", "lib", "dev", "man", "doc", "info", "devdoc", "static", "debug", "out", "lib32", "lib64", "terminfo", "modules"]);

const BASE = /^(?:\/nix\/store\/)?([0-9a-z]{32})-(.+)$/;

/** Splits `name-version` where Nix does: at the first dash followed by a non-letter. */
export function splitNameVersion(s: string): { name: string; version: string } {
  for (let i = 0; i < s.length - 1; i++) {
    if (s[i] === "-" && !/[A-Za-z]/.test(s[i + 1])) return { name: s.slice(0, i), version: s.slice(i + 1) };
  }
  return { name: s, version: "" };
}

/** Parses a store path (or a bare `hash-name`); `.drv` is dropped. Anything else: the whole string as the name. */
export function parseStoreName(p: string): StoreName {
  const m = BASE.exec(p.split("/").slice(0, 4).join("/"));
  const hash = m?.[1] ?? "";
  let rest = (m?.[2] ?? p).replace(/\.drv$/, "");
  let output = "";
  const out = /^(.*)-([a-z0-9]+)$/.exec(rest);
  if (out && OUTPUTS.has(out[2]) && splitNameVersion(out[1]).version !== "") {
    rest = out[1];
    output = out[2] === "out" ? "" : out[2];
  }
  return { hash, ...splitNameVersion(rest), output };
}

/** Version components as Nix splits them: runs of digits or of other characters, `.`/`-` separate. */
function components(v: string): string[] {
  const out: string[] = [];
  let i = 0;
  while (i < v.length) {
    if (v[i] === "." || v[i] === "-") { i++; continue; }
    const digit = /[0-9]/.test(v[i]);
    let j = i;
    while (j < v.length && v[j] !== "." && v[j] !== "-" && /[0-9]/.test(v[j]) === digit) j++;
    out.push(v.slice(i, j));
    i = j;
  }
  return out;
}

/** Nix's `componentsLT`: numbers numerically, `pre` lowest, letters before numbers. */
function componentLess(a: string, b: string): boolean {
  const na = /^[0-9]+$/.test(a) ? Number(a) : undefined;
  const nb = /^[0-9]+$/.test(b) ? Number(b) : undefined;
  if (na !== undefined && nb !== undefined) return na < nb;
  if (a === "" && nb !== undefined) return true;
  if (a === "pre" && b !== "pre") return true;
  if (b === "pre") return false;
  if (nb !== undefined) return true;
  if (na !== undefined) return false;
  return a < b;
}

/** Nix's `compareVersions`: -1, 0 or 1 (`1.2.3` < `1.10`, `2.3a` < `2.3.1`, `1.0pre1` < `1.0`). */
export function compareVersions(a: string, b: string): number {
  const ca = components(a), cb = components(b);
  for (let i = 0; i < Math.max(ca.length, cb.length); i++) {
    const x = ca[i] ?? "", y = cb[i] ?? "";
    if (componentLess(x, y)) return -1;
    if (componentLess(y, x)) return 1;
  }
  return 0;
}
