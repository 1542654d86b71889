#!/usr/bin/env node
// The npm dependencies of a checkout, installed (`npm ci`: exactly package-lock.json) when
// node_modules is missing or holds other versions than the lockfile. `npm run demo` and `npm test`
// run this through scripts/setup.sh, so a fresh clone needs no separate `npm ci`. Silent when in sync.
const fs = require("fs");
const path = require("path");
const { spawnSync } = require("child_process");

const root = path.join(__dirname, "..");

/** Lockfile entries node_modules lacks or has at another version (npm's hidden lockfile records what it installed). */
function stale() {
  const lock = JSON.parse(fs.readFileSync(path.join(root, "package-lock.json"), "utf8")).packages ?? {};
  let installed;
  try {
    installed = JSON.parse(fs.readFileSync(path.join(root, "node_modules", ".package-lock.json"), "utf8")).packages ?? {};
  } catch {
    return ["node_modules"];
  }
  // Optional packages may be skipped on this platform; they are never a reason to reinstall.
  return Object.entries(lock).filter(([k, v]) => k && v.version && !v.optional && !v.devOptional
    && (installed[k]?.version !== v.version || !fs.existsSync(path.join(root, k)))).map(([k]) => k);
}

const missing = stale();
if (missing.length) {
  console.log(`pulumi-nixos setup: installing the npm dependencies (npm ci: ${missing.length > 3 ? `${missing.length} packages` : missing.join(", ")} missing or at other versions)`);
  const r = spawnSync("npm", ["ci", "--no-audit", "--no-fund"], { cwd: root, stdio: "inherit", timeout: 900_000, killSignal: "SIGKILL" });
  if (r.status !== 0) {
    console.error(`pulumi-nixos setup: npm ci failed${r.error ? ` (${r.error.message})` : ""}`);
    process.exit(1);
  }
}
