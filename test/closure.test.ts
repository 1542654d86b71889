import "./helpers/env";
import { test } from "node:test";
import * as assert from "node:assert/strict";
import { run } from "../provider/util/run";
import { closureOf } from "../provider/nix/closure";

// A chain with a diamond: d → c → b → a and c → a. Import needs every reference before its referrer.
const CHAIN = `let
  mk = name: deps: derivation {
    inherit name; system = builtins.currentSystem; builder = "/bin/sh"; PATH = "/usr/bin:/bin";
    args = [ "-c" "echo \${toString deps} > $out" ];
  };
  a = mk "pnx-chain-a" [ ];
  b = mk "pnx-chain-b" [ a ];
  c = mk "pnx-chain-c" [ b a ];
in mk "pnx-chain-d" [ c ]`;

async function references(p: string): Promise<string[]> {
  return (await run(["nix-store", "--query", "--references", p])).stdout.split("\n").filter((r) => r && r !== p);
}

async function assertClosureOrder(root: string): Promise<void> {
  const closure = await closureOf([root]);
  const expected = (await run(["nix-store", "--query", "--requisites", root])).stdout.trim().split("\n");
  assert.deepEqual(closure.map((p) => p.path).sort(), [...expected].sort(), `same paths as nix-store -qR ${root}`);
  const at = new Map(closure.map((p, i) => [p.path, i]));
  for (const p of closure) {
    assert.ok(p.narSize > 0, `${p.path} has its NAR size`);
    for (const r of await references(p.path)) assert.ok(at.get(r)! < at.get(p.path)!, `${r} comes before ${p.path}`);
  }
}

test("closureOf: one path-info call, dependencies first, for outputs and for .drv files", async () => {
  const drv = (await run(["nix-instantiate", "-E", CHAIN])).stdout.trim();
  const out = (await run(["nix-store", "--realise", drv])).stdout.trim();
  await assertClosureOrder(out);
  const chain = (await closureOf([out])).map((p) => p.path.replace(/^.*-pnx-chain-/, ""));
  assert.deepEqual(chain, ["a", "b", "c", "d"]);
  await assertClosureOrder(drv);
  assert.ok((await closureOf([drv])).every((p) => p.path.endsWith(".drv") || !p.path.includes("pnx-chain")), "a .drv's closure holds derivations, not their outputs");
});

test("closureOf: a path missing from the store is refused naming it", async () => {
  const bogus = "/nix/store/00000000000000000000000000000000-pnx-not-there";
  await assert.rejects(closureOf([bogus]), (e: Error) => e.message.includes(bogus));
});
