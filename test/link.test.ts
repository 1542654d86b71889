import "./helpers/env";
import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "fs";
import * as net from "net";
import * as path from "path";
import { Lab } from "../provider/lab/lab";
import { startDelayRelay } from "../provider/lab/delay-relay";
import { run } from "../provider/util/run";
import { SshSession, inflightLimit } from "../provider/ssh/session";
import { canRunLab, tempDir } from "./helpers/env";
import { buildSystem } from "./bench/closures";
import { create } from "../provider/handlers/machine";
import { closeAllSessions } from "../provider/ssh/pool";

/** Median time of n request/response exchanges of one byte over a connected socket. */
async function medianRtt(sock: net.Socket, n: number): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    await new Promise<void>((resolve) => { sock.once("data", () => resolve()); sock.write("x"); });
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return times.sort((a, b) => a - b)[Math.floor(n / 2)];
}

test("delay relay: measured round trip within 20 % of the asked RTT, data in order", async () => {
  const echo = net.createServer((s) => s.pipe(s));
  await new Promise<void>((r) => echo.listen(0, "127.0.0.1", r));
  const target = (echo.address() as net.AddressInfo).port;
  for (const rttMs of [40, 80]) {
    const relay = await startDelayRelay({ listenHost: "127.0.0.1", targetHost: "127.0.0.1", targetPort: target, rttMs });
    const sock = net.connect({ host: "127.0.0.1", port: relay.port });
    sock.setNoDelay(true);
    await new Promise((r) => sock.once("connect", r));
    const rtt = await medianRtt(sock, 7);
    assert.ok(Math.abs(rtt - rttMs) <= rttMs * 0.2, `asked ${rttMs} ms, measured ${rtt.toFixed(1)} ms`);
    // Order is kept across many chunks.
    const got: Buffer[] = [];
    const want = Buffer.from(Array.from({ length: 2000 }, (_, i) => `${i},`).join(""));
    sock.removeAllListeners("data");
    sock.on("data", (d) => got.push(d));
    for (let i = 0; i < want.length; i += 100) sock.write(want.subarray(i, i + 100));
    await new Promise((r) => setTimeout(r, rttMs * 3 + 100));
    assert.equal(Buffer.concat(got).toString(), want.toString());
    sock.destroy();
    await relay.close();
  }
  echo.close();
});

test("lab link: --rtt puts a host behind the relay, --rate adds tbf, --clear removes both", { skip: canRunLab ? false : "needs root" }, async () => {
  const tmp = tempDir("link");
  const lab = await Lab.up({ dir: path.join(tmp, "lab"), hosts: 1 });
  try {
    const [direct] = await lab.status();
    await lab.link("host1", { rttMs: 40, rateMbit: 50 });
    const [shaped] = await lab.status();
    assert.notEqual(`${shaped.address}:${shaped.port}`, `${direct.address}:22`, "status points through the relay");
    assert.deepEqual(shaped.link, { rttMs: 40, rateMbit: 50 });
    const key = fs.readFileSync(lab.privateKeyPath, "utf8");
    // Through the relay: same host key (pinned), real commands.
    const s = await SshSession.connect({ host: shaped.address, port: shaped.port, user: "root", privateKey: key }, { pin: direct.hostPublicKey });
    assert.equal((await s.exec("hostname")).stdout, "host1\n");
    // The session's own round-trip measure (keepalive request) sees the relay's delay; the
    // stream's in-flight limit follows it (twice a 1 Gbit/s link's BDP, at least 512 KiB).
    const rtt = (await s.rttMs())!;
    assert.ok(Math.abs(rtt - 40) <= 40 * 0.2, `rtt through the relay: ${rtt.toFixed(1)} ms`);
    assert.equal(inflightLimit(rtt), Math.ceil(2 * 125e6 * rtt / 1000));
    s.close();
    const d = await SshSession.connect({ host: direct.address, port: 22, user: "root", privateKey: key }, { pin: direct.hostPublicKey });
    const directRtt = (await d.rttMs())!;
    assert.ok(directRtt < 5, `direct rtt ${directRtt.toFixed(2)} ms`);
    assert.equal(inflightLimit(directRtt), 512 << 10);
    d.close();
    // (The delay itself is measured by the relay test above; sshd's own start-up time makes a
    // timing check through it a flaky test.)
    const tc = (await run(["tc", "qdisc", "show", "dev", JSON.parse(fs.readFileSync(path.join(tmp, "lab/lab.json"), "utf8")).hosts[0].vethOuter])).stdout;
    assert.match(tc, /tbf .*rate 50Mbit/);
    const relayPid = JSON.parse(fs.readFileSync(path.join(tmp, "lab/lab.json"), "utf8")).hosts[0].link.relayPid;
    await lab.clearLink("host1");
    const [cleared] = await lab.status();
    assert.equal(`${cleared.address}:${cleared.port}`, `${direct.address}:22`);
    assert.doesNotMatch((await run(["tc", "qdisc", "show", "dev", JSON.parse(fs.readFileSync(path.join(tmp, "lab/lab.json"), "utf8")).hosts[0].vethOuter])).stdout, /tbf/);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(fs.existsSync(`/proc/${relayPid}`) && !/\) Z /.test(fs.readFileSync(`/proc/${relayPid}/stat`, "utf8")), false, "relay stopped");
  } finally {
    await lab.down();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});

test("compression is chosen per link: zstd for compressible data on a slow link, none for random data", { skip: canRunLab ? false : "needs root" }, async () => {
  const tmp = tempDir("compress");
  const lab = await Lab.up({ dir: path.join(tmp, "lab"), hosts: 2 });
  const logged: string[] = [];
  const write = process.stderr.write.bind(process.stderr);
  try {
    const text = await buildSystem(tmp, "ctext", { paths: 10, sizeKB: 4096, seed: `text-${Date.now()}` });
    const random = await buildSystem(tmp, "crand", { paths: 10, sizeKB: 4096, seed: `rand-${Date.now()}`, random: true });
    await lab.link("host1", { rateMbit: 20 });
    const hosts = await lab.status();
    const key = fs.readFileSync(lab.privateKeyPath, "utf8");
    const deploy = (h: typeof hosts[0], sys: typeof text) => create({
      name: h.name, connection: { host: h.address, port: h.port, user: "root", privateKey: key }, systemPath: sys.outPath, drvPath: sys.drvPath,
      action: "switch", buildOn: "local", substituteOnTarget: false, compress: "auto", connectTimeout: 15, activationTimeout: 120,
    });
    (process.stderr as any).write = (chunk: any, ...rest: any[]) => { logged.push(String(chunk)); return write(chunk, ...rest); };
    const slow = await deploy(hosts[0], text);
    const fast = await deploy(hosts[1], random);
    (process.stderr as any).write = write;
    assert.ok(logged.some((l) => /^host1: compression: zstd \(link ~/.test(l)), logged.filter((l) => /compression/.test(l)).join(""));
    assert.ok(slow.outs.bytesCopied < slow.outs.closureSize.bytes / 4, "compressed on the wire");
    assert.ok(logged.some((l) => /^host2: compression: none \(link ~/.test(l)), logged.filter((l) => /compression/.test(l)).join(""));
    assert.ok(fast.outs.bytesCopied >= fast.outs.closureSize.bytes, "random data is sent as it is");
  } finally {
    (process.stderr as any).write = write;
    await closeAllSessions();
    await lab.down();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});
