/** What the ChannelPin dynamic resource does (loaded at run time by its serialized provider). */
import { wired } from "./wire";
import { Connection, connectionLabel, normalizeConnection, pinnedConnection, withRecordedProxyKeys } from "../connection";
import { connectionChanged, recordedConnection } from "./connection-diff";
import { withHost } from "../ssh/pool";
import { oneCommandLock } from "../host/lock";
import { readChannel, releaseChannel, restoreChannel, setChannel } from "../host/channel";
import { resourceOwner } from "../host/owner";
import { pinProblems } from "../pins/pin";
import { resourceLogger } from "../util/log";
import { stackOf, urnOf } from "../util/engine-log";
import { CheckFailure, isUnknown, validateConnection } from "./validate";
import { DELETE_FAILED, withoutTrace } from "../util/quiet-error";

/** ChannelPin inputs (plain values). */
export interface ChannelInputs {
  kind: "channelPin";
  resource: string;
  connection: Connection;
  url: string;
  sha256: string;
  channel: string;
}

/** ChannelPin outputs. */
export interface ChannelOutputs extends ChannelInputs {
  storePath: string;
  nixpkgsVersion: string;
  /** The channel's URL before the pin took it over ("" = there was none): delete restores it. */
  previousUrl: string;
  hostPublicKey: string;
}

function checkPin(_olds: unknown, news: ChannelInputs): { inputs: ChannelInputs; failures: CheckFailure[] } {
  const f = validateConnection(news.connection);
  if (!isUnknown(news.url) && !isUnknown(news.sha256)) {
    for (const reason of pinProblems(`ChannelPin ${news.resource}`, news)) f.push({ property: reason.includes(": url") ? "url" : "sha256", reason });
  }
  if (!isUnknown(news.channel) && !/^[A-Za-z0-9._-]+$/.test(news.channel ?? "")) {
    f.push({ property: "channel", reason: `ChannelPin ${news.resource}: channel '${news.channel}' is not a valid channel name` });
  }
  return { inputs: news, failures: f };
}

function diffPin(_id: string, olds: ChannelOutputs, news: ChannelInputs) {
  const replaces = olds.connection?.host !== news.connection?.host || olds.channel !== news.channel ? ["channel"] : [];
  const changes = replaces.length > 0 || olds.url !== news.url || olds.sha256 !== news.sha256
    || connectionChanged(olds.connection, news.connection, olds.hostPublicKey);
  return { changes, replaces, deleteBeforeReplace: true };
}

async function apply(inputs: ChannelInputs, pin: string | undefined, previousUrl?: string): Promise<ChannelOutputs> {
  const conn = normalizeConnection(inputs.connection);
  const log = resourceLogger(inputs.resource, urnOf(inputs));
  return withHost(conn, { pin, lock: { machine: inputs.resource, op: `channel pin ${inputs.channel}`, stack: stackOf(inputs) } }, async (s) => {
    const before = await readChannel(s, inputs.channel);
    const me = resourceOwner(inputs.resource, inputs);
    // Taking the channel over from another pin at the same URL (a rename or a move without
    // aliases): its first URL is ours to restore, not the URL that pin set.
    const inherited = before.owner && before.owner.owner !== me && before.owner.url === before.url ? before.owner.previous : undefined;
    const previous = previousUrl ?? inherited ?? before.url;
    log(`setting channel ${inputs.channel} to ${inputs.url}`);
    await setChannel(s, inputs.channel, inputs.url, inputs.sha256, { owner: me, previous });
    const now = await readChannel(s, inputs.channel);
    if (now.sha256 !== inputs.sha256) {
      // The URL served something else between our check and nix-channel's download: undo.
      await restoreChannel(s, inputs.channel, before.url);
      throw new Error(`ChannelPin ${inputs.resource}: channel ${inputs.channel} on ${conn.host} unpacked to ${now.sha256}, expected ${inputs.sha256}; restored ${before.url || "no channel"}`);
    }
    log(`channel ${inputs.channel} = nixpkgs ${now.version || "?"} (${now.storePath})`);
    return {
      ...inputs,
      connection: pinnedConnection(conn, conn.hostPublicKey ?? s.hostPublicKey, s.proxyHostKeys, s.jumpHostKeys),
      storePath: now.storePath,
      nixpkgsVersion: now.version,
      previousUrl: previous,
      hostPublicKey: s.hostPublicKey,
    };
  });
}

async function createPin(inputs: ChannelInputs): Promise<{ id: string; outs: ChannelOutputs }> {
  const outs = await apply(inputs, inputs.connection.hostPublicKey);
  return { id: `${inputs.connection.host}:channel:${inputs.channel}`, outs };
}

async function updatePin(_id: string, olds: ChannelOutputs, news: ChannelInputs): Promise<{ outs: ChannelOutputs }> {
  if (olds.url === news.url && olds.sha256 === news.sha256) {
    // Only the connection changed: record it for later reads and deletes; the channel is not re-pinned.
    const connection = recordedConnection(news.connection, olds.hostPublicKey, olds.connection);
    resourceLogger(news.resource, urnOf(news))(`connection to ${connectionLabel(connection)} recorded; channel not re-pinned`);
    return { outs: { ...olds, connection } };
  }
  // previousUrl stays what the host had before the pin ever took the channel over.
  return { outs: await apply({ ...news, connection: withRecordedProxyKeys(normalizeConnection(news.connection), olds.connection) }, news.connection.hostPublicKey || olds.hostPublicKey, olds.previousUrl) };
}

/** Refresh: a changed URL or content of the channel is drift (url/sha256 show what the host has). */
async function readPin(id: string, props: ChannelOutputs): Promise<{ id: string; props: ChannelOutputs }> {
  const conn = normalizeConnection(props.connection);
  const now = await withHost(conn, { pin: conn.hostPublicKey || props.hostPublicKey }, (s) => readChannel(s, props.channel));
  return { id, props: { ...props, url: now.url, sha256: now.sha256, storePath: now.storePath, nixpkgsVersion: now.version } };
}

/** Delete: the channel goes back to its previous URL, or is removed if there was none. */
async function removePin(_id: string, props: ChannelOutputs): Promise<void> {
  const conn = normalizeConnection(props.connection);
  const r = await withoutTrace(DELETE_FAILED, () => withHost(conn, { pin: conn.hostPublicKey || props.hostPublicKey, lock: oneCommandLock(props.resource, `channel restore ${props.channel}`, stackOf(props)) },
    (s) => releaseChannel(s, props.channel, resourceOwner(props.resource, props), props.url, props.previousUrl ?? "")));
  const log = resourceLogger(props.resource, urnOf(props));
  if (!r.restored) log.warn(`channel ${props.channel} on ${conn.host} left as it is: ${r.why}`);
  else log(props.previousUrl ? `channel ${props.channel} restored to ${props.previousUrl}` : `channel ${props.channel} removed`);
}

/** The handlers the serialized provider calls, every result checked before Pulumi records it (wire.ts). */
export const { check, diff, create, update, read, remove } = wired("ChannelPin", {
  check: checkPin, diff: diffPin, create: createPin, update: updatePin, read: readPin, remove: removePin,
});
