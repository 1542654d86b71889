import type * as pulumi from "@pulumi/pulumi";
import { handlerPath, handlerSubpath, PACKAGE_NAME } from "./handler-path";

/**
 * A dynamic provider whose methods load the compiled handler module `name` when they run.
 *
 * Pulumi serializes the provider into every resource's state, and Read/Delete run the copy stored
 * there (an unchanged resource keeps its old one). So the methods capture only strings (no
 * implementation, no secret) and find the handler at run time, in this order:
 *  1. by package name from the program's directory (the dynamic-provider plugin's cwd):
 *     `<dir>/node_modules/pulumi-nixos`, as a user's program installs it;
 *  2. the pulumi-nixos package holding that directory (the repo's own stacks/ and examples/);
 *  3. the absolute path of the installation that wrote the state.
 * That way state survives a moved checkout, another machine sharing the backend and an upgrade.
 */
export function runtimeProvider(name: string): pulumi.dynamic.ResourceProvider {
  const pkg = PACKAGE_NAME;
  const sub = handlerSubpath(name);
  const stored = handlerPath(name);
  // Self-contained (serialized with the strings above): everything it needs is required inside.
  const load = () => {
    const p = require("path"), fs = require("fs");
    const cwd = process.cwd();
    try {
      return require(p.join(p.dirname(require.resolve(`${pkg}/package.json`, { paths: [cwd] })), sub));
    } catch (e: any) {
      if (e?.code !== "MODULE_NOT_FOUND" && e?.code !== "ERR_PACKAGE_PATH_NOT_EXPORTED") throw e;
    }
    for (let d = cwd; ; d = p.dirname(d)) {
      const f = p.join(d, "package.json");
      if (fs.existsSync(f) && fs.existsSync(p.join(d, sub))) {
        try { if (JSON.parse(fs.readFileSync(f, "utf8")).name === pkg) return require(p.join(d, sub)); } catch { /* not a package.json we can read */ }
      }
      if (p.dirname(d) === d) break;
    }
    return require(stored);
  };
  return {
    async check(olds: any, news: any) { return load().check(olds, news); },
    async diff(id: string, olds: any, news: any) { return load().diff(id, olds, news); },
    async create(inputs: any) { return load().create(inputs); },
    async update(id: string, olds: any, news: any) { return load().update(id, olds, news); },
    async read(id: string, props: any) { return load().read(id, props); },
    async delete(id: string, props: any) { return load().remove(id, props); },
  };
}
