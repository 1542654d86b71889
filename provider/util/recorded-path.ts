/**
 * Paths as inputs record them: relative to the project root (the directory holding Pulumi.yaml),
 * so an operator, a teammate and CI with checkouts at different paths record the same inputs and
 * see no diff. A path outside the project stays absolute (it is the same on no two machines anyway).
 * Only a record: evaluation uses the absolute path at program time, deploys use the store paths.
 */
import * as path from "path";

/** `./sub/web.nix` for an absolute path inside the project root; other paths unchanged. */
export function portablePath(abs: string, root: string): string {
  if (!path.isAbsolute(abs)) return abs;
  const rel = path.relative(root, abs);
  if (rel.startsWith("..") || path.isAbsolute(rel)) return abs;
  return rel === "" ? "." : `./${rel.split(path.sep).join("/")}`;
}

/** A flake reference with a local path (`/abs/dir#name`, `path:/abs`, `git+file:///abs`) made portable. */
export function portableFlake(ref: string, root: string): string {
  const m = /^(path:|git\+file:(?:\/\/)?)?(\/[^#?]*)(.*)$/.exec(ref);
  if (!m) return ref;
  const p = portablePath(m[2], root);
  return p === m[2] ? ref : `${m[1] ?? ""}${p}${m[3]}`;
}

/**
 * Whether a recorded path and a new one name the same file: equal, or a state written before
 * paths were recorded relative (absolute, ending in the new relative path).
 */
export function samePath(recorded: string | undefined, given: string | undefined): boolean {
  if ((recorded ?? "") === (given ?? "")) return true;
  if (!recorded || !given) return false;
  const rel = /^(\w[\w+]*:(?:\/\/)?)?\.\/(.*)$/.exec(given);
  if (!rel) return false;
  const abs = /^(\w[\w+]*:(?:\/\/)?)?(\/.*)$/.exec(recorded);
  return !!abs && (abs[1] ?? "") === (rel[1] ?? "") && abs[2].endsWith(`/${rel[2]}`);
}
