#!/usr/bin/env node
// `npm run engine|demo|bench|example` build first, but only when a source is newer than the last
// build (a no-op tsc still costs ~4 s on this machine; this check costs a few ms).
const fs = require("fs");
const path = require("path");
const { spawnSync } = require("child_process");

const root = path.join(__dirname, "..");
const stamp = path.join(root, "dist", ".build-stamp");
const built = fs.existsSync(stamp) ? fs.statSync(stamp).mtimeMs : 0;

function newer(dir) {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    if (e.name === "node_modules" || e.name === "dist" || e.name.startsWith(".")) continue;
    const p = path.join(dir, e.name);
    if (e.isDirectory()) { if (newer(p)) return true; } else if (/\.(ts|json)$/.test(e.name) && fs.statSync(p).mtimeMs > built) return true;
  }
  return false;
}

if (!built || ["tsconfig.json", "package.json"].some((f) => fs.statSync(path.join(root, f)).mtimeMs > built)
  || ["provider", "stacks", "test", "examples"].some((d) => fs.existsSync(path.join(root, d)) && newer(path.join(root, d)))) {
  const started = Date.now();
  const r = spawnSync(process.execPath, [require.resolve("typescript/bin/tsc", { paths: [root] }), "-p", root], { stdio: "inherit" });
  if (r.status !== 0) process.exit(r.status ?? 1);
  // The stamp carries the build's start time: a file saved during the build is still newer.
  fs.writeFileSync(stamp, "");
  fs.utimesSync(stamp, started / 1000, started / 1000);
}
