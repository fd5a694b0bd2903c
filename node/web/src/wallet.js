// The wallet's state and actions: the key, the chain position, signing and submitting ops,
// @handle resolution, the signup puzzle, and turning events into notifications.

import { api, openEvents } from "./api.js";
import { concat, fromHex, toHex, utf8 } from "./bytes.js";
import { accountIdText, loadKey, parseAccountId, sha256 } from "./keys.js";
import { buildOp, Kind } from "./ops.js";

export const OP_DEPS_MAX = 64; // protocol/limits.py OP_DEPS_MAX
const NOTIFICATIONS_KEPT = 200;
// Credit ids already notified, remembered so that catching up never repeats one.
const CREDITS_REMEMBERED = 1024;
// Ops looked up per catch-up (each is one request).
const CATCH_UP_LOOKUPS_MAX = 64;
const MINE_KEY = "swarmd-wallet-mine";
// The id of the last event this browser handled, per account: a reopened page resumes after it.
const CURSOR_KEY = "swarmd-wallet-events:";

export const wallet = {
  key: null, // {privateKey, publicKey, exportable}
  accountId: null,
  networkId: null,
  status: null,
  notifications: [],
  streamState: "offline",
  listeners: new Set(),
  // Ops this browser signed ({op_id: {kind, handle?}}) and claims it made ({handle: claim id}),
  // kept across reloads so their events are recognized.
  mine: { ops: {}, claims: {}, credits: [],
    ...JSON.parse(localStorage.getItem(MINE_KEY) ?? "{}") },
  stopEvents: null,
  // Events with an id up to this one are replayed (missed while the page was closed).
  replayedUpTo: 0,
};

export function onChange(listener) {
  wallet.listeners.add(listener);
  return () => wallet.listeners.delete(listener);
}

function changed(what, detail) {
  for (const listener of [...wallet.listeners]) listener(what, detail);
}

function saveMine() {
  localStorage.setItem(MINE_KEY, JSON.stringify(wallet.mine));
}

export async function start() {
  wallet.status = await api.status();
  wallet.networkId = fromHex(wallet.status.network_id);
  await useKey(await loadKey());
}

export async function useKey(record) {
  wallet.key = record ?? null;
  wallet.accountId = record ? await accountIdText(record.publicKey) : null;
  wallet.stopEvents?.();
  wallet.stopEvents = openEvents(wallet.accountId, handleEvent, (state) => {
    wallet.streamState = state;
    changed("stream", state);
  }, cursor);
  changed("key");
}

// "@name" -> the bound owner's account id; "sw1..." -> itself once its checksum is right.
export async function resolveRecipient(text) {
  const value = text.trim();
  if (value.startsWith("@")) {
    const name = value.slice(1);
    const view = await api.handle(name);
    if (!view.owner) throw new Error(`@${name} is claimed but not bound to anyone yet`);
    return { accountId: view.owner, key: await parseAccountId(view.owner), final: view.final };
  }
  return { accountId: value, key: await parseAccountId(value), final: true };
}

// Sign and submit one op of ours at the account's current chain position. Every op also
// receives up to 64 unreceived credits (its deps), which is what makes them spendable.
export async function submit(kind, fields) {
  if (!wallet.key) throw new Error("create or import a key first");
  const view = await api.account(wallet.accountId);
  const receive = view.unreceived.slice(0, OP_DEPS_MAX).map(fromHex);
  const extra = fields.deps ?? [];
  const deps = [...extra, ...receive].slice(0, OP_DEPS_MAX);
  const op = await buildOp(wallet.key, wallet.networkId, Kind[kind], {
    ...fields,
    seq: view.seq + 1,
    prev: view.head ? fromHex(view.head) : new Uint8Array(),
    deps,
  });
  const opId = toHex(op.opId);
  // Remembered before submitting, so that an event about it racing the answer is recognized.
  const earlierClaim = wallet.mine.claims[fields.handle];
  wallet.mine.ops[opId] = { kind, handle: fields.handle };
  if (kind === "handle.claim") wallet.mine.claims[fields.handle] = opId;
  saveMine();
  let result;
  try {
    result = await api.submit(toHex(op.envelope));
  } catch (error) {
    if (error.status) forgetRefused(opId, kind, fields.handle, earlierClaim);
    throw error;
  }
  changed("submitted", { opId, kind, result });
  return { opId, result };
}

// The node answered with a refusal: that op will never exist, so it is not ours to watch (a
// refused claim would otherwise stay listed under "Your claims"). Without an answer (the node
// unreachable) the op may have been taken, and stays remembered.
function forgetRefused(opId, kind, handle, earlierClaim) {
  delete wallet.mine.ops[opId];
  if (kind === "handle.claim" && wallet.mine.claims[handle] === opId) {
    if (earlierClaim) wallet.mine.claims[handle] = earlierClaim;
    else delete wallet.mine.claims[handle];
  }
  saveMine();
}

// --- the signup puzzle -----------------------------------------------------------------------

const SIGNUP_TAG = concat(utf8("swarmd/signup/v1"), new Uint8Array([0]));

function leadingZeroBits(digest) {
  let bits = 0;
  for (const byte of digest) {
    if (byte === 0) {
      bits += 8;
      continue;
    }
    return bits + Math.clz32(byte) - 24;
  }
  return bits;
}

// Find a nonce so that sha256(tag || network id || account key || nonce as 8 bytes) starts
// with `bits` zero bits (node/web/onboarding.py checks the same).
export async function solvePuzzle(bits, onProgress) {
  const prefix = concat(SIGNUP_TAG, wallet.networkId, wallet.key.publicKey);
  const message = concat(prefix, new Uint8Array(8));
  const view = new DataView(message.buffer, prefix.length, 8);
  for (let nonce = 0; ; nonce++) {
    view.setUint32(0, Math.floor(nonce / 2 ** 32));
    view.setUint32(4, nonce >>> 0);
    if (leadingZeroBits(await sha256(message)) >= bits) return nonce;
    if (nonce % 4096 === 0) onProgress?.(nonce);
  }
}

// --- events -> notifications -----------------------------------------------------------------

function notify(kind, text, event) {
  const entry = { kind, text, at: new Date().toLocaleTimeString(), event };
  wallet.notifications.unshift(entry);
  wallet.notifications.length = Math.min(wallet.notifications.length, NOTIFICATIONS_KEPT);
  changed("notification", entry);
}

function myClaimFor(handle) {
  return wallet.mine.claims[handle];
}

const DESCRIBE = {
  credit_received: (e) =>
    e.account === wallet.accountId && ["credit", `Received ${e.amount} credits from ${e.sender}`],
  op_final: (e) => wallet.mine.ops[e.op_id] &&
    ["final", `Your ${wallet.mine.ops[e.op_id].kind} ${e.op_id.slice(0, 12)} is final ` +
      `(checkpoint ${e.height})`],
  op_rejected: (e) => wallet.mine.ops[e.op_id] &&
    ["rejected", `Your ${wallet.mine.ops[e.op_id].kind} ${e.op_id.slice(0, 12)} was ` +
      `rejected: ${e.code}`],
  handle_bound: (e) => {
    if (e.owner === wallet.accountId) return ["handle", `@${e.handle} is now bound to you`];
    if (myClaimFor(e.handle)) {
      return ["conflict", `@${e.handle} was bound to another account (${e.owner})`];
    }
    return null;
  },
  handle_conflict: (e) => {
    const mine = myClaimFor(e.handle);
    if (mine === e.losing_claim) {
      return ["conflict", `Your claim for @${e.handle} is contested and currently losing ` +
        "(another claim has more endorsements or came first); the council arbitrates"];
    }
    if (mine === e.winning_claim) {
      return ["handle", `Your claim for @${e.handle} is contested; it is currently winning`];
    }
    return null;
  },
  handle_conflict_rejected: (e) => {
    const mine = myClaimFor(e.handle);
    if (mine && e.losing_claims.includes(mine)) {
      return ["conflict", `You lost @${e.handle}: the council's arbitration at checkpoint ` +
        `${e.height} chose claim ${e.winning_claim.slice(0, 12)}`];
    }
    return null;
  },
  mode_changed: (e) => ["mode", `This node is now ${e.mode}` + (e.reason ? `: ${e.reason}` : "")],
  council_mode_changed: (e) =>
    ["mode", e.quiesced ? "The council quiesced the network" : "The council resumed the network"],
};

function rememberCredit(opId) {
  if (wallet.mine.credits.includes(opId)) return false;
  wallet.mine.credits.push(opId);
  wallet.mine.credits.splice(0, wallet.mine.credits.length - CREDITS_REMEMBERED);
  saveMine();
  return true;
}

function settle(opId) {
  const op = wallet.mine.ops[opId];
  if (op && !op.settled) {
    op.settled = true;
    saveMine();
  }
}

// The stream resumes after the last event this browser handled. When it cannot (the first
// visit of this account in this browser, or a `gap`: the node no longer holds what was
// missed), what was missed is read from state instead: credits still waiting to be received,
// and the outcome of our own ops that had not settled.
async function catchUp() {
  const view = await api.account(wallet.accountId);
  let lookups = 0;
  for (const creditId of view.unreceived) {
    if (wallet.mine.credits.includes(creditId) || lookups++ >= CATCH_UP_LOOKUPS_MAX) continue;
    const { op } = await api.op(creditId);
    if (op && rememberCredit(creditId)) {
      notify("credit", `Received ${op.amount} credits from ${op.author} (while you were away)`,
        null);
    }
  }
  for (const [opId, mine] of Object.entries(wallet.mine.ops)) {
    if (mine.settled || lookups++ >= CATCH_UP_LOOKUPS_MAX) continue;
    let view;
    try {
      view = await api.op(opId);
    } catch (error) {
      if (error.code === "op_not_found") settle(opId);
      continue;
    }
    if (view.status === "final") {
      settle(opId);
      notify("final", `Your ${mine.kind} ${opId.slice(0, 12)} is final`, null);
    } else if (view.status === "rejected" || view.status === "excluded") {
      settle(opId);
      notify("rejected", `Your ${mine.kind} ${opId.slice(0, 12)} was ${view.status}: ` +
        `${view.code}`, null);
    }
  }
}

// The last event id handled for our account (null: none yet in this browser).
function cursor() {
  if (!wallet.accountId) return null;
  const stored = localStorage.getItem(CURSOR_KEY + wallet.accountId);
  return stored === null ? null : Number(stored);
}

function saveCursor(id) {
  if (wallet.accountId && Number.isSafeInteger(id)) {
    localStorage.setItem(CURSOR_KEY + wallet.accountId, String(id));
  }
}

// What the stream says about itself: where it stands when we subscribe (the replay of what we
// missed follows), and a gap when it no longer holds all of that (then state is re-read).
function handleStreamEvent(event) {
  if (event.type === "subscribed") {
    wallet.replayedUpTo = event.last_id ?? 0;
    if (wallet.key && cursor() === null) {
      saveCursor(event.last_id); // first visit: the state tells the past, the stream the rest
      catchUp().catch(() => {});
    }
    return true;
  }
  if (event.type === "gap") {
    saveCursor(event.id);
    if (wallet.key) catchUp().catch(() => {});
    changed("event", event);
    return true;
  }
  return false;
}

function handleEvent(event) {
  if (handleStreamEvent(event)) return;
  const missed = event.id <= wallet.replayedUpTo;
  if (typeof event.id === "number") {
    const last = cursor();
    if (last !== null && event.id <= last) return; // handled before this page reopened
    saveCursor(event.id);
  }
  if (event.type === "credit_received" && event.account === wallet.accountId &&
      !rememberCredit(event.op_id)) {
    return; // already notified (by a catch-up that raced this event)
  }
  const settles = event.type === "op_final" || event.type === "op_rejected";
  if (settles && wallet.mine.ops[event.op_id]?.settled) return; // told by a catch-up already
  changed("event", event);
  if (event.type === "checkpoint_final" && wallet.status) {
    wallet.status.final_height = event.height;
  }
  const describe = DESCRIBE[event.type];
  const described = describe ? describe(event) : null;
  if (settles) settle(event.op_id);
  if (described) {
    notify(described[0], described[1] + (missed ? " (while you were away)" : ""), event);
  }
}
