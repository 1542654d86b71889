import "./helpers/env";
import { describe, test, before, after } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "fs";
import * as path from "path";
import { Lab, LabHostInfo } from "../provider/lab/lab";
import { canRunLab, tempDir } from "./helpers/env";
import { buildSystem } from "./bench/closures";
import { create, MachineInputs } from "../provider/handlers/machine";
import { closeAllSessions } from "../provider/ssh/pool";

const skip = canRunLab ? false : "the lab needs root on Linux";

// A doas stand-in with doas's interface (OpenBSD doas.c: getopt "+C:Lnsu:", rules from
// /etc/doas.conf as `permit [nopass] USER [as TARGET]`; -n: "Authorization required" instead of a
// prompt; anything else not permitted: "Operation not permitted", exit 1). Behind the interface it
// reaches root through a sudo rule that allows only its helper (doas is setuid; a script cannot be),
// so the deployer's own sudo is gone and a `sudo -n` from the deployer fails.
const DOAS = `#!/bin/sh
target=root nonint=
while getopts "+C:Lnsu:" o; do
  case "$o" in
    n) nonint=1 ;;
    u) target=$OPTARG ;;
    C|L|s) echo "doas: -$o not supported by the stand-in" >&2; exit 1 ;;
    *) echo "usage: doas [-Lns] [-C config] [-u user] command [args]" >&2; exit 1 ;;
  esac
done
shift $((OPTIND - 1))
[ $# -gt 0 ] || { echo "usage: doas [-Lns] [-C config] [-u user] command [args]" >&2; exit 1; }
me=$(id -un)
rule=$(awk -v me="$me" -v t="$target" '$1 == "permit" { n = 2; nopass = 0; if ($2 == "nopass") { nopass = 1; n = 3 }
  if ($n == me && ($(n+1) == "" || ($(n+1) == "as" && $(n+2) == t))) { print nopass ? "nopass" : "pass"; exit } }' /etc/doas.conf)
[ -n "$rule" ] || { echo "doas: Operation not permitted" >&2; exit 1; }
[ "$rule" = nopass ] || { [ -n "$nonint" ] && { echo "doas: Authorization required" >&2; exit 1; }; echo "doas: no password prompts in the stand-in" >&2; exit 1; }
exec sudo -n -u "$target" /etc/doas-standin/run "$me" "$@"
`;
// Runs as the target: records who asked for what (the command's first two words), then runs it.
const RUN = `#!/bin/sh
who=$1; shift
echo "$who: $1 $2" >> /run/doas-standin.log
exec "$@"
`;

describe("privilegeEscalationCommand: doas instead of sudo", { skip }, () => {
  let tmp = "";
  let lab: Lab;
  let h: LabHostInfo;
  const ex = async (cmd: string, user = "root") => (await lab.exec("host1", user === "root" ? ["sh", "-c", cmd] : ["runuser", "-u", user, "--", "sh", "-c", cmd], { allowFailure: true, timeoutMs: 60_000 })).stdout.trim();

  before(async () => {
    tmp = tempDir("doas");
    lab = await Lab.up({ dir: path.join(tmp, "lab"), hosts: 1 });
    [h] = await lab.status();
    await lab.exec("host1", ["sh", "-c", [
      "mkdir -p /etc/doas-standin/bin",
      `cat > /etc/doas-standin/bin/doas <<'EOF2'\n${DOAS}EOF2`,
      `cat > /etc/doas-standin/run <<'EOF2'\n${RUN}EOF2`,
      "chmod 755 /etc/doas-standin/bin/doas /etc/doas-standin/run",
      "echo 'permit nopass deployer as root' > /etc/doas.conf",
      // The deployer's own sudo goes; only the stand-in's helper stays reachable.
      "rm -f /etc/sudoers.d/deployer",
      "echo 'deployer ALL=(root) NOPASSWD: /etc/doas-standin/run' > /etc/sudoers.d/doas-standin && chmod 440 /etc/sudoers.d/doas-standin",
      // doas on the deployer's PATH: first in the login PATH the lab's sshd sets (SetEnv; sshd
      // takes a keyword's first value, so the lab's line is changed, not a second one added).
      "if grep -q '^SetEnv PATH=' /etc/ssh/sshd_config; then sed -i 's|^SetEnv PATH=|SetEnv PATH=/etc/doas-standin/bin:|' /etc/ssh/sshd_config; else echo 'SetEnv PATH=/etc/doas-standin/bin:/usr/local/bin:/usr/bin:/bin' >> /etc/ssh/sshd_config; fi",
    ].join("\n")]);
    await lab.reboot("host1");
  });
  after(async () => {
    await closeAllSessions();
    await lab?.down();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  test("the stand-in behaves as doas; the deployer has no sudo", async () => {
    assert.equal(await ex("PATH=/etc/doas-standin/bin:$PATH doas -n id -u", "deployer"), "0");
    assert.equal(await ex("sudo -n id -u 2>&1 | head -1", "deployer"), "sudo: a password is required");
    assert.equal(await ex("PATH=/etc/doas-standin/bin:$PATH doas -n id -u 2>&1", "nobody"), "doas: Operation not permitted");
  });

  test("a deploy as deployer with privilegeEscalationCommand [\"doas\"] imports and activates through doas -n", async () => {
    await ex("rm -f /run/doas-standin.log");
    const key = fs.readFileSync(lab.privateKeyPath, "utf8");
    const sys = await buildSystem(tmp, "doased", { paths: 3, sizeKB: 4, seed: "doas" });
    const inputs = (escalation?: string[]): MachineInputs => ({
      name: h.name, connection: { host: h.address, port: h.port, user: "deployer", privateKey: key, ...(escalation ? { privilegeEscalationCommand: escalation } : {}) },
      systemPath: sys.outPath, drvPath: sys.drvPath, action: "switch", buildOn: "local", substituteOnTarget: false, compress: false,
      connectTimeout: 15, activationTimeout: 60,
    });
    // Without it: sudo -n, which this host refuses (the error says so, nothing changed).
    await assert.rejects(create(inputs()), /deployer@\S+: sudo asks for a password/);
    await closeAllSessions();
    const out = await create(inputs(["doas"]));
    await closeAllSessions();
    assert.equal(await ex("readlink /run/current-system"), sys.outPath);
    assert.equal(out.outs.systemPath, sys.outPath);
    const log = await ex("cat /run/doas-standin.log");
    assert.match(log, /^deployer: sh -c$/m, "privileged steps ran as `doas -n sh -c …`");
    assert.deepEqual([...new Set(log.split("\n"))], ["deployer: sh -c"], "every privileged step went through doas");
  });
});
