/**
 * What the DeploymentKey dynamic resource does. Loaded at run time by the serialized provider;
 * key content only ever goes to the host's stdin.
 */
import { wired } from "./wire";
import * as path from "path";
import { Connection, connectionLabel, normalizeConnection, pinnedConnection, withRecordedProxyKeys } from "../connection";
import { connectionChanged, recordedConnection } from "./connection-diff";
import { withHost } from "../ssh/pool";
import { oneCommandLock } from "../host/lock";
import { contentDigest, inspectKey, keyOwner, removeKey, uploadKey } from "../host/keys";
import { keySpecProblems } from "../keys/spec";
import { resourceLogger } from "../util/log";
import { stackOf, urnOf } from "../util/engine-log";
import { CheckFailure, isUnknown, validateConnection } from "./validate";
import { DELETE_FAILED, withoutTrace } from "../util/quiet-error";

/** DeploymentKey inputs as the provider receives them (plain values). */
export interface KeyInputs {
  kind: "deploymentKey";
  resource: string;
  connection: Connection;
  name: string;
  content: string;
  destDir: string;
  user: string;
  group: string;
  permissions: string;
  uploadAt: "pre-activation" | "post-activation";
}

/** Outputs: where the key is, and its digest (a Pulumi secret via additionalSecretOutputs). */
export interface KeyOutputs extends Omit<KeyInputs, "content"> {
  path: string;
  digest: string;
  hostPublicKey: string;
}

function checkDeploymentKey(_olds: unknown, news: KeyInputs): { inputs: KeyInputs; failures: CheckFailure[] } {
  const f = validateConnection(news.connection);
  const known = Object.fromEntries(Object.entries(news).filter(([, v]) => !isUnknown(v)));
  f.push(...keySpecProblems(news.resource, { name: "x", destDir: "/run/keys", user: "root", group: "root", permissions: "0600", ...known }));
  if (!isUnknown(news.uploadAt) && !["pre-activation", "post-activation"].includes(news.uploadAt)) {
    f.push({ property: "uploadAt", reason: `DeploymentKey ${news.resource}: uploadAt must be 'pre-activation' or 'post-activation'` });
  }
  if (!isUnknown(news.content) && typeof news.content !== "string") f.push({ property: "content", reason: `DeploymentKey ${news.resource}: no content` });
  return { inputs: news, failures: f };
}

function diffDeploymentKey(_id: string, olds: KeyOutputs, news: KeyInputs) {
  const replaces = ["name", "destDir"].filter((k) => (olds as any)[k] !== (news as any)[k]);
  if (olds.connection?.host !== news.connection?.host) replaces.push("connection");
  const changed = replaces.length > 0 || needsUpload(olds, news)
    || connectionChanged(olds.connection, news.connection, olds.hostPublicKey);
  // Delete first: the old file must go before a new one may take its path.
  return { changes: changed, replaces, deleteBeforeReplace: true };
}

/** Content, owner, mode or upload time changed: the file must go up again. */
function needsUpload(olds: KeyOutputs, news: KeyInputs): boolean {
  return isUnknown(news.content) || contentDigest(news.content) !== olds.digest
    || ["user", "group", "permissions", "uploadAt"].some((k) => (olds as any)[k] !== (news as any)[k]);
}

async function upload(inputs: KeyInputs, pin: string | undefined): Promise<KeyOutputs> {
  const conn = normalizeConnection(inputs.connection);
  const { content, ...rest } = inputs;
  let proxyKeys: string[] = [];
  let jumpKeys: Record<string, string> = {};
  let pending = false;
  const hostPublicKey = await withHost(conn, { pin, lock: oneCommandLock(inputs.resource, `key upload ${inputs.name}`, stackOf(inputs)) }, async (s) => {
    pending = (await uploadKey(s, inputs, content, keyOwner(inputs))).ownerPending;
    proxyKeys = s.proxyHostKeys;
    jumpKeys = s.jumpHostKeys;
    return s.hostPublicKey;
  });
  resourceLogger(inputs.resource, urnOf(inputs))(pending
    ? `key uploaded to ${conn.host}:${path.posix.join(inputs.destDir, inputs.name)} root:root 0600: ${inputs.user}:${inputs.group} does not exist there yet; the machine's activation hands it over (${inputs.permissions})`
    : `key uploaded to ${conn.host}:${path.posix.join(inputs.destDir, inputs.name)} (${inputs.user}:${inputs.group} ${inputs.permissions})`);
  return { ...rest, connection: pinnedConnection(conn, conn.hostPublicKey ?? hostPublicKey, proxyKeys, jumpKeys), path: path.posix.join(inputs.destDir, inputs.name), digest: contentDigest(content), hostPublicKey };
}

async function createDeploymentKey(inputs: KeyInputs): Promise<{ id: string; outs: KeyOutputs }> {
  const outs = await upload(inputs, inputs.connection.hostPublicKey);
  return { id: `${inputs.connection.host}:${outs.path}`, outs };
}

async function updateDeploymentKey(_id: string, olds: KeyOutputs, news: KeyInputs): Promise<{ outs: KeyOutputs }> {
  if (!needsUpload(olds, news)) {
    // Only the connection changed (a rotated SSH key, another port or user): record it, so later
    // reads and deletes log in with it; the file on the host is left as it is.
    const connection = recordedConnection(news.connection, olds.hostPublicKey, olds.connection);
    resourceLogger(news.resource, urnOf(news))(`connection to ${connectionLabel(connection)} recorded; key not re-uploaded`);
    return { outs: { ...olds, connection } };
  }
  return { outs: await upload({ ...news, connection: withRecordedProxyKeys(normalizeConnection(news.connection), olds.connection) }, news.connection.hostPublicKey || olds.hostPublicKey) };
}

/** Refresh: digest, owner and mode on the host; a missing file (e.g. after a reboot) is drift. */
async function readDeploymentKey(id: string, props: KeyOutputs): Promise<{ id: string; props: KeyOutputs }> {
  const conn = normalizeConnection(props.connection);
  const st = await withHost(conn, { pin: conn.hostPublicKey || props.hostPublicKey }, (s) => inspectKey(s, props));
  if (!st.exists) resourceLogger(props.resource, urnOf(props))(`key file ${props.path} is missing on ${conn.host}`);
  return { id, props: { ...props, digest: st.digest, ...(st.exists ? { user: st.user, group: st.group, permissions: normalizeMode(st.permissions, props.permissions) } : {}) } };
}

async function removeDeploymentKey(_id: string, props: KeyOutputs): Promise<void> {
  const conn = normalizeConnection(props.connection);
  const r = await withoutTrace(DELETE_FAILED, () => withHost(conn, { pin: conn.hostPublicKey || props.hostPublicKey, lock: oneCommandLock(props.resource, `key removal ${props.name}`, stackOf(props)) },
    (s) => removeKey(s, props, keyOwner(props), props.digest)));
  // Only what this resource wrote is removed: a file another resource owns now stays, as a changed one does.
  if (!r.removed && !r.absent) resourceLogger(props.resource, urnOf(props)).warn(`key file ${props.path} on ${conn.host} left in place: ${r.why}`);
}

/** "0600" and "600" are the same mode: keep the spelling the program used. */
function normalizeMode(remote: string, declared: string): string {
  return parseInt(remote, 8) === parseInt(declared, 8) ? declared : remote;
}

/**
 * Re-uploads keys without deploying (`send-keys`, after a reboot): each entry is a key's state
 * inputs (with content). Returns the names uploaded.
 */
export async function sendKeys(keys: KeyInputs[], pins: Record<string, string | undefined> = {}): Promise<string[]> {
  const done: string[] = [];
  for (const k of keys) {
    await upload(k, k.connection.hostPublicKey || pins[k.connection.host]);
    done.push(k.name);
  }
  return done;
}

/** The handlers the serialized provider calls, every result checked before Pulumi records it (wire.ts). */
export const { check, diff, create, update, read, remove } = wired("DeploymentKey", {
  check: checkDeploymentKey, diff: diffDeploymentKey, create: createDeploymentKey, update: updateDeploymentKey, read: readDeploymentKey, remove: removeDeploymentKey,
});
