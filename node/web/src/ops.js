// Op envelopes exactly as protocol/ops.py builds them, and the checks of a checkpoint bundle.

import { compareBytes, concat, equalBytes, fromUtf8, utf8 } from "./bytes.js";
import { decode, encode } from "./canonical.js";
import { sha256, sign, verify } from "./keys.js";

export const OP_DOMAIN_TAG = concat(utf8("swarmd/op/v1"), new Uint8Array([0]));
export const ENVELOPE_VERSION = 1;
export const Kind = {
  grant: 1,
  transfer: 2,
  burn: 3,
  "handle.claim": 4,
  "handle.endorse": 5,
  "handle.revoke": 6,
  "council.quiesce": 7,
  "council.resume": 8,
};

export function signedMessage(networkId, kind, body) {
  return concat(OP_DOMAIN_TAG, networkId, new Uint8Array([kind]), body);
}

function sortedUnique(ids) {
  const out = [...ids].sort(compareBytes);
  return out.filter((id, i) => i === 0 || !equalBytes(id, out[i - 1]));
}

// Sign one op. `fields` holds seq, prev, deps, basis and the kind's own fields; `signer`
// is {privateKey, publicKey}. Returns {envelope, opId, body, signature}.
export async function buildOp(signer, networkId, kind, fields) {
  const prev = fields.prev ?? new Uint8Array();
  const deps = sortedUnique((fields.deps ?? []).filter((dep) => !equalBytes(dep, prev)));
  const body = encode({
    ...fields,
    author: signer.publicKey,
    prev,
    deps,
    basis: fields.basis ?? 0,
  });
  const signature = await sign(signer.privateKey, signedMessage(networkId, kind, body));
  const envelope = encode([ENVELOPE_VERSION, kind, body, signature]);
  return { envelope, opId: await sha256(envelope), body, signature };
}

// --- genesis and checkpoint bundles ----------------------------------------------------------

const GENESIS_TAG = concat(utf8("swarmd/genesis/v1"), new Uint8Array([0]));
const CONSENSUS_TAG = utf8("swarmd/consensus/v1");

// The network id of a genesis value (protocol/genesis.py: sha256(tag || encode(to_value()))).
export async function networkIdOf(genesis) {
  return sha256(concat(GENESIS_TAG, encode(genesis)));
}

export function quorumSize(members) {
  return Math.floor((2 * members) / 3) + 1;
}

// Check a bundle the way protocol/consensus.py verify_bundle does: every precommit is by a
// distinct council member, there is a quorum of them, and each signature covers the precommit
// body for sha256(value) at the bundle's epoch, height and round. Returns a report; never throws for
// a bad bundle (the report says what is wrong).
export async function verifyBundle(bundleBytes, networkId, council) {
  let bundle;
  try {
    bundle = decode(bundleBytes);
  } catch (error) {
    return { ok: false, reason: `bundle is not canonical msgpack: ${error.message}` };
  }
  const epoch = bundle.get?.("epoch");
  const height = bundle.get?.("height");
  const round = bundle.get?.("round");
  const value = bundle.get?.("value");
  const precommits = bundle.get?.("precommits");
  if (!(value instanceof Uint8Array) || !Array.isArray(precommits)) {
    return { ok: false, reason: "bundle lacks its value or precommits" };
  }
  if (typeof epoch !== "number" && typeof epoch !== "bigint") {
    return { ok: false, reason: "bundle lacks its epoch" };
  }
  const body = { type: "precommit", epoch, height, round, value_id: await sha256(value) };
  const message = concat(CONSENSUS_TAG, networkId, encode(body));
  const signers = [];
  for (const entry of precommits) {
    const [key, signature] = entry;
    if (!council.some((member) => equalBytes(member, key))) {
      return { ok: false, reason: "a precommit is signed by a non-member", height };
    }
    if (signers.some((seen) => equalBytes(seen.key, key))) {
      return { ok: false, reason: "a validator appears twice", height };
    }
    const valid = await verify(key, message, signature);
    signers.push({ key, valid });
  }
  const quorum = quorumSize(council.length);
  const validCount = signers.filter((signer) => signer.valid).length;
  if (validCount !== signers.length) {
    return { ok: false, reason: "a precommit signature does not verify", height, signers };
  }
  if (validCount < quorum) {
    return { ok: false, reason: `${validCount} precommits, a quorum is ${quorum}`, height };
  }
  return { ok: true, epoch, height, round, signers, quorum, value, valueId: body.value_id };
}

// The checkpoint cut a bundle decided (protocol/checkpoint.py Cut):
// [2, parent_id, height, heads, state_root, time_ms]; its id is sha256 of these bytes.
// time_ms: the council-agreed time of the checkpoint (UTC ms).
export async function decodeCut(value) {
  const cut = decode(value);
  if (!Array.isArray(cut) || cut.length !== 6 || cut[0] !== 2) throw new Error("not a cut");
  return { parentId: cut[1], height: cut[2], heads: cut[3], stateRoot: cut[4],
    timeMs: cut[5], checkpointId: await sha256(value) };
}

export { fromUtf8 };
