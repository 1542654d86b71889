/**
 * The examples as a user's programs (issue 12, point 6): they import "pulumi-nixos" (the package's
 * self-reference in the repo, an installed package elsewhere) and run preview → up → refresh →
 * destroy against lab hosts through the engine harness.
 */
import "./helpers/env";
import { describe, test, after } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "fs";
import * as path from "path";
import { canRunLab, tempDir, ROOT } from "./helpers/env";
import { engine, expectExit, stateResources } from "./helpers/engine";
import { Bed, flakeBed, nixopsNetworkBed, twoTierBed } from "./examples/lab-bed";

const EXAMPLES = ["flake", "nixops-network", "typescript-api", "two-tier"];

test("every example imports pulumi-nixos by package name, as a user's program does", () => {
  for (const e of EXAMPLES) {
    const src = fs.readFileSync(path.join(ROOT, "examples", e, "index.ts"), "utf8");
    assert.match(src, /from "pulumi-nixos";/, `examples/${e}`);
    assert.doesNotMatch(src, /from "\.\.\/\.\.\/provider/, `examples/${e} reaches into the repo`);
  }
});

describe("examples against the lab", { skip: canRunLab ? false : "the lab needs root on Linux" }, () => {
  const tmps: string[] = [];
  after(() => { for (const t of tmps) fs.rmSync(t, { recursive: true, force: true }); });

  for (const [name, bedOf, machines] of [
    ["flake", flakeBed, ["alpha", "beta"]],
    ["nixops-network", nixopsNetworkBed, ["heron", "talon", "tiger", "hound", "pigeon"]],
    ["two-tier", twoTierBed, ["db", "web"]],
  ] as const) {
    test(`${name}: preview → up → refresh → destroy`, async () => {
      const tmp = tempDir(`example-${name}`);
      tmps.push(tmp);
      const bed: Bed = await bedOf(tmp);
      try {
        const pv = await engine("preview", bed.stack);
        expectExit(pv, 0, "preview");
        for (const m of machines) assert.match(pv.stdout, new RegExp(`\\+\\s+pulumi-nodejs:dynamic/nixos:Machine ${name === "nixops-network" ? `nixos-${m}` : m} create`));
        expectExit(await engine("up", bed.stack), 0, "up");
        const st = stateResources(bed.stack.state);
        for (const m of machines) assert.equal((await bed.lab.exec(m, ["readlink", "/run/current-system"])).stdout.trim(), st[m].outputs.systemPath, m);
        if (name === "two-tier") {
          // web's configuration took db's address and system and the key's path (not its content).
          assert.match(pv.stdout + pv.stderr, /known after specialArgs\.dbHost is known/, "the preview plans web once db is known");
          const conf = (await bed.lab.exec("web", ["cat", "/etc/web/upstream.conf"])).stdout;
          assert.equal(conf, `db_host = ${st.db.outputs.host}\ndb_system = ${st.db.outputs.systemPath}\ndb_password_file = /run/keys/db-password\n`);
          assert.equal((await bed.lab.exec("web", ["cat", "/run/keys/db-password"])).stdout.startsWith("db-password-"), true);
        }
        const rf = await engine("refresh", bed.stack);
        expectExit(rf, 0, "refresh");
        assert.doesNotMatch(rf.stdout, /drift/);
        expectExit(await engine("destroy", bed.stack), 0, "destroy");
        assert.deepEqual(Object.values(stateResources(bed.stack.state)).filter((r) => r.type.startsWith("pulumi-nodejs:dynamic")), []);
      } finally {
        await bed.stop();
      }
    });
  }
});
