/**
 * A user-space TCP relay that adds latency: every chunk is forwarded after rttMs/2, in order, in
 * each direction. The kernel here has no netem qdisc, so this is how the lab emulates a WAN link.
 * Run standalone by `lab link` (node dist/test/lab/delay-relay.js LISTEN_HOST LISTEN_PORT TARGET_HOST TARGET_PORT RTT_MS).
 */
import * as net from "net";

/** A running relay. */
export interface DelayRelay {
  host: string;
  port: number;
  close(): Promise<void>;
}

/** Forwards src → dst, each chunk delayed by delayMs, order kept. */
function delayedPipe(src: net.Socket, dst: net.Socket, delayMs: number): void {
  const queue: { due: number; chunk: Buffer }[] = [];
  let timer: NodeJS.Timeout | undefined;
  let ended = false;
  const flush = () => {
    timer = undefined;
    const now = Date.now();
    while (queue.length && queue[0].due <= now) dst.write(queue.shift()!.chunk);
    if (queue.length) timer = setTimeout(flush, queue[0].due - now);
    else if (ended) dst.end();
  };
  src.on("data", (chunk: Buffer) => {
    queue.push({ due: Date.now() + delayMs, chunk });
    if (!timer) timer = setTimeout(flush, delayMs);
  });
  src.on("end", () => { ended = true; if (!timer) flush(); });
  src.on("error", () => dst.destroy());
}

/** Starts a relay on listenHost:listenPort (0 = any free port) to targetHost:targetPort. */
export function startDelayRelay(o: { listenHost: string; listenPort?: number; targetHost: string; targetPort: number; rttMs: number }): Promise<DelayRelay> {
  const oneWay = o.rttMs / 2;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    client.setNoDelay(true);
    const upstream = net.connect({ host: o.targetHost, port: o.targetPort });
    upstream.setNoDelay(true);
    for (const s of [client, upstream]) { sockets.add(s); s.on("close", () => sockets.delete(s)); }
    delayedPipe(client, upstream, oneWay);
    delayedPipe(upstream, client, oneWay);
    upstream.on("error", () => client.destroy());
    client.on("error", () => upstream.destroy());
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(o.listenPort ?? 0, o.listenHost, () => {
      const addr = server.address() as net.AddressInfo;
      resolve({
        host: o.listenHost, port: addr.port,
        close: () => new Promise((r) => { for (const s of sockets) s.destroy(); server.close(() => r()); }),
      });
    });
  });
}

if (require.main === module) {
  const [listenHost, listenPort, targetHost, targetPort, rtt] = process.argv.slice(2);
  startDelayRelay({ listenHost, listenPort: Number(listenPort), targetHost, targetPort: Number(targetPort), rttMs: Number(rtt) }).then(
    (r) => process.stdout.write(`${r.port}\n`),
    (e) => { console.error(`delay relay: ${e.message}`); process.exit(1); });
}
