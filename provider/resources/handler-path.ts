import * as fs from "fs";
import * as path from "path";
import { packageRoot } from "../util/package-root";

/** The package's name, by which serialized providers find the handlers from the program's directory. */
export const PACKAGE_NAME = "pulumi-nixos";

/** Path of a compiled handler module inside the package (`dist/provider/handlers/NAME.js`). */
export function handlerSubpath(name: string): string {
  return `dist/provider/handlers/${name}.js`;
}

/**
 * Absolute path of a compiled handler module of this installation: only the fallback a serialized
 * provider uses when the package cannot be found by name from the program's directory (see
 * runtime-provider.ts). Throws when the package is not built.
 */
export function handlerPath(name: string): string {
  const p = path.join(packageRoot, handlerSubpath(name));
  if (!fs.existsSync(p)) throw new Error(`pulumi-nixos is not built: ${p} is missing (run npm run build)`);
  return p;
}
