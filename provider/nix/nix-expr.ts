/** Writing Nix expressions safely from strings. */

/** A Nix string literal. */
export function nixString(s: string): string {
  return JSON.stringify(s).replace(/\$\{/g, "\\${");
}

/** A Nix path literal for an absolute path (any characters). */
export function nixPath(abs: string): string {
  if (!abs.startsWith("/")) throw new Error(`not an absolute path: ${abs}`);
  return `(/. + ${nixString(abs)})`;
}

/** `-I` arguments from `name=path` / `path` entries (NIX_PATH syntax). */
export function includeArgs(entries: string[]): string[] {
  return entries.flatMap((e) => ["-I", e]);
}
