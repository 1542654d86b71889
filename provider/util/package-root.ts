import * as fs from "fs";
import * as path from "path";

/**
 * The pulumi-nixos package directory, found from this file whether it runs as TypeScript
 * (provider/util) or compiled (dist/provider/util). Non-TS assets (.sh, .nix) live under it.
 */
export const packageRoot: string = (() => {
  let dir = __dirname;
  for (;;) {
    const pkg = path.join(dir, "package.json");
    if (fs.existsSync(pkg) && JSON.parse(fs.readFileSync(pkg, "utf8")).name === "pulumi-nixos") return dir;
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`pulumi-nixos: package.json not found above ${__dirname}`);
    dir = up;
  }
})();
