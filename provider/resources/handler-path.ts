import * as fs from "fs";
import * as path from "path";
import { packageRoot } from "../util/package-root";

/**
 * Absolute path of a compiled handler module (dist/provider/handlers/NAME.js). Serialized
 * providers capture only this string and `require` it at run time, so `__provider` stays tiny,
 * holds no secret, and runs the installed code (TypeScript programs included).
 */
export function handlerPath(name: string): string {
  const p = path.join(packageRoot, "dist", "provider", "handlers", `${name}.js`);
  if (!fs.existsSync(p)) throw new Error(`pulumi-nixos is not built: ${p} is missing (run npm run build)`);
  return p;
}
