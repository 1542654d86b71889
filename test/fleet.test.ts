import "./helpers/env";
import { describe, test, before, after } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "fs";
import * as path from "path";
import { spawn } from "child_process";
import YAML from "yaml";
import { run, RunResult } from "../provider/util/run";
import { nixopsNetworkBed, Bed, THEDRONEELY_SECRETS } from "./examples/lab-bed";
import { canRunLab, tempDir, ROOT } from "./helpers/env";
import { engine, expectExit, stateResources } from "./helpers/engine";
import { descriptionProblems } from "../provider/network/description";

const skip = canRunLab ? false : "the lab needs root on Linux";
const CLI = [process.execPath, path.join(ROOT, "bin/pulumi-nixos.js")];

/** A command's stdout as the chunks it wrote them in (each read as it arrived). */
function outputChunks(argv: string[], env: NodeJS.ProcessEnv): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0], argv.slice(1), { env, stdio: ["ignore", "pipe", "ignore"] });
    const chunks: string[] = [];
    child.stdout.on("data", (d: Buffer) => chunks.push(d.toString()));
    child.once("error", reject);
    child.once("close", () => resolve(chunks));
  });
}

describe("the seed's network and the fleet CLI", { skip }, () => {
  let tmp = "";
  let bed: Bed;
  const fleet = (...args: string[]): Promise<RunResult> => run([...CLI, ...args, "--state", bed.stack.state], { allowFailure: true, timeoutMs: 300_000 });
  // Systemd lab hosts boot a seeded generation 1: deploys start after it.
  const seed = () => (bed.lab.init === "systemd" ? 1 : 0);
  const json = async (...args: string[]) => {
    const r = await fleet(...args, "--json");
    try { return { code: r.code, data: JSON.parse(r.stdout) }; } catch { throw new Error(`not JSON: ${r.stdout}\n${r.stderr}`); }
  };

  before(async () => {
    tmp = tempDir("fleet");
    bed = await nixopsNetworkBed(tmp);
  });
  after(async () => {
    await bed?.stop();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  test("the nixops-network example deploys 5 hosts end to end, Vault keys included", async () => {
    const up = await engine("up", bed.stack);
    expectExit(up, 0, "up");
    const st = stateResources(bed.stack.state);
    for (const name of ["heron", "talon", "tiger", "hound", "pigeon"]) {
      assert.equal(st[name].outputs.generation, seed() + 1);
      assert.equal(st[name].outputs.nixosVersion, "24.05.7376", "evaluated against the pin");
      const keys = (await bed.lab.exec(name, ["sh", "-c", "for f in /run/keys/*; do echo \"$(basename $f) $(stat -c '%U %G %a' $f) $(cat $f)\"; done"])).stdout;
      assert.match(keys, new RegExp(`thedroneely_cockpit_api_token thedroneely root 600 ${THEDRONEELY_SECRETS.cockpit_api_token}`));
      assert.match(keys, new RegExp(`thedroneely_pgsql_database_password thedroneely postgres 640 ${THEDRONEELY_SECRETS.pgsql_database_password}`));
      assert.match(keys, /thedroneely_ssh_known_hosts thedroneely root 600 heron.local ssh-ed25519/);
      assert.equal((await bed.lab.exec(name, ["sh", "-c", "grep -cvx done /run/activation-saw-keys"])).stdout.trim(), "3", "keys were there before activation (and /run/keys/done, as NixOps's send_keys left it)");
      assert.match((await bed.lab.exec(name, ["nix-channel", "--list"])).stdout, /^nixos http:\/\/.*\/24\.05\.7376$/m);
    }
  });

  test("info: Up-to-date, then Outdated for a hand-changed host", async () => {
    let r = await json("info");
    assert.equal(r.code, 0);
    assert.deepEqual(r.data.map((x: any) => x.status), Array(5).fill("Up / Up-to-date"));
    const table = await fleet("info");
    // Piped: plain aligned columns (test/friction.test.ts checks the style).
    assert.match(table.stdout, /^Name +Status +Host +Generation +System$/m);
    assert.match(table.stdout, new RegExp(`^heron +Up / Up-to-date +10\\.231\\.\\d+\\.2 +${seed() + 1} +/nix/store/`, "m"));
    await bed.lab.exec("talon", ["sh", "-c", "ln -sfn $(readlink -f /nix/var/nix/profiles/system)/etc /run/current-system"]);
    r = await json("info", "--include", "talon", "heron");
    assert.deepEqual(Object.fromEntries(r.data.map((x: any) => [x.name, x.status])), { heron: "Up / Up-to-date", talon: "Up / Outdated" });
    await bed.lab.exec("talon", ["sh", "-c", "ln -sfn $(readlink -f /nix/var/nix/profiles/system) /run/current-system"]);
  });

  test("check: up and cut hosts", async () => {
    await bed.lab.cut("pigeon");
    try {
      const r = await json("check", "--include", "heron", "pigeon");
      assert.equal(r.code, 1, "a host that is down fails the command");
      const heron = r.data.find((x: any) => x.name === "heron");
      const pigeon = r.data.find((x: any) => x.name === "pigeon");
      // No failed unit on a systemd host; N/A without systemd.
      assert.deepEqual([heron.exists, heron.up, heron.reachable, heron.disksOk, heron.units], ["Yes", "Yes", "Yes", "Yes", bed.lab.init === "systemd" ? "" : "N/A"]);
      assert.match(heron.load, /^\d+\.\d+ \d+\.\d+ \d+\.\d+$/);
      assert.deepEqual([pigeon.exists, pigeon.up, pigeon.reachable], ["Yes", "No", "No"]);
      // One budget per host for the read-only commands: the dead host costs that much, the live one answers.
      for (const cmd of ["info", "list-generations"]) {
        const r2 = await run([...CLI, cmd, "--json", "--include", "heron", "pigeon", "--state", bed.stack.state], { allowFailure: true, env: { ...process.env, PULUMI_NIXOS_FLEET_TIMEOUT: "3" } });
        assert.equal(r2.code, 1, `${cmd}: the dead host fails the command`);
        assert.match(r2.stdout + r2.stderr, /pigeon|10\.231/, `${cmd}: names the dead host`);
        const data = JSON.parse(r2.stdout);
        if (cmd === "info") {
          assert.deepEqual(Object.fromEntries(data.map((x: any) => [x.name, x.status])), { heron: "Up / Up-to-date", pigeon: "Unreachable" });
          assert.match(data.find((x: any) => x.name === "pigeon").error, /within 3 s|no answer within/);
        } else {
          assert.ok(Array.isArray(data.heron) && data.heron.length > 0, "heron's generations listed");
          assert.match(data.pigeon.error, /within 3 s|no answer within/);
        }
      }
      // Text output: the live host's row is out while the dead one is still being waited for
      // (its own write, before the dead host's), not held back until every host answered.
      for (const cmd of ["info", "check", "list-generations"]) {
        const chunks = await outputChunks([...CLI, cmd, "--include", "heron", "pigeon", "--state", bed.stack.state], { ...process.env, PULUMI_NIXOS_FLEET_TIMEOUT: "3" });
        const at = (re: RegExp) => chunks.findIndex((c) => re.test(c));
        const heronAt = at(/^heron  /m), pigeonAt = at(/^pigeon  /m);
        assert.ok(heronAt >= 0 && pigeonAt >= 0, `${cmd}: both rows printed:\n${chunks.join("")}`);
        assert.ok(heronAt < pigeonAt, `${cmd}: heron's row came in a write before pigeon's (chunks: ${JSON.stringify(chunks)})`);
        assert.match(chunks.join(""), cmd === "check" ? /^pigeon +Yes +No +No /m : cmd === "info" ? /^pigeon +Unreachable /m : /^pigeon +- +- +error: .*within 3 s/m);
      }
      const table = await fleet("check", "--include", "heron");
      assert.match(table.stdout, /Machines state:/);
      assert.match(table.stdout, /^Name +Exists +Up +Reachable +Disks OK +Load avg\. +System +Units +Notes$/m);
    } finally {
      await bed.lab.restore("pigeon");
    }
  });

  test("list-generations after two deploys; rollback recorded in the state; refresh shows no drift; up redeploys the program's system", async () => {
    // A second deploy: change heron's configuration (a copy of the example, so the repo stays as it is).
    const example = path.join(ROOT, "examples/nixops-network");
    // A copy beside links to the repo's provider/ and node_modules/, so its imports resolve as in the repo.
    const copy = path.join(tmp, "repo", "examples", "nixops-network");
    fs.cpSync(example, copy, { recursive: true });
    fs.symlinkSync(path.join(ROOT, "provider"), path.join(tmp, "repo", "provider"));
    fs.symlinkSync(path.join(ROOT, "node_modules"), path.join(tmp, "repo", "node_modules"));
    // The example imports "pulumi-nixos": the copy finds it as the repo does, by the package's self-reference.
    for (const p of ["package.json", "dist"]) fs.symlinkSync(path.join(ROOT, p), path.join(tmp, "repo", p));
    fs.appendFileSync(path.join(copy, "configuration/heron.nix"), "# second deploy\n");
    fs.writeFileSync(path.join(copy, "configuration/heron.nix"), fs.readFileSync(path.join(copy, "configuration/heron.nix"), "utf8").replace('"heron\\n"', '"heron v2\\n"'));
    fs.writeFileSync(path.join(bed.stack.cwd, "Pulumi.yaml"), fs.readFileSync(path.join(bed.stack.cwd, "Pulumi.yaml"), "utf8").replace(path.join(example, "index.ts"), path.join(copy, "index.ts")));
    const up = await engine("up", bed.stack);
    expectExit(up, 0, "second deploy");
    assert.match(up.stdout, /~ 1 updated/);
    const gens = await json("list-generations", "--include", "heron");
    assert.deepEqual(gens.data.heron.map((g: any) => [g.number, g.current]), [...Array(seed()).keys()].map((i) => [i + 1, false]).concat([[seed() + 1, false], [seed() + 2, true]]));
    assert.match(gens.data.heron[0].date, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/);
    const table = await fleet("list-generations", "--include", "heron");
    assert.match(table.stdout, new RegExp(`heron +${seed() + 2} +\\S+ \\S+ +\\(current\\)`));

    const rb = await fleet("rollback", "--include", "heron");
    assert.equal(rb.code, 0, rb.stderr);
    assert.match(rb.stdout, new RegExp(`heron: now generation ${seed() + 1}`));
    assert.match(rb.stdout, /the stack's state records it: `pulumi up` redeploys the program's system, `pulumi refresh` shows no drift/);
    const rolled = (await bed.lab.exec("heron", ["readlink", "-f", "/run/current-system"])).stdout.trim();
    const recorded = Object.values(stateResources(bed.stack.state)).find((r) => r.outputs?.kind === "machine" && r.urn.endsWith("heron"))!;
    assert.deepEqual([recorded.outputs.systemPath, recorded.outputs.generation], [rolled, seed() + 1], "the state records what the host runs");
    assert.equal((await json("info", "--include", "heron")).data[0].status, "Up / Up-to-date", "info agrees");
    const rf = await engine("refresh", bed.stack);
    expectExit(rf, 0, "refresh");
    assert.doesNotMatch(rf.stdout, /heron drift/, "no drift: state and host agree");
    const up3 = await engine("up", bed.stack);
    expectExit(up3, 0, "up after the rollback");
    assert.match(up3.stdout, /~ 1 updated/, "the program's system is deployed again");
    assert.notEqual((await bed.lab.exec("heron", ["readlink", "-f", "/run/current-system"])).stdout.trim(), rolled);
    assert.equal((await json("info", "--include", "heron")).data[0].status, "Up / Up-to-date");
  });

  test("reboot re-seeds keys; send-keys after a lab reboot", async () => {
    const r = await fleet("reboot", "--include", "tiger");
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /tiger: back up \(boot [0-9a-f-]+, system (running|N\/A)\); keys re-uploaded: thedroneely_cockpit_api_token, thedroneely_pgsql_database_password, thedroneely_ssh_known_hosts/);
    assert.equal((await bed.lab.exec("tiger", ["sh", "-c", "ls /run/keys | tr '\\n' ' '"])).stdout.trim(), "done thedroneely_cockpit_api_token thedroneely_pgsql_database_password thedroneely_ssh_known_hosts");

    await bed.lab.reboot("hound");
    assert.equal((await bed.lab.exec("hound", ["sh", "-c", "ls /run/keys | wc -l"])).stdout.trim(), "0");
    const sk = await fleet("send-keys", "--tag", "db");
    assert.equal(sk.code, 0, sk.stderr);
    assert.match(sk.stdout, /hound: thedroneely_cockpit_api_token, thedroneely_pgsql_database_password, thedroneely_ssh_known_hosts/);
    assert.match(sk.stdout, /tiger: /, "--tag db selects tiger and hound");
    assert.doesNotMatch(sk.stdout, /heron|talon|pigeon/);
    assert.equal((await bed.lab.exec("hound", ["cat", "/run/keys/thedroneely_pgsql_database_password"])).stdout, THEDRONEELY_SECRETS.pgsql_database_password);
  });

  test("ssh runs a command with the stack's key and pinned host key", async () => {
    const r = await run([...CLI, "ssh", "pigeon", "--state", bed.stack.state, "--", "hostname", ";", "readlink", "/run/current-system"], { allowFailure: true });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^pigeon\n\/nix\/store\/.*-nixos-system-pigeon-/);
  });

  test("targets: --tag and --include print the --target arguments", async () => {
    const cfg = path.join(bed.stack.cwd, "Pulumi.targets.yaml");
    fs.writeFileSync(cfg, YAML.stringify({ config: { "pulumi-nixos:networkFile": path.join(ROOT, "examples/nixops-network/network.yaml") } }));
    const r = await run([...CLI, "targets", "--stack", "targets", "--cwd", bed.stack.cwd, "--tag", "web"]);
    const urns = r.stdout.trim().split(/ (?=--target)/);
    assert.equal(urns.length, 12, "the Stack, the Network, heron and talon, each with 3 keys and a channel");
    assert.match(r.stdout, /--target urn:pulumi:targets::nixops-network::pulumi-nixos:index:Network\$pulumi-nodejs:dynamic\/nixos:Machine::nixos-heron( |$)/);
    assert.match(r.stdout, /DeploymentKey::nixos-talon-thedroneely_cockpit_api_token( |$)/);
    assert.doesNotMatch(r.stdout, /tiger|hound|pigeon/);
    const inc = await run([...CLI, "targets", "--stack", "targets", "--cwd", bed.stack.cwd, "--include", "pigeon"]);
    assert.match(inc.stdout, /::nixos-pigeon( |$)/);
    // The URNs are the ones the stack really has.
    const st = JSON.parse(fs.readFileSync(bed.stack.state, "utf8")).deployment.resources.map((x: any) => x.urn.replace("urn:pulumi:lab::", "urn:pulumi:targets::").replace(/::nixops-network-lab$/, "::nixops-network-targets"));
    // (The root Stack is recorded by the real engine; a runner that does not record it is not asked for it.)
    const hasStack = st.some((u: string) => u.includes("::pulumi:pulumi:Stack::"));
    for (const u of urns) if (hasStack || !u.includes("::pulumi:pulumi:Stack::")) assert.ok(st.includes(u.replace(/^--target /, "")), u);
  });

  test("invalid network descriptions give clear errors naming the field", async () => {
    const problems = descriptionProblems({
      pins: { p: { url: "http://x/y", sha256: "0".repeat(52) } },
      machines: {
        a: { targetHostt: "x", configuration: "./a.nix" },
        b: { configuration: "./b.nix", pin: "nope" },
        c: { targetHost: "c", configuration: "./c.nix", keys: { k: { text: "x", file: "/y" } } },
      },
    });
    assert.ok(problems.includes("network.machines.a.targetHostt: unknown field (did you mean 'targetHost'?)"), problems.join("\n"));
    assert.ok(problems.includes("network.machines.a.targetHost: required (the machine's host name or address)"));
    assert.ok(problems.includes("network.machines.b.targetHost: required (the machine's host name or address)"));
    assert.ok(problems.some((p) => p.startsWith("network.machines.b.pin: unknown pin 'nope'")));
    assert.ok(problems.includes("network.machines.c.keys.k: give exactly one source of text, config, file, command, vault (got text and file)"));
    // Through the stack program: the run fails before anything is deployed.
    const dir = path.join(tmp, "invalid");
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, "Pulumi.yaml"), `name: pulumi-nixos\nruntime:\n  name: nodejs\n  options:\n    typescript: true\nmain: ${path.join(ROOT, "stacks", "index.ts")}\n`);
    fs.writeFileSync(path.join(dir, "Pulumi.bad.yaml"), YAML.stringify({ config: { "pulumi-nixos:network": { machines: { heron: { targetHost: "10.231.250.2", configuration: "./x.nix", keys: { k: { vault: { path: "a", field: "b" }, command: ["true"] } } } } } } }));
    const r = await engine("preview", { cwd: dir, stack: "bad", state: path.join(dir, "s.json") });
    expectExit(r, 1, "invalid description");
    assert.match(r.stdout, /invalid network description:\n\s+network\.machines\.heron\.keys\.k: give exactly one source .* \(got command and vault\)/);
  });
});
