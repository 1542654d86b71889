#!/usr/bin/env node
// Entry point of the `pulumi-nixos` command; the code is compiled to dist/ by `npm run build`.
const path = require("path");
const fs = require("fs");
const main = path.join(__dirname, "..", "dist", "provider", "cli", "main.js");
if (!fs.existsSync(main)) {
  console.error("pulumi-nixos: not built yet: run `npm run build` in " + path.dirname(__dirname));
  process.exit(1);
}
require(main).main(process.argv).catch((e) => {
  console.error(`pulumi-nixos: ${e && e.message ? e.message : e}`);
  process.exit(1);
});
