"""Tendermint consensus for council checkpoints (sans-I/O).

This is Algorithm 1 of Buchman, Kwon, Milosevic, "The latest gossip on BFT consensus" (2018,
arXiv 1807.04938). Comments of the form "line N" refer to the line numbers of that pseudocode.
The core decides one opaque value (the application's encoded checkpoint cut) per height among
the genesis council: n validators of equal power, of which at most f = floor((n-1)/3) are
faulty. A quorum ("2f+1" in the paper) is the smallest q with q > 2n/3; the round-skip
threshold ("f+1", line 55) is n - q + 1, the smallest count that must include a correct node.

Deviations from the pseudocode, each needed because the core is driven from outside:
- getValue() (line 18) and valid(v) (lines 23, 29, 36, 50) are asynchronous: the core emits
  `ValueRequested` / `ValidationRequested` and the application answers with `provide_value` /
  `report_validity`. Until valid(v) is known the core does not prevote for v (the propose
  timeout still applies), except that it prevotes nil at once when its lock alone rules v out.
- The proposer also schedules OnTimeoutPropose (line 21 only does it for the others), so a
  proposer whose application never answers still moves on. A nil prevote is always safe.
- A decision does not move to height h+1 by itself (line 52): the application applies the
  value first and then calls `start_height(h + 1)`. Messages for h+1 that arrive meanwhile are
  kept in a bounded book.
- The paper assumes gossip that eventually delivers every message. Lost messages are made up
  for by re-broadcasting our own messages of the current height at a fixed interval, and
  lagging nodes catch up through signed checkpoint bundles (`receive_bundle`).
- A validator's conflicting second vote in a slot is evidence, and counts only for nil or a
  value proposed at this height (see `_RoundBook`); the paper counts every sender per value.
- Observers (no key pair) run the same rules without broadcasting and take every value as
  valid: a value with a quorum of precommits was checked by at least one correct validator.
- The paper's processes never crash. A validator that restarts must not sign a second, different
  message for a (height, round, type) it signed before the crash, and must keep its lock. Like
  CometBFT's privval "last sign state", `signing_state()` is the bytes the shell makes durable
  before any message it signed leaves the node, and `restore_signing_state` resumes from them
  at the same height, round and step, with the same lock and the same signed messages. A shell
  that rewrites the state at every step persists `signing_state_compact()` instead (the kept
  precommits named by id) and each kept precommit once, as a record of its own
  (`take_unsaved_precommits`, before the state naming it; `restore_precommits` reads both).
- Epochs (not in the paper): a council rollback certificate (protocol/rollback.py) ends epoch e
  at a final height H and starts epoch e+1 at H+1. Every message body, bundle and signing state
  names its epoch, so a core runs in one epoch, refuses messages and bundles of any other one
  (`WrongEpochError`), and its double-sign guard is keyed by (epoch, height, round): what a
  validator signed or locked on in epoch e never binds it in epoch e+1 (`enter_epoch`).

The package: `messages` (the signed messages, checkpoint bundles and evidence, their codecs,
limits and errors), `signing_state` (the last sign state and its compact form), `machine`
(the vote books and the `Tendermint` core) and `events` (what the core emits). Everything is
re-exported here.
"""

from __future__ import annotations

from .events import (
    Decided,
    EquivocationDetected,
    Event,
    ForeignOwnSignature,
    MessageRejected,
    RoundAdvanced,
    ValidationRequested,
    ValueRequested,
)
from .machine import Tendermint
from .messages import (
    CONSENSUS_BUNDLES_KEPT_MAX,
    CONSENSUS_EVENTS_QUEUED_MAX,
    CONSENSUS_HEIGHT_MAX,
    CONSENSUS_MESSAGE_OVERHEAD_BYTES_MAX,
    CONSENSUS_REBROADCAST_INTERVAL_S,
    CONSENSUS_ROUND_MAX,
    CONSENSUS_RULE_FIRINGS_PER_INPUT_MAX,
    CONSENSUS_VALUE_SIZE_BYTES_MAX,
    DOMAIN_TAG,
    EVIDENCE_SIZE_BYTES_MAX,
    BundleDuplicateValidatorError,
    BundleError,
    BundleQuorumError,
    BundleSignatureError,
    BundleUnknownValidatorError,
    CheckpointBundle,
    ConsensusConfig,
    ConsensusMessage,
    ConsensusMessageError,
    Evidence,
    EvidenceError,
    EvidenceNotConflictingError,
    EvidenceSignatureError,
    EvidenceUnknownValidatorError,
    MalformedBundleError,
    MalformedEvidenceError,
    MessageKind,
    NotProposerError,
    TimeoutKind,
    UnknownValidatorError,
    WrongEpochError,
    check_quorum_signers,
    decode_message,
    quorum_size,
    round_skip_size,
    sign_proposal,
    sign_vote,
    signing_bytes,
    verify_bundle,
    verify_evidence,
    verify_message_signature,
)
from .signing_state import (
    KEPT_PRECOMMIT_SIZE_BYTES_MAX,
    SIGNING_STATE_COMPACT_SIZE_BYTES_MAX,
    SIGNING_STATE_MESSAGES_MAX,
    SIGNING_STATE_PRECOMMIT_IDS_MAX,
    SIGNING_STATE_PRECOMMITS_MAX,
    SIGNING_STATE_ROUNDS_KEPT,
    SIGNING_STATE_SIZE_BYTES_MAX,
    KeptPrecommit,
    SigningState,
    SigningStateEpochError,
    SigningStateError,
    SigningStateWithoutEpochError,
    decode_kept_precommit,
    decode_signing_state,
    encode_kept_precommit,
    kept_precommit_id,
    record_signed,
    sign_allowed,
    signing_state_precommit_ids,
)

__all__ = [
    "CONSENSUS_BUNDLES_KEPT_MAX",
    "CONSENSUS_EVENTS_QUEUED_MAX",
    "CONSENSUS_HEIGHT_MAX",
    "CONSENSUS_MESSAGE_OVERHEAD_BYTES_MAX",
    "CONSENSUS_REBROADCAST_INTERVAL_S",
    "CONSENSUS_ROUND_MAX",
    "CONSENSUS_RULE_FIRINGS_PER_INPUT_MAX",
    "CONSENSUS_VALUE_SIZE_BYTES_MAX",
    "DOMAIN_TAG",
    "EVIDENCE_SIZE_BYTES_MAX",
    "KEPT_PRECOMMIT_SIZE_BYTES_MAX",
    "SIGNING_STATE_COMPACT_SIZE_BYTES_MAX",
    "SIGNING_STATE_MESSAGES_MAX",
    "SIGNING_STATE_PRECOMMITS_MAX",
    "SIGNING_STATE_PRECOMMIT_IDS_MAX",
    "SIGNING_STATE_ROUNDS_KEPT",
    "SIGNING_STATE_SIZE_BYTES_MAX",
    "BundleDuplicateValidatorError",
    "BundleError",
    "BundleQuorumError",
    "BundleSignatureError",
    "BundleUnknownValidatorError",
    "CheckpointBundle",
    "ConsensusConfig",
    "ConsensusMessage",
    "ConsensusMessageError",
    "Decided",
    "EquivocationDetected",
    "Event",
    "Evidence",
    "EvidenceError",
    "EvidenceNotConflictingError",
    "EvidenceSignatureError",
    "EvidenceUnknownValidatorError",
    "ForeignOwnSignature",
    "KeptPrecommit",
    "MalformedBundleError",
    "MalformedEvidenceError",
    "MessageKind",
    "MessageRejected",
    "NotProposerError",
    "RoundAdvanced",
    "SigningState",
    "SigningStateEpochError",
    "SigningStateError",
    "SigningStateWithoutEpochError",
    "Tendermint",
    "TimeoutKind",
    "UnknownValidatorError",
    "ValidationRequested",
    "ValueRequested",
    "WrongEpochError",
    "check_quorum_signers",
    "decode_kept_precommit",
    "decode_message",
    "decode_signing_state",
    "encode_kept_precommit",
    "kept_precommit_id",
    "quorum_size",
    "record_signed",
    "round_skip_size",
    "sign_allowed",
    "sign_proposal",
    "sign_vote",
    "signing_bytes",
    "signing_state_precommit_ids",
    "verify_bundle",
    "verify_evidence",
    "verify_message_signature",
]
