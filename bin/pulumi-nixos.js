#!/usr/bin/env node
// Entry point of the `pulumi-nixos` command; the code is compiled to dist/ by `npm run build`.
require("../dist/provider/cli/main.js").main(process.argv).catch((e) => {
  console.error(`pulumi-nixos: ${e && e.message ? e.message : e}`);
  process.exit(1);
});
