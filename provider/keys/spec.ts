/** Validation of a deployment key's name, directory, owner and mode (program time and check). */
import * as path from "path";

/** Where and how a key file is written. */
export interface KeyFileSpec {
  /** File name: letters, digits, `.`, `_`, `-`. */
  name: string;
  /** Absolute directory (default /run/keys), never inside /nix/store. */
  destDir: string;
  user: string;
  group: string;
  /** 3–4 octal digits, e.g. "0600". */
  permissions: string;
}

/** Problems with a spec, each naming the field; empty when valid. */
export function keySpecProblems(resource: string, s: Partial<KeyFileSpec>, kind = "DeploymentKey"): { property: string; reason: string }[] {
  const f: { property: string; reason: string }[] = [];
  const name = s.name ?? "";
  if (!/^[A-Za-z0-9._-]+$/.test(name) || name === "." || name === ".." || name.includes("..")) {
    f.push({ property: "name", reason: `${kind} ${resource}: name '${name}' is not a valid file name (letters, digits, '.', '_', '-'; no '/', no '..', not empty)` });
  }
  const dir = s.destDir ?? "";
  if (!path.isAbsolute(dir) || path.posix.normalize(dir) !== dir.replace(/\/+$/, "") && dir !== "/") {
    f.push({ property: "destDir", reason: `${kind} ${resource}: destDir '${dir}' must be an absolute, normalized path` });
  } else if (dir === "/nix/store" || dir.startsWith("/nix/store/")) {
    f.push({ property: "destDir", reason: `${kind} ${resource}: destDir '${dir}' is inside the world-readable /nix/store` });
  }
  if (!/^[0-7]{3,4}$/.test(s.permissions ?? "")) {
    f.push({ property: "permissions", reason: `${kind} ${resource}: permissions '${s.permissions}' must be 3-4 octal digits, e.g. 0600` });
  }
  for (const k of ["user", "group"] as const) {
    if (!/^[a-z_][a-z0-9_-]*\$?$/i.test(s[k] ?? "")) f.push({ property: k, reason: `${kind} ${resource}: ${k} '${s[k] ?? ""}' is not a valid name` });
  }
  return f;
}

/** Where a key goes and who may read it: shared by DeploymentKeyArgs and the YAML KeySpec. */
export interface KeyPlacement {
  /** File name (default: the resource's or entry's name): letters, digits, `.`, `_`, `-`. */
  name?: string;
  /** Directory (default /run/keys). Absolute, normalized, never inside /nix/store. */
  destDir?: string;
  /** Owner (default root). */
  user?: string;
  /** Group (default root). */
  group?: string;
  /** Mode, 3–4 octal digits (default 0600). */
  permissions?: string;
  /** `pre-activation` (default, as NixOps: before the machine activates) or `post-activation`. */
  uploadAt?: "pre-activation" | "post-activation";
}
