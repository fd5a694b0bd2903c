"""Every bound of the protocol, named in one place (TigerBeetle's constants.zig is the model).

Each constant says why it has its value. Tunable values are defaults of frozen config
dataclasses elsewhere; the hard protocol bounds here are the same for every node. The asserts
at the bottom check at import time that the bounds fit together.
"""

from __future__ import annotations

# --- sizes of primitive values ---------------------------------------------------------------

#: Ed25519 public keys, op ids, hashes and network ids are all 32 bytes.
HASH_SIZE_BYTES = 32
PUBLIC_KEY_SIZE_BYTES = 32
SIGNATURE_SIZE_BYTES = 64

# --- canonical msgpack decoding --------------------------------------------------------------

#: No single encoded value (op envelope, consensus message, sync message) may exceed this.
#: Kept well under the WebRTC data-channel maximum (256 KiB) so one value always fits a frame
#: after fragmentation headers; larger payloads (snapshots) are chunked above this layer.
ENCODED_VALUE_SIZE_BYTES_MAX = 192 * 1024
#: Nesting depth of arrays/maps; ops need 3, consensus and sync messages 5.
ENCODED_DEPTH_MAX = 8
#: Entries in one array or map. Bounds the id lists of sync messages (4096 ids x 32 bytes =
#: 128 KiB < ENCODED_VALUE_SIZE_BYTES_MAX).
ENCODED_CONTAINER_ENTRIES_MAX = 4096
#: Length of one str value (handles, burn targets, reasons are far shorter).
ENCODED_STR_SIZE_BYTES_MAX = 1024

# --- operations ------------------------------------------------------------------------------

#: An op envelope on the wire: a body plus 64 signature bytes plus a few header bytes.
OP_ENVELOPE_SIZE_BYTES_MAX = 8 * 1024
#: Explicit deps per op: enough to receive many payments at once; an op may instead name a
#: final checkpoint as its basis, so no op ever needs unbounded deps.
OP_DEPS_MAX = 64
#: Credit amounts are unsigned and below 2**63 so that every total fits a signed 64-bit
#: column in SQLite and in other implementations.
AMOUNT_MAX = 2**63 - 1
#: Handle names: 3..32 chars of [a-z0-9_-], lowercase only, so two handles never differ only
#: by case or Unicode confusables.
HANDLE_LENGTH_MIN = 3
HANDLE_LENGTH_MAX = 32
#: Hype-burn target strings (UTF-8 bytes).
BURN_TARGET_SIZE_BYTES_MAX = 128
#: Free-text reasons in council broadcasts.
REASON_SIZE_BYTES_MAX = 256
#: Seqs are positive and below 2**63 for the same 64-bit reason as amounts.
SEQ_MAX = 2**63 - 1

# --- pending pool ----------------------------------------------------------------------------

#: Ops that wait for a missing prev or dep. Bounded so that a peer sending orphans cannot
#: exhaust memory; eviction removes the oldest-received op first (docs/PROTOCOL.md).
PENDING_OPS_MAX = 50_000
#: One author may hold at most this many pending ops, so a single author cannot fill the pool.
PENDING_OPS_PER_AUTHOR_MAX = 1_024
#: Ops are dropped from the pool after this long without their parents arriving.
PENDING_OP_TTL_S = 600
#: Remembered ids of rejected ops (so that descendants are rejected at once, not parked).
REJECTED_IDS_REMEMBERED_MAX = 100_000

# --- state root ------------------------------------------------------------------------------

#: The state tree has 2**16 buckets under a 16-level binary tree (measured ~15 us per account
#: update and 86 ms per checkpoint with 10k changed accounts on this machine kind).
STATE_TREE_DEPTH = 16
STATE_TREE_BUCKETS = 2**STATE_TREE_DEPTH

# --- framing and fragmentation (transport-independent) ---------------------------------------

#: aiortc data channels fail above 256 KiB per message; frames stay at 64 KiB, which measured
#: 20-30 MB/s per core, and leaves room for headers.
FRAME_SIZE_BYTES_MAX = 64 * 1024
#: Small messages are batched into one frame up to this size (aiortc's cost is per message).
FRAME_BATCH_SIZE_BYTES_TARGET = 16 * 1024
#: A logical message may be split into at most this many fragments (16 MiB at 64 KiB each):
#: the largest single message is a snapshot chunk or a checkpoint bundle with many heads.
FRAGMENTS_PER_MESSAGE_MAX = 256
#: Bytes under reassembly per peer at once; more is refused and counted.
REASSEMBLY_BYTES_PER_PEER_MAX = 32 * 1024 * 1024
#: Messages under reassembly per peer at once.
REASSEMBLIES_PER_PEER_MAX = 8
#: A partial message not completed within this time is dropped and counted.
REASSEMBLY_TIMEOUT_S = 30

# --- peers and gossip ------------------------------------------------------------------------

PEERS_MAX = 64
#: New ops are pushed to this many peers; the rest learn them by delta sync.
GOSSIP_FANOUT = 8
#: Remembered ids of recently seen gossip messages (de-duplication window).
GOSSIP_SEEN_IDS_MAX = 200_000
#: Messages accepted per peer per second before throttling (token bucket refill) and burst.
PEER_MESSAGES_PER_S = 20_000
PEER_MESSAGES_BURST = 40_000
#: Outgoing messages queued per peer before the oldest bulk (non-consensus) ones are dropped.
PEER_SEND_QUEUE_MAX = 10_000
#: A peer whose score drops below this is disconnected.
PEER_SCORE_MIN = -100

# --- delta sync ------------------------------------------------------------------------------

#: Default cadence of delta sync with each peer.
DELTA_SYNC_INTERVAL_S = 2.0
#: Set reconciliation: a range is split into this many sub-ranges on mismatch (Negentropy
#: uses 16); ranges with at most this many ids are sent as explicit id lists.
RECONCILE_BRANCHING = 16
RECONCILE_ID_LIST_MAX = 32
#: A reconciliation message never exceeds one frame.
RECONCILE_MESSAGE_SIZE_BYTES_MAX = FRAME_SIZE_BYTES_MAX - 1024
#: Reconciliation rounds before a session is abandoned (a misbehaving peer cannot loop us).
RECONCILE_ROUNDS_MAX = 64
#: Ops fetched per request.
FETCH_OPS_PER_REQUEST_MAX = 512

# --- application heartbeat -------------------------------------------------------------------

#: aiortc notices a dead peer only after ~30 s; the application heartbeat notices in ~2 s.
HEARTBEAT_INTERVAL_S = 0.5
HEARTBEAT_DEAD_AFTER_S = 2.0

# --- consensus -------------------------------------------------------------------------------

COUNCIL_SIZE_MAX = 100
#: Tendermint timeouts grow linearly with the round: base + round * delta.
CONSENSUS_TIMEOUT_PROPOSE_S = 1.0
CONSENSUS_TIMEOUT_PREVOTE_S = 0.5
CONSENSUS_TIMEOUT_PRECOMMIT_S = 0.5
CONSENSUS_TIMEOUT_DELTA_S = 0.5
#: Rounds remembered per height (messages for rounds beyond current + this are ignored).
CONSENSUS_FUTURE_ROUNDS_MAX = 8
#: Account heads listed in one checkpoint cut.
CHECKPOINT_HEADS_MAX = 100_000
#: Checkpoint cadence defaults: cut when this many ops are unfinalized or this long passed.
#: At light load an op waits for the next cut plus one consensus round, so the cadence sets
#: finality latency: 0.5 s gives a 4-node swarm p95 ~0.5 s (1.0 s gave ~0.98 s, too close to
#: the 1 s target), and under saturation smaller cuts finalized ~13% more ops/s (BENCHMARKS.md).
CHECKPOINT_INTERVAL_S = 0.5
CHECKPOINT_OPS_TRIGGER = 5_000

# --- state sync ------------------------------------------------------------------------------

SNAPSHOT_CHUNK_SIZE_BYTES = 128 * 1024
SNAPSHOT_CHUNKS_MAX = 65_536

# --- grants ----------------------------------------------------------------------------------

#: Default cap of grants per council member per checkpoint window (genesis may lower it).
GRANTS_PER_MEMBER_PER_WINDOW_DEFAULT = 1_000

# --- relations, checked at import time -------------------------------------------------------

assert OP_ENVELOPE_SIZE_BYTES_MAX < ENCODED_VALUE_SIZE_BYTES_MAX
assert OP_DEPS_MAX * HASH_SIZE_BYTES + 512 < OP_ENVELOPE_SIZE_BYTES_MAX
assert ENCODED_CONTAINER_ENTRIES_MAX * HASH_SIZE_BYTES < ENCODED_VALUE_SIZE_BYTES_MAX
assert ENCODED_VALUE_SIZE_BYTES_MAX <= FRAGMENTS_PER_MESSAGE_MAX * FRAME_SIZE_BYTES_MAX
assert FRAME_BATCH_SIZE_BYTES_TARGET <= FRAME_SIZE_BYTES_MAX <= 256 * 1024
assert FRAGMENTS_PER_MESSAGE_MAX * FRAME_SIZE_BYTES_MAX <= REASSEMBLY_BYTES_PER_PEER_MAX
assert (
    RECONCILE_ID_LIST_MAX * HASH_SIZE_BYTES * RECONCILE_BRANCHING < RECONCILE_MESSAGE_SIZE_BYTES_MAX
)
assert HEARTBEAT_INTERVAL_S * 3 <= HEARTBEAT_DEAD_AFTER_S
assert PENDING_OPS_PER_AUTHOR_MAX <= PENDING_OPS_MAX
assert GOSSIP_FANOUT <= PEERS_MAX
assert SNAPSHOT_CHUNK_SIZE_BYTES <= FRAGMENTS_PER_MESSAGE_MAX * FRAME_SIZE_BYTES_MAX

# --- epochs and rollback certificates --------------------------------------------------------

#: Epochs grow by one per council rollback certificate (a rare, manual decision), so a larger
#: epoch on the wire is malformed; the bound matches the consensus round bound.
EPOCH_MAX = 2**31 - 1
#: The operator's reason in a rollback vote, in UTF-8 bytes: a sentence for the audit trail
#: and `council status`, not a document.
ROLLBACK_REASON_SIZE_BYTES_MAX = 256
#: An encoded rollback vote: the body (~150 bytes plus the reason), a key and a signature.
ROLLBACK_VOTE_SIZE_BYTES_MAX = 1024
#: An encoded rollback certificate: the body plus at most one [key, signature] pair (~100
#: bytes encoded) per council member.
ROLLBACK_CERTIFICATE_SIZE_BYTES_MAX = 1024 + COUNCIL_SIZE_MAX * 128
#: Certificates one epoch history holds (one per rollback since genesis). Rollbacks are rare
#: council decisions; the bound keeps a hostile or buggy history from growing memory (1024 x
#: ~14 KiB at most).
EPOCH_HISTORY_CERTIFICATES_MAX = 1024

assert ROLLBACK_REASON_SIZE_BYTES_MAX + 512 <= ROLLBACK_VOTE_SIZE_BYTES_MAX
assert ROLLBACK_CERTIFICATE_SIZE_BYTES_MAX <= ENCODED_VALUE_SIZE_BYTES_MAX
