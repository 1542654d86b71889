/**
 * NAR hashes compared by their bytes: Nix prints the same SHA-256 as SRI (`sha256-<base64>`,
 * `nix path-info --json` since 2.4), as `sha256:<base32>` (`nix-store -q --hash`, older JSON) or
 * base16. Base32 is Nix's own alphabet and bit order (libutil/hash.cc, printHash32 / Hash::Hash
 * parsing: character n from the end carries bits 5n..5n+4).
 */
const BASE32 = "0123456789abcdfghijklmnpqrsvwxyz";

function fromBase32(s: string, size: number): Buffer | undefined {
  const out = Buffer.alloc(size);
  for (let n = 0; n < s.length; n++) {
    const digit = BASE32.indexOf(s[s.length - 1 - n]);
    if (digit < 0) return undefined;
    const b = n * 5, i = b >> 3, j = b & 7;
    out[i] |= (digit << j) & 0xff;
    if (i + 1 < size) out[i + 1] |= digit >> (8 - j);
    else if (digit >> (8 - j)) return undefined;
  }
  return out;
}

/** Bytes in Nix's base32 (the inverse of the parser above: libutil/hash.cc printHash32). */
export function toBase32(hash: Buffer): string {
  const len = Math.ceil((hash.length * 8) / 5);
  let s = "";
  for (let n = len - 1; n >= 0; n--) {
    const b = n * 5, i = b >> 3, j = b & 7;
    const c = (hash[i] >> j) | (i + 1 < hash.length ? hash[i + 1] << (8 - j) : 0);
    s += BASE32[c & 0x1f];
  }
  return s;
}

/** The 32 bytes of a SHA-256 NAR hash in any of Nix's notations; undefined when it is not one. */
export function narHashBytes(h: string): Buffer | undefined {
  const m = /^sha256([:-])(.+)$/.exec(h.trim());
  if (!m) return undefined;
  const v = m[2];
  const b = m[1] === "-" ? Buffer.from(v, "base64")
    : /^[0-9a-f]{64}$/.test(v) ? Buffer.from(v, "hex")
      : v.length === 52 ? fromBase32(v, 32) : undefined;
  return b && b.length === 32 ? b : undefined;
}

/** Whether two NAR hashes are the same SHA-256 (false when either is not a SHA-256 hash). */
export function sameNarHash(a: string | undefined, b: string | undefined): boolean {
  const x = a && narHashBytes(a), y = b && narHashBytes(b);
  return !!x && !!y && x.equals(y);
}
