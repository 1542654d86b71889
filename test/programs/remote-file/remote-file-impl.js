// The work of RemoteFile, loaded by the provider at run time (not serialized into state).
const { execFile } = require("child_process");
const crypto = require("crypto");

function ssh(p, script, input) {
  return new Promise((resolve, reject) => {
    const child = execFile("ssh", ["-i", p.keyPath, "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
      "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", `root@${p.host}`, script], (err, stdout, stderr) => {
      if (err) reject(new Error(`ssh ${p.host}: ${stderr.trim() || err.message}`));
      else resolve(stdout);
    });
    child.stdin.end(input || "");
  });
}
const q = (s) => `'${String(s).replace(/'/g, `'\\''`)}'`;
exports.digest = (c) => crypto.createHash("sha256").update(c).digest("hex");
exports.write = (p) => ssh(p, `umask 077; cat > ${q(p.path)}.tmp && chmod ${p.mode} ${q(p.path)}.tmp && mv ${q(p.path)}.tmp ${q(p.path)}`, p.content);
exports.read = async (p) => {
  const out = await ssh(p, `if [ -e ${q(p.path)} ]; then printf x; cat ${q(p.path)}; fi`);
  return out === "" ? undefined : out.slice(1);
};
exports.remove = (p) => ssh(p, `rm -f ${q(p.path)}`);
