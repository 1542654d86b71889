/** The project root the resources record paths against (provider/util/recorded-path.ts). */
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";

/** The project root: what the CLI passes as --root-directory, else the program's directory. */
export function projectRoot(): string {
  let root = "";
  try { root = pulumi.runtime.getRootDirectory(); } catch { /* not set by this runner */ }
  return path.isAbsolute(root) ? root : process.cwd();
}
