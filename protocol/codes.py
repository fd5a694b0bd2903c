"""Every rejection code the protocol core can produce, as one enum.

`RejectCode` is a `StrEnum`: each member equals its string, and its `str`, format and `repr`
are the plain string's, so the wire, the HTTP API, JSON, logs and the simulator's traces stay
byte-identical to the string literals the codes replace. Codes never change meaning once
published; docs/PROTOCOL.md's "Rejection codes" table lists them (tests/protocol/
test_reject_codes.py checks the table against this enum both ways).
"""

from __future__ import annotations

from enum import StrEnum


class RejectCode(StrEnum):
    """A stable rejection or error code (see the module docstring)."""

    def __repr__(self) -> str:
        return repr(self.value)

    # --- generic errors (errors.py) --------------------------------------------------------------
    PROTOCOL_ERROR = "protocol_error"
    REMOTE_PROTOCOL_ERROR = "remote_protocol_error"
    LOCAL_PROTOCOL_ERROR = "local_protocol_error"
    DECODE_ERROR = "decode_error"
    NON_CANONICAL_ENCODING = "non_canonical_encoding"
    LIMIT_EXCEEDED = "limit_exceeded"
    INVALID_KEY = "invalid_key"
    INVALID_ACCOUNT_ID = "invalid_account_id"
    BAD_SIGNATURE = "bad_signature"
    OP_REJECTED = "op_rejected"
    MALFORMED_OP = "malformed_op"
    WRONG_NETWORK = "wrong_network"
    INVALID_GENESIS = "invalid_genesis"

    # --- op decode and shape (ops.py) ------------------------------------------------------------
    UNKNOWN_VERSION = "unknown_version"
    UNKNOWN_KIND = "unknown_kind"
    BAD_PREV = "bad_prev"
    BAD_AMOUNT = "bad_amount"
    BAD_HANDLE = "bad_handle"

    # --- ledger: chain, deps and rules (ledger/) -------------------------------------------------
    BASIS_REGRESSED = "basis_regressed"
    PREV_REJECTED = "prev_rejected"
    DEP_REJECTED = "dep_rejected"
    NOT_COUNCIL = "not_council"
    DEP_FINAL_UNUSABLE = "dep_final_unusable"
    BAD_GRANT_AMOUNT = "bad_grant_amount"
    GRANT_CAP_EXCEEDED = "grant_cap_exceeded"
    SELF_TRANSFER = "self_transfer"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    CREDIT_ALREADY_RECEIVED = "credit_already_received"
    ENDORSE_WITHOUT_CLAIM = "endorse_without_claim"
    ALREADY_ENDORSED = "already_endorsed"
    REVOKE_WITHOUT_CLAIM = "revoke_without_claim"
    ALREADY_REVOKED = "already_revoked"
    CLAIM_UNFUNDED = "claim_unfunded"

    # --- ledger: arbitration, pending pool, cuts (ledger/) ---------------------------------------
    FORK_LOST = "fork_lost"
    GRANT_CONFLICT_LOST = "grant_conflict_lost"
    DEPENDS_ON_EXCLUDED = "depends_on_excluded"
    FORK_LOST_FINAL = "fork_lost_final"
    GRANT_CONFLICT_LOST_FINAL = "grant_conflict_lost_final"
    DEPENDS_ON_EXCLUDED_FINAL = "depends_on_excluded_final"
    PENDING_EVICTED = "pending_evicted"
    PENDING_EXPIRED = "pending_expired"
    CUT_INVALID = "cut_invalid"
    CUT_MALFORMED = "cut_malformed"

    # --- consensus (consensus/) -------------------------------------------------------------------
    MALFORMED_CONSENSUS_MESSAGE = "malformed_consensus_message"
    UNKNOWN_VALIDATOR = "unknown_validator"
    NOT_PROPOSER = "not_proposer"
    INVALID_BUNDLE = "invalid_bundle"
    MALFORMED_BUNDLE = "malformed_bundle"
    BUNDLE_UNKNOWN_VALIDATOR = "bundle_unknown_validator"
    BUNDLE_DUPLICATE_VALIDATOR = "bundle_duplicate_validator"
    BUNDLE_NO_QUORUM = "bundle_no_quorum"
    BUNDLE_BAD_SIGNATURE = "bundle_bad_signature"
    INVALID_EVIDENCE = "invalid_evidence"
    MALFORMED_EVIDENCE = "malformed_evidence"
    EVIDENCE_NOT_CONFLICTING = "evidence_not_conflicting"
    EVIDENCE_UNKNOWN_VALIDATOR = "evidence_unknown_validator"
    EVIDENCE_BAD_SIGNATURE = "evidence_bad_signature"
    BAD_SIGNING_STATE = "bad_signing_state"

    # --- framing and messages (framing.py, messages.py, reconcile.py) ----------------------------
    FRAMING_ERROR = "framing_error"
    FRAME_MALFORMED = "frame_malformed"
    FRAME_VERSION_UNSUPPORTED = "frame_version_unsupported"
    FRAME_TOO_LARGE = "frame_too_large"
    FRAGMENT_LIMIT = "fragment_limit"
    REASSEMBLY_LIMIT = "reassembly_limit"
    FRAGMENT_INTEGRITY = "fragment_integrity"
    MESSAGE_TOO_LARGE = "message_too_large"
    SEND_QUEUE_FULL = "send_queue_full"
    INVALID_PRIORITY = "invalid_priority"
    MESSAGE_MALFORMED = "message_malformed"
    RECONCILE_ERROR = "reconcile_error"
    RECONCILE_MALFORMED_MESSAGE = "reconcile_malformed_message"
    RECONCILE_ROUNDS_EXCEEDED = "reconcile_rounds_exceeded"

    # --- state snapshots (snapshot.py, ledger/snapshot.py, node_core.py) -------------------------
    SNAPSHOT_MANIFEST_INVALID = "snapshot_manifest_invalid"
    SNAPSHOT_LIMIT_EXCEEDED = "snapshot_limit_exceeded"
    SNAPSHOT_CHUNK_INDEX_INVALID = "snapshot_chunk_index_invalid"
    SNAPSHOT_CHUNK_HASH_MISMATCH = "snapshot_chunk_hash_mismatch"
    SNAPSHOT_CHUNK_MALFORMED = "snapshot_chunk_malformed"
    SNAPSHOT_RECORD_TOO_LARGE = "snapshot_record_too_large"
    SNAPSHOT_TOO_LARGE = "snapshot_too_large"
    MALFORMED_SNAPSHOT_BLOB = "malformed_snapshot_blob"
    SNAPSHOT_RECORD_INVALID = "snapshot_record_invalid"
    SNAPSHOT_RESTORE_FAILED = "snapshot_restore_failed"
    SNAPSHOT_MISMATCH = "snapshot_mismatch"

    # --- node modes (node_core.py) ---------------------------------------------------------------
    READ_ONLY = "read_only"
    QUIESCED = "quiesced"
    CLAIMS_PAUSED = "claims_paused"

    # --- epochs and rollback certificates (consensus/, rollback.py) -----------------------------
    CONSENSUS_WRONG_EPOCH = "consensus_wrong_epoch"
    SIGNING_STATE_WITHOUT_EPOCH = "signing_state_without_epoch"
    SIGNING_STATE_FUTURE_EPOCH = "signing_state_future_epoch"
    INVALID_ROLLBACK = "invalid_rollback"
    ROLLBACK_MALFORMED = "rollback_malformed"
    ROLLBACK_UNKNOWN_SIGNER = "rollback_unknown_signer"
    ROLLBACK_DUPLICATE_SIGNER = "rollback_duplicate_signer"
    ROLLBACK_NO_QUORUM = "rollback_no_quorum"
    ROLLBACK_BAD_SIGNATURE = "rollback_bad_signature"
    ROLLBACK_WRONG_EPOCH = "rollback_wrong_epoch"
    ROLLBACK_CHECKPOINT_MISMATCH = "rollback_checkpoint_mismatch"
    BUNDLE_REVERTED = "bundle_reverted"
    BUNDLE_FUTURE_EPOCH = "bundle_future_epoch"
    BUNDLE_BEFORE_EPOCH = "bundle_before_epoch"
    EPOCH_HISTORY_FULL = "epoch_history_full"
    OP_REVERTED = "op_reverted"
    ROLLBACK_NOT_SIGNABLE = "rollback_not_signable"
    REJOIN_RECORD_INVALID = "rejoin_record_invalid"
    SETTLEMENT_BAD_EVIDENCE = "settlement_bad_evidence"  # settle: a settled value unproven

    # --- netguard: peer exchange (addresses.py) --------------------------------------------------
    ADDRESS_RECORD_INVALID = "address_record_invalid"


def final_code(code: str) -> str:
    """The code of an op excluded with `code` once the exclusion is final (`fork_lost` ->
    `fork_lost_final`); a plain string for a code without a final form."""
    final = f"{code}_final"
    return RejectCode(final) if final in RejectCode.__members__.values() else final
