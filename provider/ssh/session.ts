/**
 * One SSH connection to a host (node-ssh over ssh2), with host-key pinning, privileged execution
 * (root directly, others through `sudo -n`) and per-command timeouts. Commands run without a
 * login shell, and secrets only ever travel on stdin.
 */
import { NodeSSH } from "node-ssh";
import type { ClientChannel } from "ssh2";
import { Duplex, Readable } from "stream";
import { Connection, DIAL_ERROR_LIMIT, connectionLabel, hops, jumpKey, portOf, userOf } from "../connection";
import { HostKeyMismatchError, formatHostKey, normalizeHostKey } from "./host-key";
import { timeoutEnv, timeoutMs } from "../util/timeouts";
import { HostKeyPolicy, KnownHostsError, checkKnownHost } from "./known-hosts";
import { applySshConfig, sshConfigFile } from "./ssh-config";
import { authPlan, AuthPlan, describeAttempts } from "./auth";
import { writeLogLine } from "../util/log";

/** ssh config notes already printed by this process (once each). */
const warned = new Set<string>();

/** Result of a remote command. */
export interface ExecResult {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
}

/** Options of {@link SshSession.exec}. */
export interface ExecOptions {
  /** Data for the command's stdin (a string or a stream, e.g. a NAR export). */
  stdin?: string | Buffer | Readable;
  /** Run as root (through `sudo -n` when the login user is not root). */
  privileged?: boolean;
  /** Fail after this many ms (default: PULUMI_NIXOS_COMMAND_TIMEOUT, 300 s). */
  timeoutMs?: number;
  /** Called with each line of stdout/stderr as it arrives (progress, activation output). */
  onLine?: (line: string, stream: "stdout" | "stderr") => void;
  /** Reject when the exit code is not 0 (default true). */
  check?: boolean;
  /** What the command does, for error messages. */
  what?: string;
  /** Bypass the session's {@link ScriptHook} (the host lock's own renew and release commands). */
  raw?: boolean;
}

/**
 * Wraps every privileged script a session sends while set (the host lock: its acquire/renew
 * prologue rides on commands already sent, so it costs no round trip), and sees each result.
 */
export interface ScriptHook {
  /** The script to send instead of `script`. */
  wrap(script: string): string;
  /** Called with the result of each wrapped command before the usual checks; throws to fail it. */
  settled(r: ExecResult, script: string): void;
  /** Lines the wrapper itself prints (its protocol): never passed to the command's `onLine`. */
  ownsLine?(line: string): boolean;
}

/** Bytes of stdout a command may print (its output is parsed; more is an error, not a memory leak). */
const STDOUT_MAX = 32 << 20;
/** Bytes of stderr kept: the tail (errors are at the end). */
const STDERR_TAIL = 64 << 10;
/** Longest line passed whole to onLine. */
const MAX_LINE = 64 << 10;

/** Bytes a streamed stdin may queue in the SSH channel (bounds memory, keeps the link busy). */
const STREAM_BUFFER = 8 << 20;

/** Least in-flight limit: 256–512 KiB measured best on the lab's direct link (see inflightLimit). */
const MIN_INFLIGHT = 512 << 10;

/**
 * Unacknowledged bytes a stream may have out (sent, not yet consumed by the remote command):
 * twice the bandwidth-delay product of a 1 Gbit/s link at the measured round-trip time, at least
 * 512 KiB (sshd's 2 MiB window caps it anyway). Why a limit at all: whatever is out piles up in
 * sshd's buffers in front of a slower consumer (`nix-store --import`), and OpenSSH grows those
 * by reallocating. Measured on the lab's direct link, a 31 MB import cost sshd 2.8 CPU-s with the
 * whole window out and 1.1 s with 256–512 KiB (deploy 2.6 s → 1.1 s). A limit adapting to the
 * consumed rate helped 10 parallel hosts at 20 ms in a dedicated run (12.5 → 9.4–11.8 s) but not
 * in the benchmark's (j): not kept (fewer moving parts for no measured gain).
 */
export function inflightLimit(rttMs: number | undefined): number | undefined {
  if (rttMs === undefined) return undefined;
  return Math.max(MIN_INFLIGHT, Math.ceil(2 * 125e6 * (rttMs / 1000)));
}

/** Thrown when the connection drops while a command runs. */
export class ConnectionLostError extends Error {}
/** Thrown when a remote command passes its deadline (it may still run on the host). */
export class CommandTimeoutError extends Error {}
/** Thrown when the host stops taking a stream's data (e.g. a stopped `nix-store --import`). */
export class StallError extends Error {}

/** Shell-quotes one word for a POSIX sh. */
export const shq = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

/** Counters for benchmarks: connections opened and remote commands run (each costs round trips). */
export const sshStats = { connections: 0, commands: 0 };

export class SshSession {
  /** The host key the server presented (`type base64`). */
  hostPublicKey = "";
  /** The host keys the bastions presented, first hop first (empty without `proxy`). */
  proxyHostKeys: string[] = [];
  /** The host keys of the bastions the ssh config's ProxyJump added, by `host:port` (to record). */
  jumpHostKeys: Record<string, string> = {};
  /** Sessions to the bastions, closed with this one. */
  private bastions: NodeSSH[] = [];
  /** Set by the host lock while an operation holds it (see provider/host/lock.ts). */
  hook?: ScriptHook;
  private closed = false;
  private rttMeasure?: Promise<number | undefined>;

  private constructor(readonly conn: Connection, private readonly ssh: NodeSSH) {}

  get label(): string { return connectionLabel(this.conn); }
  get isRoot(): boolean { return userOf(this.conn) === "root"; }
  get alive(): boolean { return !this.closed && this.ssh.isConnected(); }

  /**
   * Connects (through `conn.proxy`'s bastions, each reached over the previous one's `forwardOut`)
   * and verifies each hop's host key: the target's against `pin` (when given), each bastion's
   * against its `hostKey`. Without a pin the presented key is accepted and available as
   * `hostPublicKey` (`proxyHostKeys` for the bastions), for the caller to record. Each hop is
   * dialled up to its `dialErrorLimit` times with backoff; auth and host-key errors fail at once.
   */
  static async connect(given: Connection, opts: { pin?: string; timeoutMs?: number; deadline?: number; waitMs?: number; onWait?: (line: string) => void } = {}): Promise<SshSession> {
    // waitForSsh: a host still coming up refuses or drops connections; keep dialing until then.
    const waitUntil = opts.waitMs ? Date.now() + opts.waitMs : undefined;
    let told = false;
    const onWait = (hop: Connection) => {
      if (told || waitUntil === undefined) return;
      told = true;
      opts.onWait?.(`waiting for SSH on ${connectionLabel(hop)} (until ${new Date(waitUntil).toTimeString().slice(0, 8)})`);
    };
    // The operator's ~/.ssh/config (unless sshConfig: false), read now: nothing of it is stored.
    const conn = applySshConfig(given, (m) => { if (!warned.has(m)) { warned.add(m); writeLogLine(`${m}\n`); } });
    const chain = hops(conn);
    const opened: NodeSSH[] = [];
    const presented: string[] = [];
    try {
      for (let i = 0; i < chain.length; i++) {
        const hop = chain[i], isTarget = i === chain.length - 1, prev = opened[i - 1];
        const pin = isTarget ? opts.pin : hop.hostPublicKey;
        const field = isTarget ? "connection.hostPublicKey"
          : hop.fromSshConfig ? `connection.jumpHostKeys["${jumpKey(hop)}"] (ProxyJump of ${sshConfigFile(conn)})` : `connection.${"proxy.".repeat(chain.length - 1 - i)}hostKey`;
        const { ssh, key } = await dialHop(hop, {
          remedy: hop.fromSshConfig ? "If the bastion was reinstalled, check its new key out of band (on its console: ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub) " +
            "and pin it: give the bastion as connection.proxy with that hostKey (a machine's `proxy` in a network description); it takes precedence over the ProxyJump." : undefined,
          pin, field, policy: hop.hostKeyPolicy ?? conn.hostKeyPolicy ?? "tofu", configured: isTarget ? !!conn.hostPublicKey && !!pin && normalizeHostKey(conn.hostPublicKey) === normalizeHostKey(pin) : true,
          timeoutMs: hop.perDialTimeout ? hop.perDialTimeout * 1000 : opts.timeoutMs ?? timeoutMs("connect"),
          deadline: opts.deadline, waitUntil, onWait: () => onWait(hop),
          sock: prev ? () => forwardTo(prev, hop, chain[i - 1]) : undefined,
        }).catch((e) => {
          if (e instanceof HostKeyMismatchError || e instanceof KnownHostsError || isTarget) throw e;
          throw new Error(`cannot connect to ${connectionLabel(conn)}: proxy: ${(e as Error).message.replace(/^cannot connect to /, "")}`);
        });
        opened.push(ssh);
        presented.push(key);
      }
    } catch (e) {
      for (const o of opened.reverse()) o.dispose();
      throw e;
    }
    const ssh = opened[opened.length - 1];
    const s = new SshSession(conn, ssh);
    s.bastions = opened.slice(0, -1);
    sshStats.connections += opened.length;
    s.hostPublicKey = presented[presented.length - 1];
    s.proxyHostKeys = presented.slice(0, -1);
    chain.slice(0, -1).forEach((h, i) => { if (h.fromSshConfig) s.jumpHostKeys[jumpKey(h)] = presented[i]; });
    // Measured now, while the first commands run: a stream needs it and must not wait a round trip.
    void s.rttMs();
    const down = () => { s.closed = true; };
    for (const o of opened) { o.connection?.on("close", down); o.connection?.on("error", down); }
    return s;
  }

  /**
   * Round-trip time to sshd in ms, measured once per connection with the keepalive request
   * OpenSSH answers at once (no process on the host). ssh2 has no public call for it: its
   * internal ping is used the way its own keepalive does; undefined if that is not there.
   */
  rttMs(): Promise<number | undefined> {
    // The fastest of a few: sshd is busy right after login (and with the first commands).
    this.rttMeasure ??= (async () => {
      let best: number | undefined;
      for (let i = 0; i < 4; i++) {
        const t = await this.ping();
        if (t === undefined) return best;
        best = Math.min(best ?? t, t);
      }
      return best;
    })();
    return this.rttMeasure;
  }

  private ping(): Promise<number | undefined> {
    return new Promise((resolve) => {
      const client = this.ssh.connection as unknown as { _protocol?: { ping?: () => void }; _callbacks?: unknown[] } | null;
      if (!this.alive || !client?._protocol?.ping || !Array.isArray(client._callbacks)) return resolve(undefined);
      const t0 = process.hrtime.bigint();
      const timer = setTimeout(() => resolve(undefined), 5_000);
      timer.unref();
      // Replies to global requests are matched to callbacks in order, as for ssh2's keepalive.
      client._callbacks.push(() => { clearTimeout(timer); resolve(Number(process.hrtime.bigint() - t0) / 1e6); });
      client._protocol.ping();
    });
  }

  /**
   * Runs a POSIX sh script on the host. With a stream on stdin this is {@link execStream}; a
   * string or buffer is written and stdin closed. Deadline: `timeoutMs`, default the command
   * timeout (PULUMI_NIXOS_COMMAND_TIMEOUT, 300 s).
   */
  exec(script: string, opts: ExecOptions = {}): Promise<ExecResult> {
    const stdin = opts.stdin;
    if (stdin instanceof Readable) return this.execStream(script, stdin, opts);
    return this.runCommand(script, opts, (ch) => { ch.end(stdin ?? undefined); return () => undefined; });
  }

  /**
   * The escalation command (`sudo -n` unless the connection names another, e.g. `doas -n`) around
   * a script for a non-root login when it must run as root. NixOps ran its
   * privilegeEscalationCommand (default `sudo -H --`) before the command (nixops/ssh_util.py).
   */
  private command(script: string, privileged?: boolean): string {
    if (!privileged || this.isRoot) return script;
    const [cmd, ...args] = this.conn.privilegeEscalationCommand?.length ? this.conn.privilegeEscalationCommand : ["sudo", "--"];
    // sudo and doas both take -n: fail instead of prompting for a password.
    const argv = ["sudo", "doas"].includes(cmd.split("/").pop()!) ? [cmd, "-n", ...args] : [cmd, ...args];
    return `${argv.map(shq).join(" ")} sh -c ${shq(script)}`;
  }

  /** The checks every finished command gets: dropped connection, sudo wanting a password, exit code. */
  private settle(r: ExecResult, opts: { privileged?: boolean; check?: boolean }, what: string): ExecResult {
    if (r.code === null && !this.alive) throw new ConnectionLostError(`connection to ${this.label} lost during ${what}`);
    if (opts.privileged && !this.isRoot && r.code === 1 && /(sudo|doas): (a password is required|a terminal is required|Authentication required)/.test(r.stderr)) {
      const esc = this.conn.privilegeEscalationCommand?.[0] ?? "sudo";
      throw new Error(`${userOf(this.conn)}@${this.conn.host}: ${esc} asks for a password; non-root deploys need passwordless ${esc} (sudo: NOPASSWD, doas: nopass) for ${userOf(this.conn)}`);
    }
    if ((opts.check ?? true) && r.code !== 0) {
      throw new Error(`${what} on ${this.label} failed (exit ${r.code ?? r.signal}): ${r.stderr.trim().split("\n").slice(-5).join(" | ")}`);
    }
    return r;
  }

  /**
   * Runs a script with a large stream on stdin (a closure export). node-ssh's `pipe()` waits for the
   * channel to drain after every chunk, which idles the link (measured: 30 MB in 0.73 s vs 0.23 s);
   * here the channel is fed by {@link feedChannel} (bounded queue; with `rttMs`, an in-flight
   * limit); stdout/stderr lines reach `onLine` as they arrive. While the stream flows there is no
   * total deadline (a large copy over a slow link may take long) but a stall deadline: when the
   * host takes no data for `stallTimeoutMs` (default PULUMI_NIXOS_STALL_TIMEOUT, 60 s) the command
   * fails. `timeoutMs` counts from the stream's end (what follows the import, e.g. the activation).
   */
  execStream(script: string, source: Readable, opts: Omit<ExecOptions, "stdin"> & { rttMs?: number; stallTimeoutMs?: number } = {}): Promise<ExecResult> {
    const stallMs = opts.stallTimeoutMs ?? timeoutMs("stall");
    const what = opts.what ?? "remote command";
    return this.runCommand(script, opts, (ch, fail, armDeadline) => {
      armDeadline(undefined);
      // Behind a bastion no in-flight limit: the forwarded channel adds the bastion's buffers, and
      // the limit halved throughput there (bench (l): 3.1 s → 1.6 s for 29 MiB through one bastion).
      const stop = feedChannel(source, ch, this.bastions.length ? undefined : opts.rttMs, stallMs, () => {
        source.destroy();
        fail(new StallError(`${what} on ${this.label} stalled: the host took no data for ${Math.round(stallMs / 100) / 10} s (${timeoutEnv("stall")}); ` +
          `nothing more was sent and the command was stopped`));
      });
      source.on("end", () => { ch.end(); armDeadline(opts.timeoutMs ?? timeoutMs("command")); });
      source.on("error", (e) => fail(e));
      return () => { stop(); if (!source.readableEnded) source.destroy(); };
    });
  }

  /**
   * One remote command on its own channel. Output is bounded whatever the host prints: stdout up
   * to {@link STDOUT_MAX} (more fails the command), stderr keeps its last {@link STDERR_TAIL}
   * bytes. Privileged scripts pass through the session's {@link ScriptHook} (the host lock).
   */
  private runCommand(script: string, opts: ExecOptions, feed: (ch: ClientChannel, fail: (e: Error) => void, armDeadline: (ms: number | undefined) => void) => () => void): Promise<ExecResult> {
    sshStats.commands++;
    const hook = opts.privileged && !opts.raw ? this.hook : undefined;
    const command = this.command(hook ? hook.wrap(script) : script, opts.privileged);
    const what = opts.what ?? "remote command";
    const client = this.ssh.connection;
    if (!client || !this.alive) return Promise.reject(new ConnectionLostError(`connection to ${this.label} lost before ${what}`));
    return new Promise((resolve, reject) => {
      let done = false, channel: ClientChannel | undefined, stopFeeding: () => void = () => undefined, timer: NodeJS.Timeout | undefined;
      const finish = (err: Error | undefined, r?: ExecResult) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        stopFeeding();
        if (err) { channel?.close(); reject(err); } else resolve(r!);
      };
      const armDeadline = (ms: number | undefined) => {
        clearTimeout(timer);
        if (ms === undefined) return;
        timer = setTimeout(() => {
          if (!this.alive) return finish(new ConnectionLostError(`connection to ${this.label} lost during ${what}`));
          finish(new CommandTimeoutError(`${what} on ${this.label} timed out after ${Math.round(ms / 1000)} s`));
        }, ms);
      };
      // Also bounds the channel open itself (a host that stops answering).
      armDeadline(opts.timeoutMs ?? timeoutMs("command"));
      client.exec(command, (err, ch) => {
        if (err) return finish(this.alive ? new Error(`${what} on ${this.label}: ${err.message}`) : new ConnectionLostError(`connection to ${this.label} lost before ${what}`));
        channel = ch;
        if (done) { ch.close(); return; }
        const stdout: Buffer[] = [];
        let stdoutBytes = 0, stderr = "", code: number | null = null, signal: string | null = null;
        // The hook's own lines (e.g. the host lock's refusal) are protocol, not the command's output.
        const onLine = opts.onLine && hook?.ownsLine ? (l: string, st: "stdout" | "stderr") => { if (!hook.ownsLine!(l)) opts.onLine!(l, st); } : opts.onLine;
        const outLines = lineSplitter(onLine, "stdout"), errLines = lineSplitter(onLine, "stderr");
        ch.on("error", () => undefined); // writes after the remote closed; the close handler reports
        ch.on("data", (d: Buffer) => {
          stdoutBytes += d.length;
          if (stdoutBytes > STDOUT_MAX) return finish(new Error(`${what} on ${this.label} printed more than ${STDOUT_MAX >> 20} MiB on stdout; stopped`));
          stdout.push(d);
          outLines(d);
        });
        ch.stderr.on("data", (d: Buffer) => { stderr = (stderr + d.toString()).slice(-STDERR_TAIL); errLines(d); });
        ch.on("exit", (c: number | null, sig?: string) => { code = c; signal = sig ?? null; });
        stopFeeding = feed(ch, (e) => finish(e), armDeadline);
        ch.on("close", () => {
          if (done) return;
          const r: ExecResult = { code, signal, stdout: Buffer.concat(stdout).toString(), stderr };
          try {
            if (hook && (r.code !== null || this.alive)) hook.settled(r, script);
            finish(undefined, this.settle(r, opts, what));
          } catch (e) { finish(e as Error); }
        });
      });
    });
  }

  /** An interactive shell on the host, wired to this terminal; resolves with its exit code. */
  async interactiveShell(): Promise<number> {
    const tty = !!process.stdin.isTTY;
    const channel = await this.ssh.requestShell(tty ? { term: process.env.TERM ?? "xterm", rows: process.stdout.rows, cols: process.stdout.columns } : false);
    if (tty) process.stdin.setRawMode(true);
    process.stdin.pipe(channel);
    channel.pipe(process.stdout);
    channel.stderr.pipe(process.stderr);
    return new Promise((resolve) => channel.on("exit", (code: number) => {
      if (tty) process.stdin.setRawMode(false);
      process.stdin.unpipe(channel);
      process.stdin.pause();
      resolve(code ?? 0);
    }));
  }

  close(): void {
    this.closed = true;
    this.ssh.dispose();
    for (const b of this.bastions.reverse()) b.dispose();
  }
}

/**
 * Writes source into an ssh2 channel: pauses the source while more than STREAM_BUFFER bytes
 * wait in the channel, and, given the link's RTT, while more bytes are out but not yet consumed
 * by the remote command (what the remote window lost plus what waits here) than
 * {@link inflightLimit} allows. ssh2 signals no window adjustment, so a held source is re-checked
 * each millisecond. A stall (bytes waiting or out, none taken by the host for `stallMs`) calls
 * onStall once: memory stays bounded either way, the stall check only ends the wait.
 * Returns a function that stops the re-checks (call it on close).
 */
function feedChannel(source: Readable, ch: ClientChannel, rttMs: number | undefined, stallMs: number, onStall: () => void): () => void {
  const out = ch as unknown as { outgoing?: { window?: number } };
  const initialWindow = out.outgoing?.window;
  const hasWindow = typeof initialWindow === "number";
  const limit = hasWindow ? inflightLimit(rttMs) : undefined;
  const unacked = () => (hasWindow ? initialWindow! - out.outgoing!.window! : 0);
  const over = () => unacked() + ch.writableLength > limit!;
  let held = false, stopped = false, written = 0;
  const recheck = () => {
    if (stopped) return;
    if (over()) setTimeout(recheck, 1);
    else { held = false; source.resume(); }
  };
  source.on("data", (chunk: Buffer) => {
    written += chunk.length;
    ch.write(chunk);
    if (limit !== undefined && over()) {
      source.pause();
      if (!held) { held = true; setTimeout(recheck, 1); }
    } else if (ch.writableLength > STREAM_BUFFER) source.pause();
  });
  ch.on("drain", () => { if (!held) source.resume(); });
  // Progress = bytes the host has taken (window adjustments received, or left our queue).
  let taken = 0, lastProgress = Date.now();
  const watch = setInterval(() => {
    const nowTaken = written - ch.writableLength - unacked();
    const waiting = ch.writableLength + unacked() > 0;
    if (nowTaken !== taken || !waiting) { taken = nowTaken; lastProgress = Date.now(); return; }
    if (Date.now() - lastProgress >= stallMs) { clearInterval(watch); if (!stopped) onStall(); }
  }, Math.min(1000, Math.max(50, stallMs / 10)));
  return () => { stopped = true; clearInterval(watch); };
}

/** Calls onLine with each complete line of a chunked stream (no-op without onLine). */
function lineSplitter(onLine: ExecOptions["onLine"], stream: "stdout" | "stderr"): (chunk: Buffer) => void {
  let buf = "";
  return (chunk) => {
    if (!onLine) return;
    buf += chunk.toString();
    const lines = buf.split("\n");
    buf = lines.pop() ?? "";
    // A line without end is passed on in pieces: nothing grows without bound.
    if (buf.length > MAX_LINE) { lines.push(buf); buf = ""; }
    for (const l of lines) onLine(l, stream);
  };
}

/** Options of {@link dialHop}. */
interface DialOptions {
  pin?: string;
  /** Without a pin: known_hosts, then this policy for a host it does not list. */
  policy: HostKeyPolicy;
  /** The input the pin came from, for the mismatch message. */
  field: string;
  configured: boolean;
  /** What to do about a mismatch, when the pin's field is not one the operator sets. */
  remedy?: string;
  timeoutMs: number;
  /** Epoch ms after which no attempt starts and the current one is cut short (a total budget). */
  deadline?: number;
  /** A fresh socket through the previous hop, per attempt (absent: TCP from here). */
  sock?: () => Promise<Duplex>;
  /** waitForSsh: epoch ms until which retryable failures are dialled again, whatever dialErrorLimit. */
  waitUntil?: number;
  /** Called at the first failure while waiting (to say so once). */
  onWait?: () => void;
}

/** Errors a new attempt cannot fix: wrong credentials, a wrong host key, an undecryptable key. */
export function isPermanentDialError(e: unknown): boolean {
  if (e instanceof HostKeyMismatchError || e instanceof KnownHostsError) return true;
  const m = e instanceof Error ? e.message : String(e);
  return /All configured authentication methods failed|passphrase|Cannot parse privateKey|Unsupported key format|config\.\w+ must/i.test(m);
}

/** Backoff before attempt n+1 (n ≥ 1): 100 ms, ×1.5 each time, at most 5 s (@pulumi/command's). */
export const dialBackoffMs = (n: number): number => Math.min(5_000, 100 * 1.5 ** (n - 1));

/**
 * One hop's SSH connection, verified against `pin`, dialled up to `hop.dialErrorLimit` times
 * (default 10, -1 unlimited) while the error is worth retrying (refused, unreachable, timed out).
 */
async function dialHop(hop: Connection, o: DialOptions): Promise<{ ssh: NodeSSH; key: string }> {
  const limit = hop.dialErrorLimit ?? DIAL_ERROR_LIMIT;
  const pin = o.pin ? normalizeHostKey(o.pin) : undefined;
  for (let attempt = 1; ; attempt++) {
    // Within a total budget: each attempt gets what is left of it, at most its own timeout.
    const budget = o.deadline ? Math.max(1, Math.min(o.timeoutMs, o.deadline - Date.now())) : o.timeoutMs;
    const ssh = new NodeSSH();
    let presented = "";
    let mismatch: Error | undefined;
    let plan: AuthPlan | undefined;
    try {
      const sock = o.sock ? await o.sock() : undefined;
      plan = authPlan(hop, userOf(hop));
      await ssh.connect({
        ...(sock ? { sock } : { host: hop.host, port: portOf(hop) }),
        username: userOf(hop),
        // Explicit key, agent, identity files, password, in that order (auth.ts); straight to
        // the first (ssh2's default first asks with method "none", one more round trip).
        authHandler: plan.handler,
        readyTimeout: budget,
        keepaliveInterval: 5_000,
        keepaliveCountMax: 3,
        // Prefer ed25519 host keys (what we pin) and the fastest safe cipher.
        algorithms: {
          serverHostKey: ["ssh-ed25519", "ecdsa-sha2-nistp256", "rsa-sha2-512", "rsa-sha2-256"],
          cipher: ["aes128-gcm@openssh.com", "aes128-gcm", "chacha20-poly1305@openssh.com", "aes256-gcm@openssh.com", "aes128-ctr", "aes256-ctr"],
        },
        hostVerifier: (key: Buffer) => {
          presented = formatHostKey(key);
          if (pin && presented !== pin) {
            mismatch = new HostKeyMismatchError(connectionLabel(hop), pin, presented, o.configured, o.field, o.remedy);
            return false;
          }
          if (!pin) {
            // Checked before authentication: nothing is sent to a host that fails it.
            try { checkKnownHost(connectionLabel(hop), hop.host, portOf(hop), presented, o.policy, hop.knownHostsFiles); } catch (e) { mismatch = e as Error; return false; }
          }
          return true;
        },
      } as Parameters<NodeSSH["connect"]>[0]);
      return { ssh, key: presented };
    } catch (e) {
      ssh.dispose();
      if (mismatch) throw mismatch;
      const outOfTime = o.deadline !== undefined && Date.now() + dialBackoffMs(attempt) >= o.deadline;
      // While waiting for the host to come up: every retryable failure is dialled again, until then.
      const waiting = o.waitUntil !== undefined && Date.now() + dialBackoffMs(attempt) < o.waitUntil && !outOfTime && !isPermanentDialError(e);
      if (waiting) o.onWait?.();
      else if (isPermanentDialError(e) || (limit >= 0 && attempt >= limit) || outOfTime) {
        const tries = attempt > 1 ? ` (${attempt} attempts)` : "";
        const auth = plan && /All configured authentication methods failed/.test((e as Error)?.message ?? "") ? `; ${describeAttempts(plan)}` : "";
        throw new Error(`cannot connect to ${connectionLabel(hop)}: ${describeConnectError(e, budget)}${auth}${tries}`);
      }
      await new Promise((r) => setTimeout(r, dialBackoffMs(attempt)));
    }
  }
}

/** A channel from `via` (the session to `viaHop`) to `hop`'s SSH port: the next hop's socket. */
function forwardTo(via: NodeSSH, hop: Connection, viaHop: Connection): Promise<Duplex> {
  return new Promise((resolve, reject) => {
    const client = via.connection;
    if (!client) return reject(new Error(`connection to ${connectionLabel(viaHop)} lost`));
    // The channel open is a network call: bounded like a dial.
    const timer = setTimeout(() => reject(new Error(`${connectionLabel(viaHop)} did not open a channel to ${hop.host}:${portOf(hop)} within 15 s`)), 15_000);
    client.forwardOut("127.0.0.1", 0, hop.host, portOf(hop), (err, ch) => {
      clearTimeout(timer);
      if (err) reject(new Error(`${connectionLabel(viaHop)} could not open a channel to ${hop.host}:${portOf(hop)}: ${err.message}`));
      else resolve(ch);
    });
  });
}

function describeConnectError(e: unknown, timeoutMs: number): string {
  const m = e instanceof Error ? e.message : String(e);
  if (/no passphrase given/.test(m)) return "the private key is encrypted: set connection.privateKeyPassword";
  if (/bad passphrase|integrity check failed/.test(m)) return "the private key could not be decrypted: wrong connection.privateKeyPassword";
  if (/Timed out while waiting for handshake|ETIMEDOUT/i.test(m)) return `no answer within ${Math.round(timeoutMs / 1000)} s (connectTimeout)`;
  if (/All configured authentication methods failed/.test(m)) return "authentication failed (no key or password offered was accepted for this user)";
  return m;
}
