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
#: Heads per checkpoint cut: ~80 bytes each keeps a cut under the consensus value limit
#: (~176 KiB). A proposer with more moved chains proposes the first CUT_HEADS_MAX (by author)
#: and the rest go into the next checkpoint; a received cut with more is malformed.
CUT_HEADS_MAX = 2_000
#: Unfinalized ops that may trigger one checkpoint (the ceiling of the config's ops trigger).
#: It does not bound a cut's heads: the proposer truncates those to CUT_HEADS_MAX.
CHECKPOINT_OPS_TRIGGER_MAX = 100_000
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

# --- messages (enforced in messages.py) ----------------------------------------------------

#: Ops per OPS message: 22 envelopes of up to the 8 KiB envelope limit stay under the encoded
#: value limit; typical envelopes (~200 bytes) make one message of ~5 KiB, one frame.
OPS_PER_MESSAGE_MAX = 22
#: Checkpoint bundles per BUNDLES message (each carries its cut; big cuts travel fragmented).
BUNDLES_PER_MESSAGE_MAX = 8
#: Losing claims named in one HANDLE_CONFLICT message.
CONFLICT_LOSERS_PER_MESSAGE_MAX = 256
#: Pieces of equivocation evidence per EVIDENCE message (each ~500 bytes).
EVIDENCE_PER_MESSAGE_MAX = 16

# --- consensus memory (enforced in consensus/) -------------------------------------------

#: Evidence holds two message headers without values (~250 bytes each).
EVIDENCE_SIZE_BYTES_MAX = 4 * 1024
#: Decided bundles kept to serve lagging peers (`bundle_for`); older ones come from storage.
CONSENSUS_BUNDLES_KEPT_MAX = 16
#: Rule firings per input. Every firing moves the step or round forward or sets a fire-once
#: flag, so a handful suffice; the bound only guards against a bug looping forever.
CONSENSUS_RULE_FIRINGS_PER_INPUT_MAX = 1024
#: Events queued for the shell. Only rejections can pile up (a peer flooding junk); when the
#: queue is full they are counted instead of queued, other events are always kept.
CONSENSUS_EVENTS_QUEUED_MAX = 4096

# --- state sync fetch (enforced in snapshot.py) --------------------------------------------

#: Chunk requests in flight per peer: 16 x 128 KiB = 2 MiB, which covers the bandwidth-delay
#: product of a 20-30 MB/s data channel at ~50 ms round trips.
FETCH_INFLIGHT_PER_PEER_MAX = 16
#: A peer that lets this many requests in a row time out is dropped from the fetch.
FETCH_PEER_TIMEOUTS_MAX = 3
#: A chunk is tried on every peer (one pass) at most this many times before the fetch fails.
FETCH_CHUNK_PASSES_MAX = 3
#: Dropped peers are remembered (and refused by add_peer) up to this many, oldest forgotten.
FETCH_BANNED_PEERS_MAX = 4 * PEERS_MAX

# --- framing memory (enforced in framing.py) -----------------------------------------------

#: Ids of finished (completed, expired, rejected or failed) messages remembered per peer, so
#: that late or duplicated fragments of them are discarded instead of starting a reassembly
#: that could only expire (or deliver the message twice). Ids older than the oldest one
#: remembered are discarded too; ids are assigned when a message's first fragment is sent,
#: so on an ordered link a new message never has an id below a finished one.
FINISHED_MESSAGE_IDS_REMEMBERED_MAX = 1024

# --- state records (enforced in ledger/snapshot.py) ----------------------------------------

#: Unreceived credits per record (1,600 x 40 bytes = 62.5 KiB): about half a chunk, so that a
#: large account's parts fill chunks evenly and content-defined cuts still fall between them.
UNRECEIVED_CREDITS_PER_RECORD_MAX = 1600

# --- caches (crypto.py) --------------------------------------------------------------------

#: Valid keys remembered by `check_public_key`. The subgroup check costs ~65 us (more than a
#: signature verification) while the same accounts recur constantly; memoizing a pure function
#: does not affect determinism.
VALID_KEY_CACHE_ENTRIES_MAX = 1 << 16

# --- ledger memory (enforced in ledger/) ---------------------------------------------------

#: Cut closures and cut derivations remembered between a proposal, the votes and the
#: decision of one height (a few rounds may propose different cuts).
CUT_CACHE_ENTRIES_MAX = 4
#: Ledger events waiting for the caller (who drains them after every input); beyond it the
#: oldest are dropped and counted (`LedgerStats.events_dropped`), so a caller that stops
#: draining cannot grow memory without bound.
LEDGER_EVENTS_MAX = 1_000_000

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
assert CUT_HEADS_MAX * 80 < ENCODED_VALUE_SIZE_BYTES_MAX - 16 * 1024
assert CUT_HEADS_MAX <= CHECKPOINT_OPS_TRIGGER_MAX
assert CHECKPOINT_OPS_TRIGGER <= CHECKPOINT_OPS_TRIGGER_MAX
assert OPS_PER_MESSAGE_MAX * OP_ENVELOPE_SIZE_BYTES_MAX < ENCODED_VALUE_SIZE_BYTES_MAX
assert FETCH_BANNED_PEERS_MAX >= PEERS_MAX
assert GOSSIP_FANOUT <= PEERS_MAX
assert SNAPSHOT_CHUNK_SIZE_BYTES <= FRAGMENTS_PER_MESSAGE_MAX * FRAME_SIZE_BYTES_MAX

# --- node core (moved from protocol/node_core.py) --------------------------------------------

#: How long a fetched id is not requested again from anyone.
FETCH_RETRY_S = 1.0
#: Missing parents are looked for at most this often (the scan is linear in the pool).
FETCH_SCAN_S = 0.02
#: Ids remembered as requested (bounded; the oldest are forgotten first).
FETCH_REQUESTED_MAX = 50_000
#: An announced id that has not arrived by push this long after its first announcement is
#: fetched from an announcer. Long enough that the origin's own push (sent at the same time
#: as the push to the announcer) normally wins the race on a full mesh, short against the
#: checkpoint interval; a partial mesh pays it plus one round trip per lazy hop.
ANNOUNCE_FETCH_DELAY_S = 0.05
#: Announced ids waiting to arrive or be fetched (beyond this, new announcements are ignored:
#: delta sync is the backstop), and the share one peer's announcements may hold.
ANNOUNCED_IDS_MAX = 50_000
ANNOUNCED_IDS_PER_PEER_MAX = 8_192
#: Announcers remembered per id: a fetch that the first one does not answer within
#: FETCH_RETRY_S is retried with the next; after the last the id is left to delta sync.
ANNOUNCERS_PER_ID_MAX = 4
#: Delta sync sessions a node may skip in a row with a peer whose announcements arrived within
#: the last interval at our final height (gossip is flowing, the sets differ by in-flight ops
#: only). A session still runs at least every SYNC_SKIPS_MAX + 1 intervals.
SYNC_SKIPS_MAX = 3
#: A sync session that has not finished after this many intervals is abandoned.
SYNC_SESSION_TIMEOUT_INTERVALS = 5
#: Consensus messages remembered for relay de-duplication.
CONSENSUS_SEEN_MAX = 20_000
#: Passes of the core's consensus drain per call: answering one consensus event (a validation)
#: can sign messages and raise events again; each pass moves the algorithm forward, so a few
#: suffice and the bound only guards against a bug looping forever.
CONSENSUS_DRAIN_PASSES_MAX = 64
#: Checkpoint bundles kept in memory to serve lagging peers (older ones: state sync).
BUNDLES_KEPT_MAX = 4_096
#: Bundles above the next height kept while catching up (they arrive in batches of 8).
FUTURE_BUNDLES_MAX = 64
#: A state snapshot is made at every final height that is a multiple of this (0: never).
SNAPSHOT_INTERVAL_CHECKPOINTS_DEFAULT = 64
#: State sync: a peer is offered our snapshot at most this often (an offer carries the
#: manifest, up to 2 MiB; the lagging peer asks again at every delta sync).
SNAPSHOT_OFFER_INTERVAL_S = 1.0
#: State sync: a chunk request not answered within this goes to another peer (a 128 KiB chunk
#: behind up to 16 others on a slow link).
STATE_SYNC_CHUNK_TIMEOUT_S = 5.0
#: After a failed state sync, offers are ignored this long: catch-up retries at most this often.
STATE_SYNC_RETRY_S = 5.0
#: Pieces of equivocation evidence kept (each proves one member misbehaved at one height and
#: round; beyond this a flood of valid evidence from a byzantine member is not stored).
EVIDENCE_KEPT_MAX = 10_000
#: The core warns (FinalityStalled) when the final height has not moved for this many
#: checkpoint intervals while ops that could become final wait: ten cadences is far beyond a
#: healthy height (one interval plus a round or two) yet quick enough for an operator to see.
FINALITY_STALL_INTERVALS = 10
#: Events queued for the shell before the oldest are dropped (and counted).
NODE_EVENTS_MAX = 1_000_000

assert ANNOUNCED_IDS_PER_PEER_MAX <= ANNOUNCED_IDS_MAX
assert FETCH_SCAN_S < ANNOUNCE_FETCH_DELAY_S < FETCH_RETRY_S
assert SNAPSHOT_INTERVAL_CHECKPOINTS_DEFAULT <= BUNDLES_KEPT_MAX
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
#: Votes, and certificates, in one ROLLBACK message. A node relays each vote or certificate as
#: it arrives (one per message) and sends its certificates on connect in batches of this size;
#: 16 x ~13 KiB (the largest certificate) stays well under a message's size limit.
ROLLBACK_ITEMS_PER_MESSAGE_MAX = 16
#: Ops a node remembers as reverted by rollback certificates (refused with `op_reverted` if
#: they come back). Reverted ops are those final above H, at most the kept heights' final ops;
#: the oldest are forgotten first (they are also below every peer's final line by then).
REVERTED_OPS_MAX = 1_000_000

assert ROLLBACK_REASON_SIZE_BYTES_MAX + 512 <= ROLLBACK_VOTE_SIZE_BYTES_MAX
assert ROLLBACK_CERTIFICATE_SIZE_BYTES_MAX <= ENCODED_VALUE_SIZE_BYTES_MAX

# --- HTTP request bodies (node/http) ---------------------------------------------------------

#: Nesting depth of a JSON request body. Every body the API and admin interface accept is a
#: flat object (`{"envelope": hex}`, `{"mode": ..., "reason": ...}`); a deeper body is refused
#: before parsing, so a body nested thousands deep never reaches the recursive parser.
JSON_BODY_DEPTH_MAX = 16
#: Largest JSON body of the admin interface (its bodies are tiny objects).
ADMIN_JSON_BODY_SIZE_BYTES_MAX = 4096

# --- netguard: bans, handshake slots, reserved council links (issue 16) ----------------------

#: The first ban of a node id whose score fell to PEER_SCORE_MIN; each further ban of the same
#: id doubles it (a peer that misbehaves again right after its ban ends is out twice as long).
PEER_BAN_S_INITIAL = 60.0
#: The longest ban (a day): a key banned this long can still come back tomorrow, so an honest
#: node that was briefly buggy is never locked out for good.
PEER_BAN_S_MAX = 86_400.0
#: Node ids whose ban (and ban count) a node remembers; past it the one whose ban ended (or
#: ends) first is forgotten. Each entry is ~50 bytes in memory and one row in the store.
PEER_BANS_MAX = 4096
#: Inbound handshakes (WebSocket hello or WebRTC offer being answered) in progress from one
#: source address at once. A devnet on one host dials from 127.0.0.1 for every node, so this
#: leaves room for a whole council restarting together while one source can never take more
#: than a quarter of a transport's 32 pending slots.
HANDSHAKES_PER_SOURCE_MAX = 8
#: A WebSocket that has not sent its hello this long after opening is closed (an honest dialer
#: sends it at once; only an idle or hostile socket waits).
HELLO_TIMEOUT_S = 3.0
#: Established inbound peer links from one source address. A single-host devnet puts every
#: peer behind 127.0.0.1, so this must hold a full council plus its community peers there.
INBOUND_LINKS_PER_SOURCE_MAX = 48

assert PEER_BAN_S_INITIAL <= PEER_BAN_S_MAX
assert INBOUND_LINKS_PER_SOURCE_MAX <= PEERS_MAX

# --- netguard: peer exchange (protocol/addresses.py) -------------------------------------------

#: A node's own address record is valid this long; it re-signs well before (a stale record
#: of a node that moved dies within the hour).
ADDRESS_RECORD_TTL_S = 3600
#: Clock difference tolerated on top of the TTL when a record's expiry looks too far ahead.
ADDRESS_CLOCK_SKEW_S = 300
#: An encoded record: a key, two URLs of ADDRESS_URL_SIZE_BYTES_MAX, an expiry, a signature.
ADDRESS_RECORD_SIZE_BYTES_MAX = 2048
ADDRESS_URL_SIZE_BYTES_MAX = 512
#: Records one address book holds (~1 KiB each at most), and those learned from one source:
#: one peer (or one attacker's link) can fill at most 1/32 of the book.
ADDRESS_BOOK_MAX = 1024
ADDRESS_BOOK_PER_SOURCE_MAX = 32
#: Backoff of a learned address after a failed dial: doubled per failure, capped.
ADDRESS_DIAL_BACKOFF_S_INITIAL = 5.0
ADDRESS_DIAL_BACKOFF_S_MAX = 600.0
#: Dials of learned addresses per minute (a node never becomes a port scanner on a peer's
#: word).
ADDRESS_DIALS_PER_MINUTE_MAX = 30

assert ADDRESS_BOOK_PER_SOURCE_MAX <= ADDRESS_BOOK_MAX
assert 2 * ADDRESS_URL_SIZE_BYTES_MAX + 256 <= ADDRESS_RECORD_SIZE_BYTES_MAX

# --- state costs credits (scale branch, issue 13) ----------------------------------------------

#: Spendable credits a `handle.claim`'s author must hold (after receiving the credits the claim
#: lists in its deps) for the claim to apply; otherwise `claim_unfunded`. A claim is the one op
#: a key outside the council can make without spending, and each creates state (a claim record,
#: the author's account record): requiring a funded author ties state growth to credits, which
#: only the council's capped grants create. One credit suffices: a signup grant funds a tester.
CLAIM_MIN_SPENDABLE = 1

# --- Rejoin after a rollback, a resync or a divergence (node_core/rejoin.py) ------------------

#: Distinct peers whose bundle at our final height must carry our checkpoint before a node
#: coming out of a rollback, a resync or a root divergence leaves read-only: the signed bundle
#: alone proves the council's root, the peers that the network really continues from it (two:
#: one peer could be the only other node sharing our fault).
REJOIN_PEERS_MIN = 2
#: Seconds between two rounds of bundle requests while confirming (a lost request or a peer
#: that was behind is asked again).
REJOIN_QUERY_RETRY_S = 1.0

# --- the event stream's retained window (node/http/events.py; wallet branch) -----------------

#: Published events a node retains (in memory and in its store) for clients resuming the
#: event stream with `?since=ID`: a wallet page closed for a while gets what it missed. Under
#: a light load (a tester's node) this is hours of events; under saturation a checkpoint alone
#: finalizes more ops than this, and a client resuming from before the window gets a typed
#: `gap` event and re-reads its state. The store rewrites at most this many rows per
#: checkpoint, so the bound also caps the write cost the window adds.
EVENTS_RETAINED_MAX = 4096
# --- durability before send (node/runtime/driver.py; branch durable) ----------------------

#: Frames a shell holds while the write they wait for is being committed (events.py's
#: contract). A commit takes milliseconds, during which a node produces at most a few hundred
#: frames; a storage that hangs must not grow memory without bound, so past this the oldest
#: held frames are dropped (counted): dropping never sends a frame early, and the core
#: re-broadcasts its votes and re-syncs whatever the dropped frames carried.
HELD_FRAMES_MAX = 100_000

# --- bulk sync send rates (node_core/serve_rate.py; branch bandwidth, issue 16) ---------------

#: Bytes per second of state-sync chunks and catch-up bundles served to one peer: 4 MiB/s
#: moves a 64 MiB snapshot in ~16 s without one lagging peer taking a council member's uplink
#: (consensus and gossip of a saturated 4-node swarm use well under 1 MiB/s per link).
SERVE_BYTES_PER_S_PEER = 4 * 1024 * 1024
#: What one peer may get at once: FETCH_INFLIGHT_PER_PEER_MAX chunks (its whole request window)
#: plus slack, so a fetch at the rate is never held at its start.
SERVE_BURST_BYTES_PER_PEER = 2 * 1024 * 1024 + 256 * 1024
#: Bytes per second of bulk sync served to all peers together: four peers at full rate. A
#: node being caught up by many peers at once (after an outage) keeps its uplink for the rest.
SERVE_BYTES_PER_S_TOTAL = 16 * 1024 * 1024
SERVE_BURST_BYTES_TOTAL = 4 * SERVE_BURST_BYTES_PER_PEER
#: Requests held per peer while its answers wait for the rate: its chunk window twice over
#: (chunk and bundle requests); past it a request is dropped and its asker's timeout retries.
SERVE_DEFERRED_PER_PEER_MAX = 2 * FETCH_INFLIGHT_PER_PEER_MAX
#: Per-peer buckets kept: those of connected peers plus as many of peers gone (a peer that
#: reconnects keeps what it owes); past it idle ones are forgotten.
SERVE_RATE_BUCKETS_MAX = 2 * PEERS_MAX

assert SERVE_BURST_BYTES_PER_PEER >= FETCH_INFLIGHT_PER_PEER_MAX * SNAPSHOT_CHUNK_SIZE_BYTES
assert SERVE_BURST_BYTES_TOTAL >= SERVE_BURST_BYTES_PER_PEER
assert SERVE_BYTES_PER_S_TOTAL >= SERVE_BYTES_PER_S_PEER


# --- council-agreed time and product telemetry (protocol/checkpoint.py, protocol/telemetry.py;
# --- branch telemetry) ------------------------------------------------------------------------

#: How far (ms) a proposed cut's `time_ms` may lie ahead of a validator's own wall clock: the
#: validator prevotes nil on a cut further in the future. Wide enough for ordinary NTP drift
#: and a slow round trip; narrow enough that one fast proposer cannot move the council's clock
#: (and the telemetry's days) far ahead. A cut from the past is fine: a value locked in an
#: earlier round is re-proposed with its original time.
CUT_TIME_SKEW_MS = 30_000
#: The largest `time_ms` a cut may carry (UTC ms; year ~2286): bounded so the telemetry's day
#: arithmetic and the SQLite INTEGER columns never overflow.
CUT_TIME_MS_MAX = 10**13
#: UTC days of product telemetry a node keeps (older days are pruned in the checkpoint's own
#: write). Retention needs the 60 days before a day; a year on top covers a release trend.
TELEMETRY_DAYS_KEPT = 400
#: Days `GET /v1/telemetry?days=N` returns at most (one response stays a few tens of KiB).
TELEMETRY_DAYS_QUERY_MAX = 400


# --- final op bodies in memory (protocol/ledger; issue 13, branch scale3) ---------------------

#: Final heights whose op bodies a ledger keeps in RAM by default: as many as the bundles a core
#: may keep (BUNDLES_KEPT_MAX), so a core serving catch-up from its kept bundles always holds
#: their ops. Older final bodies leave memory, and their ids with them (issue 13).
FINAL_OP_BODIES_HEIGHTS_MAX = BUNDLES_KEPT_MAX
#: What the daemon keeps instead: the last heights' bodies serve gossip, the API and peers one
#: checkpoint or so behind; a peer further behind gets older final ops read from the store by
#: the shell (`StoredOpsWanted`), and the API reads them there too. At 1,000 ops a checkpoint
#: this is ~64k bodies (~30 MiB) whatever the history's length.
FINAL_OP_BODIES_HEIGHTS_DAEMON = 64

#: Store reads of old final ops for peers running at once (the daemon's `StoredOps`): each
#: FETCH or catch-up request naming old ops costs one; a peer asks again after FETCH_RETRY_S,
#: so refusing beyond this only slows a flood of such requests, not an honest catch-up.
STORED_OPS_READS_INFLIGHT_MAX = 4

assert 1 <= FINAL_OP_BODIES_HEIGHTS_DAEMON <= FINAL_OP_BODIES_HEIGHTS_MAX


# --- mesh: bounded degree, diversity, relays in address records (issue 16; branch mesh) -------

#: Outbound links a node dials up to from its address book (protocol/peering.py). With
#: MESH_INBOUND_MAX this bounds a community node's degree (not a full mesh), and 8 random
#: outbound links make a connected graph whose diameter grows as log N: de-duplicated gossip
#: reaches every node in O(log N) hops. Council links to other members are reserved slots and
#: are counted in neither.
MESH_OUTBOUND_TARGET = 8
#: Inbound links a node accepts from non-council peers: enough for ~3x the outbound target (a
#: node is dialed about as often as it dials, more when it is a seed), well under PEERS_MAX
#: minus a 31-member council's reserved slots.
MESH_INBOUND_MAX = 24
#: Outbound links whose address was learned from one source (one peer's exchange answer, or
#: the configured seeds): one peer, or one attacker's many identities behind it, can place at
#: most half of a node's outbound links.
MESH_OUTBOUND_PER_SOURCE_MAX = 4
#: TURN relays one address record may offer (their URIs only, never credentials: a node
#: offers its `[network].turn_urls` and the turn: URLs of its ice_servers, one or two in
#: practice), each a `turn:`/`turns:` URI of at most ADDRESS_RELAY_URL_SIZE_BYTES_MAX bytes, so
#: a record with two URLs and the relays still fits ADDRESS_RECORD_SIZE_BYTES_MAX.
ADDRESS_RELAYS_MAX = 2
ADDRESS_RELAY_URL_SIZE_BYTES_MAX = 256

assert MESH_OUTBOUND_PER_SOURCE_MAX <= MESH_OUTBOUND_TARGET
assert MESH_OUTBOUND_TARGET + MESH_INBOUND_MAX + 30 <= PEERS_MAX
assert (
    2 * ADDRESS_URL_SIZE_BYTES_MAX + ADDRESS_RELAYS_MAX * ADDRESS_RELAY_URL_SIZE_BYTES_MAX + 256
    <= ADDRESS_RECORD_SIZE_BYTES_MAX
)


# --- eclipse: tried and new address records (issue 16; branch eclipse) -------------------------

#: Records of an exchange answer that the answering node only heard of ("new": never dialed
#: successfully), after the "tried" ones it linked to itself (as Bitcoin's addrman keeps
#: tried and new apart), each from a different network group (IPv4 /16, IPv6 /32, DNS
#: domain). A flooded book is mostly new records, so an attacker's identities spread at most
#: one per answer and network instead of filling whole answers; 4 of the 31 still let a node
#: that is only heard of by its seeds become known.
ADDRESS_SHARE_NEW_MAX = 4

assert ADDRESS_SHARE_NEW_MAX >= 1


# --- daemon peer policy: tried share, anchors, [sync] serve rates (issue 16; branch peers2) ----

#: Of the learned addresses one exchange round dials, at least this share (rounded up) comes
#: from "tried" records (nodes this node linked to before) while any is due: an attacker who
#: floods the "new" table with identities can then place at most the rest of a round's dials,
#: never all outbound links (Bitcoin's addrman picks tried and new at even odds). The daemon
#: uses it (node/runtime/exchange.py); the simulator's mesh does not (its trace hashes stay).
ADDRESS_DIALS_TRIED_PERCENT = 50
#: Anchors: the last good outbound peers stored with the address book and dialed first after a
#: restart, before any exchange answer is read (Bitcoin keeps 2 block-relay anchors): an
#: attacker who times an eclipse with a restart finds these links up again. Small, so an
#: anchor that went bad costs little.
ADDRESS_ANCHORS_MAX = 2
#: Bounds of the `[sync]` serve-rate settings (bytes per second and bursts of bulk sync served,
#: node_core/serve_rate.py): below 64 KiB/s one snapshot chunk takes seconds and a joining
#: node effectively cannot catch up; 1 GiB/s is above any link this daemon drives.
SERVE_RATE_BYTES_CONFIG_MIN = 64 * 1024
SERVE_RATE_BYTES_CONFIG_MAX = 1024 * 1024 * 1024

assert 0 < ADDRESS_DIALS_TRIED_PERCENT <= 100
assert 1 <= ADDRESS_ANCHORS_MAX <= MESH_OUTBOUND_TARGET
assert SERVE_RATE_BYTES_CONFIG_MIN <= SERVE_BYTES_PER_S_PEER <= SERVE_RATE_BYTES_CONFIG_MAX
assert SERVE_BURST_BYTES_TOTAL <= SERVE_RATE_BYTES_CONFIG_MAX


# --- rollback: ops of reverted cuts not held yet (issue 12 gap a; branch settle) -------------

#: Ids a node remembers as ops of reverted old-epoch cuts (a late bundle above H, a
#: settlement) that it did not hold when it walked the cut: such an op arriving later (gossip,
#: sync, a client) is reverted then, with the ops of the cut it leads to, instead of becoming
#: live in the new epoch. A cut names at most CUT_HEADS_MAX heads and the walk adds only the
#: parents of ops held; the oldest ids are forgotten first (their ops are below every peer's
#: final line by then, or never come).
REVERT_UNRESOLVED_MAX = 100_000
#: Old-epoch values one settlement cut lists (each a member's signed precommit above H with
#: the cut it precommitted; docs/PROTOCOL.md "Settlement"): a rollback ends an epoch at most a
#: few heights after H, and each member precommits at most one value per round; the whole cut
#: must also fit a consensus value. A node collects more (a quota per member, below) and its
#: proposer picks fairly among them.
SETTLEMENT_VALUES_MAX = 64
#: A validator's own non-nil precommits (with their values) it keeps, newest first forgotten
#: last, so that after a rollback it can show and require those above H (consensus/machine.py).
SETTLEMENT_PRECOMMITS_KEPT_MAX = 16


# --- simulator and suite speed (session 7; branch simspeed) ------------------------------------

#: URLs whose network group `addresses.url_group` remembers (a pure function of the URL string:
#: parsing the host with ipaddress on every call was 21% of the open-network and eclipse
#: scenarios, via AddressBook.sample). A book holds at most ADDRESS_BOOK_MAX records, so the
#: cache covers a full book four times over; past it, least recently used URLs are parsed again.
ADDRESS_GROUP_CACHE_ENTRIES_MAX = 4096

assert ADDRESS_GROUP_CACHE_ENTRIES_MAX >= ADDRESS_BOOK_MAX


# --- settlement: a quota per member (issue 12; branch settle2) -------------------------------

#: Old-epoch values of one council member (the precommit's signer) a node remembers for a
#: settlement and its proposer lists: what a correct member can show (it keeps at most
#: SETTLEMENT_PRECOMMITS_KEPT_MAX precommits), so one faulty member signing made-up values
#: fills only its own share, never the room of correct members' values. A node remembers at
#: most council size x this many values.
SETTLEMENT_VALUES_PER_SIGNER_MAX = SETTLEMENT_PRECOMMITS_KEPT_MAX
#: Bytes of values (their precommits included) of one member a node remembers for a
#: settlement: all of a member's listed values fit one consensus value anyway, so more is
#: never needed; it bounds what made-up values cost a node (council size x 192 KiB).
SETTLEMENT_SIGNER_BYTES_MAX = ENCODED_VALUE_SIZE_BYTES_MAX

assert SETTLEMENT_VALUES_PER_SIGNER_MAX <= SETTLEMENT_VALUES_MAX


# --- the signing state written at every step (branch sigstate) --------------------------------

#: What a validator's compact signing state (rewritten with an fsync at every consensus step)
#: holds besides the values of its height (its kept proposals, the locked and the valid value):
#: at most 12 own messages (~250 bytes each without a value), the ids of at most 32 kept
#: precommits (34 bytes each) and the small fields, ~5 KiB at most. The kept precommits'
#: values are not in it (each is written once, as a record of its own), so a step's write
#: does not grow with the cuts a validator precommitted (docs/PROTOCOL.md "Settlement").
SIGNING_STATE_STEP_OVERHEAD_BYTES_MAX = 16 * 1024
