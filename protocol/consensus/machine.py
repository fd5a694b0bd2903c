"""The Tendermint state machine (Algorithm 1 of the paper, see the package docstring): the vote
books of a height and the `Tendermint` core driven from outside; its outputs are events.py.

(Over 800 lines on purpose: `Tendermint` alone is ~760 lines of one state machine whose
rules (the paper's lines 22-64, the signing-state guard, epochs, catch-up by bundles) read and
change the same round state and refer to each other line by line; split across modules it
would need that state passed around or its private fields read from outside. Its codecs,
its signing state and its events already live apart.)"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from .. import crypto, limits
from ..errors import LocalProtocolError, RemoteProtocolError
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
from .messages import (
    CONSENSUS_BUNDLES_KEPT_MAX,
    CONSENSUS_EVENTS_QUEUED_MAX,
    CONSENSUS_HEIGHT_MAX,
    CONSENSUS_RULE_FIRINGS_PER_INPUT_MAX,
    CONSENSUS_VALUE_SIZE_BYTES_MAX,
    CheckpointBundle,
    ConsensusConfig,
    ConsensusMessage,
    Evidence,
    MessageKind,
    NotProposerError,
    TimeoutKind,
    UnknownValidatorError,
    WrongEpochError,
    _check_epoch,
    decode_message,
    quorum_size,
    round_skip_size,
    sign_proposal,
    sign_vote,
    verify_bundle,
    verify_message_signature,
)
from .signing_state import (
    SIGNING_STATE_ROUNDS_KEPT,
    KeptPrecommit,
    SigningState,
    SigningStateEpochError,
    SigningStateError,
    decode_kept_precommit,
    decode_signing_state,
    encode_kept_precommit,
    kept_precommit_id,
)

# --- the vote book ---------------------------------------------------------------------------


class _Step(enum.IntEnum):
    PROPOSE = 0
    PREVOTE = 1
    PRECOMMIT = 2


@dataclass
class _RoundBook:
    """Messages of one round, with per-value tallies of distinct validators.

    The first vote of a validator in a (type, round) slot always counts. A conflicting later
    vote is evidence, and it also counts (for its own value) when it names nil or a value
    proposed at this height: the paper counts messages from distinct senders per value, and
    a correct node that locked on v may hold an equivocator's vote for v that others saw
    second; not counting it there would leave the others unable to see the lock's POL
    (line 28) forever. Votes for ids that no proposal names are of no use to any rule and
    are not kept, which bounds the book.
    """

    proposal: ConsensusMessage | None = None
    prevotes: dict[bytes, dict[bytes | None, ConsensusMessage]] = field(default_factory=dict)
    precommits: dict[bytes, dict[bytes | None, ConsensusMessage]] = field(default_factory=dict)
    prevote_tally: dict[bytes | None, int] = field(default_factory=dict)
    precommit_tally: dict[bytes | None, int] = field(default_factory=dict)
    senders: set[bytes] = field(default_factory=set)

    def prevotes_for(self, value_id: bytes | None) -> int:
        return self.prevote_tally.get(value_id, 0)

    def precommits_for(self, value_id: bytes | None) -> int:
        return self.precommit_tally.get(value_id, 0)

    def votes_for(self, kind: MessageKind, value_id: bytes | None) -> list[ConsensusMessage]:
        slots = self.prevotes if kind is MessageKind.PREVOTE else self.precommits
        return [slot[value_id] for slot in slots.values() if value_id in slot]


@dataclass
class _HeightBook:
    """Messages of one height, for rounds up to the current one plus the future window."""

    height: int
    rounds: dict[int, _RoundBook] = field(default_factory=dict)
    proposal_value_ids: set[bytes] = field(default_factory=set)
    equivocations_reported: set[tuple[bytes, MessageKind, int]] = field(default_factory=set)

    def round_book(self, round: int) -> _RoundBook:
        book = self.rounds.get(round)
        if book is None:
            book = self.rounds[round] = _RoundBook()
        return book

    def add(self, message: ConsensusMessage) -> ConsensusMessage | None:
        """Count `message`; return the validator's earlier message of the slot on conflict."""
        book = self.round_book(message.round)
        if message.kind is MessageKind.PROPOSAL:
            if book.proposal is not None:
                return None if book.proposal.same_body(message) else book.proposal
            book.proposal = message
            assert message.value_id is not None
            self.proposal_value_ids.add(message.value_id)
            book.senders.add(message.validator)
            return None
        is_prevote = message.kind is MessageKind.PREVOTE
        slots = book.prevotes if is_prevote else book.precommits
        tally = book.prevote_tally if is_prevote else book.precommit_tally
        slot = slots.get(message.validator)
        if slot is None:
            slots[message.validator] = {message.value_id: message}
            tally[message.value_id] = tally.get(message.value_id, 0) + 1
            book.senders.add(message.validator)
            return None
        if message.value_id in slot:
            return None  # a duplicate
        earlier = next(iter(slot.values()))
        if message.value_id is None or message.value_id in self.proposal_value_ids:
            slot[message.value_id] = message
            tally[message.value_id] = tally.get(message.value_id, 0) + 1
        return earlier

    def proposals(self) -> list[ConsensusMessage]:
        return [book.proposal for book in self.rounds.values() if book.proposal is not None]


@dataclass
class _Timer:
    deadline: float
    kind: TimeoutKind
    height: int
    round: int


# --- the core --------------------------------------------------------------------------------


class Tendermint:
    """One node's consensus core: validator (with a key pair) or observer (without), running
    in one epoch at a time (`epoch`, 0 from genesis; `enter_epoch` after a rollback)."""

    def __init__(
        self,
        *,
        network_id: bytes,
        validators: list[bytes],
        keypair: crypto.KeyPair | None,
        config: ConsensusConfig | None = None,
        epoch: int = 0,
    ) -> None:
        if not isinstance(network_id, bytes) or len(network_id) != limits.HASH_SIZE_BYTES:
            raise LocalProtocolError("network_id must be 32 bytes")
        _check_epoch(epoch)
        if not 1 <= len(validators) <= limits.COUNCIL_SIZE_MAX:
            raise LocalProtocolError(f"council size must be 1..{limits.COUNCIL_SIZE_MAX}")
        if len(set(validators)) != len(validators):
            raise LocalProtocolError("validators must be distinct")
        for key in validators:
            try:
                crypto.check_public_key(key)
            except RemoteProtocolError as exc:
                raise LocalProtocolError(f"invalid validator key: {exc.message}") from exc
        if keypair is not None and keypair.public_key not in validators:
            raise LocalProtocolError("the key pair is not a validator; pass None to observe")
        self._network_id = network_id
        self._epoch = epoch
        self._validators = sorted(validators)
        self._validator_set = frozenset(validators)
        self._keypair = keypair
        self._config = config if config is not None else ConsensusConfig()
        self._quorum = quorum_size(len(validators))
        self._round_skip = round_skip_size(len(validators))
        self._events: deque[Event] = deque()
        self._rejections_dropped = 0
        #: Messages the algorithm asked to sign in a slot we had already signed differently;
        #: always 0 unless restored state and rules disagree (a bug a test should see).
        self.conflicting_signatures_refused = 0
        #: Set by `halt_signing`: the core then signs nothing more (until a restart), and
        #: counts the messages it withheld.
        self._signing_halted = False
        self.signatures_withheld = 0
        self._foreign_signature_height: int | None = None
        self._outbox: list[bytes] = []
        self._bundles: dict[int, CheckpointBundle] = {}
        self._height: int | None = None
        #: Our non-nil precommits of this epoch with their values, oldest first (bounded), and
        #: those of the epoch `enter_epoch` ended (see `old_precommits`).
        self._precommits_kept: list[KeptPrecommit] = []
        self._old_precommits: list[KeptPrecommit] = []
        #: Kept precommits whose records the shell has not been handed yet (oldest first).
        self._precommits_unsaved: list[KeptPrecommit] = []
        self._reset_height_state(0, _HeightBook(0))

    def _reset_height_state(self, height: int, book: _HeightBook) -> None:
        # Lines 2-9 and 53: the per-height variables and an empty message log.
        self._book = book
        self._next_book = _HeightBook(height + 1)
        self._round = 0
        self._step = _Step.PROPOSE
        self._decided = False
        self._locked_value: bytes | None = None
        self._locked_round = -1
        self._valid_value: bytes | None = None
        self._valid_round = -1
        self._validity: dict[bytes, bool] = {}
        self._validation_requested: set[bytes] = set()
        self._awaiting_value = False
        self._fired: set[tuple[int, int]] = set()  # (paper line, round) of fire-once rules
        self._timers: list[_Timer] = []
        self._own_messages: list[ConsensusMessage] = []
        # What we signed at this height, per (type, round): never sign a different body there.
        self._signed: dict[tuple[MessageKind, int], ConsensusMessage] = {}
        self._rebroadcast_at: float | None = None

    # --- read-only state -------------------------------------------------------------------

    @property
    def epoch(self) -> int:
        return self._epoch

    @property
    def height(self) -> int | None:
        return self._height

    @property
    def round(self) -> int:
        return self._round

    @property
    def step(self) -> str:
        """The step of the current round: "propose", "prevote" or "precommit"."""
        return self._step.name.lower()

    @property
    def decided(self) -> bool:
        return self._decided

    @property
    def quorum(self) -> int:
        return self._quorum

    @property
    def rejections_dropped(self) -> int:
        """Rejection events not queued because the event queue was full."""
        return self._rejections_dropped

    def proposer(self, height: int, round: int) -> bytes:
        """Round-robin over the validators sorted by key: index (height + round) mod n."""
        return self._validators[(height + round) % len(self._validators)]

    # --- inputs ----------------------------------------------------------------------------

    def start_height(self, height: int, now: float) -> None:
        """Start consensus for `height` (line 10, and line 54 once the app applied h-1)."""
        if type(height) is not int or not 0 <= height <= CONSENSUS_HEIGHT_MAX:
            raise LocalProtocolError("height out of range")
        if self._height is not None and height <= self._height:
            raise LocalProtocolError(f"height {height} is not above {self._height}")
        book = self._next_book if self._next_book.height == height else _HeightBook(height)
        self._height = height
        self._reset_height_state(height, book)
        if self._keypair is not None:
            self._rebroadcast_at = now + self._config.rebroadcast_interval_s
        self._start_round(0, now)
        for proposal in book.proposals():
            self._request_validation(proposal)
        self._run_rules(now)

    def enter_epoch(self, epoch: int) -> None:
        """Leave the current epoch for a later one (a rollback certificate was accepted).

        Everything of the old epoch goes: the height in progress, its lock and valid value,
        the message books, the kept bundles and any queued messages and events, except our
        last non-nil precommits with their values (`old_precommits`: the new epoch's
        settlement must list those above H, docs/PROTOCOL.md "Settlement"). No height
        runs until the application calls `start_height(H + 1)` for the certificate's height H,
        which may be at or below the heights the old epoch reached: the guard is keyed by
        (epoch, height, round), so nothing signed in the old epoch binds the new one.
        """
        _check_epoch(epoch)
        if epoch <= self._epoch:
            raise LocalProtocolError(f"epoch {epoch} is not after {self._epoch}")
        self._epoch = epoch
        self._height = None
        self._reset_height_state(0, _HeightBook(0))
        self._old_precommits, self._precommits_kept = self._precommits_kept, []
        self._bundles = {}
        self._outbox = []
        self._events.clear()

    def restore_signing_state(self, data: bytes, now: float) -> None:
        """Resume after a restart from `signing_state()` bytes made durable before the crash.

        The core continues at the state's height, round and step with the same lock and valid
        value, counts its own signed messages again and re-broadcasts them at once (the first
        timer), and never signs a different message for a (round, type) it already signed.
        Raises SigningStateError when `data` is not a signing state of our key on this network.

        A state of an earlier epoch binds nothing (a rollback ended that epoch): the core just
        starts the state's height afresh in its own epoch. A state of a later epoch raises
        SigningStateEpochError (the application lost a certificate it had entered).
        """
        if self._keypair is None:
            raise LocalProtocolError("an observer signs nothing and has no signing state")
        state = decode_signing_state(data, self._network_id, self._keypair.public_key)
        if state.epoch > self._epoch:
            raise SigningStateEpochError(
                f"signing state of epoch {state.epoch}, the core runs epoch {self._epoch}"
            )
        self._restore_precommits(state.old_precommits + state.precommits_kept, unsaved=True)
        if state.epoch < self._epoch:
            self.start_height(state.height, now)
            return
        if self._height is not None and state.height <= self._height:
            raise LocalProtocolError(f"height {state.height} is not above {self._height}")
        book = self._next_book if self._next_book.height == state.height else None
        self._height = state.height
        self._reset_height_state(state.height, book or _HeightBook(state.height))
        self._round, self._step = state.round, _Step(state.step)
        self._locked_value, self._locked_round = state.locked_value, state.locked_round
        self._valid_value, self._valid_round = state.valid_value, state.valid_round
        for value in (state.locked_value, state.valid_value):
            if value is not None:  # we checked valid(v) before locking on v or keeping it
                self._validity[crypto.sha256(value)] = True
        for message in state.messages:
            self._book.add(message)
            self._own_messages.append(message)
            self._signed[(message.kind, message.round)] = message
            if message.kind is MessageKind.PROPOSAL and message.value_id is not None:
                self._validity[message.value_id] = True  # only valid values are proposed
        self._rebroadcast_at = now
        if self._step is _Step.PROPOSE:
            self._resume_propose_step(now)
        for proposal in self._book.proposals():
            self._request_validation(proposal)
        self._run_rules(now)

    def restore_precommits(self, data: bytes, records: Sequence[bytes] = ()) -> None:
        """At start, before any height runs: take back the kept precommits of a signing state
        (raises SigningStateError like `restore_signing_state`), so that a member restarted
        between a rollback certificate and the settlement still shows and requires its
        precommits above H. Those of our epoch stay ours, those of the epoch before it become
        `old_precommits`; any other is of no settlement any more. Ones already held are not
        added twice (a shell may hand the same state over twice).

        A compact state (`signing_state_compact()`) names them by id: each one's record
        (`take_unsaved_precommits`) must be among `records`, else SigningStateError; a record
        it does not name is ignored (one written before a state a crash lost: its precommit
        never left). A state with the values inside (`signing_state()`, the format before
        branch sigstate) hands them to `take_unsaved_precommits` once more, so the shell
        writes their records before a compact state replaces it."""
        if self._keypair is None:
            raise LocalProtocolError("an observer signs nothing and has no signing state")
        state = decode_signing_state(data, self._network_id, self._keypair.public_key)
        if state.precommit_ids:
            self._restore_precommits(self._named_records(state.precommit_ids, records))
        else:
            pairs = state.old_precommits + state.precommits_kept
            self._restore_precommits(pairs, unsaved=True)

    def _named_records(
        self, ids: tuple[bytes, ...], records: Sequence[bytes]
    ) -> tuple[KeptPrecommit, ...]:
        assert self._keypair is not None
        by_id: dict[bytes, KeptPrecommit] = {}
        for data in records:
            pair = decode_kept_precommit(data, self._network_id, self._keypair.public_key)
            by_id[kept_precommit_id(pair[0])] = pair
        missing = sum(precommit_id not in by_id for precommit_id in ids)
        if missing:
            raise SigningStateError(
                f"signing state: {missing} of its {len(ids)} kept precommits have no record"
            )
        return tuple(by_id[precommit_id] for precommit_id in ids)

    def _restore_precommits(
        self, pairs: tuple[KeptPrecommit, ...], *, unsaved: bool = False
    ) -> None:
        restored = ((self._precommits_kept, self._epoch), (self._old_precommits, self._epoch - 1))
        for kept, epoch in restored:
            held = {message.encode() for message, _ in kept}
            for message, value in pairs:
                if message.epoch == epoch and message.encode() not in held:
                    held.add(message.encode())
                    kept.append((message, value))
                    if unsaved:
                        self._precommits_unsaved.append((message, value))
            kept.sort(key=lambda pair: (pair[0].height, pair[0].round))
            del kept[: -limits.SETTLEMENT_PRECOMMITS_KEPT_MAX]

    def _resume_propose_step(self, now: float) -> None:
        """StartRound (lines 14-21) again for a round restored in its propose step, except
        that a proposal already signed in this round is kept, never replaced."""
        assert self._keypair is not None and self._height is not None
        is_proposer = self.proposer(self._height, self._round) == self._keypair.public_key
        if is_proposer and (MessageKind.PROPOSAL, self._round) not in self._signed:
            if self._valid_value is not None:
                self._broadcast_proposal(self._valid_value, self._valid_round)
            else:
                self._awaiting_value = True
                self._events.append(ValueRequested(self._height, self._round))
        self._schedule(TimeoutKind.PROPOSE, now)

    def receive_message(self, data: bytes, now: float) -> None:
        """Take one encoded consensus message from a peer; problems become events."""
        try:
            message = decode_message(data)
            self._admit(message)
        except RemoteProtocolError as exc:
            self._reject(exc)
            return
        self._run_rules(now)

    def receive_bundle(self, data: bytes, now: float) -> None:
        """Take a checkpoint bundle; one for the current height decides it at once."""
        try:
            bundle = CheckpointBundle.decode(data)
            if bundle.epoch != self._epoch:
                raise WrongEpochError(f"bundle of epoch {bundle.epoch}, not {self._epoch}")
            verify_bundle(bundle, self._network_id, self._validators)
        except RemoteProtocolError as exc:
            self._reject(exc)
            return
        if self._height is None or bundle.height != self._height or self._decided:
            return
        self._decide(bundle)

    def provide_value(self, height: int, round: int, value: bytes, now: float) -> None:
        """The app's answer to ValueRequested; an answer for a past round is ignored."""
        if not isinstance(value, bytes) or len(value) > CONSENSUS_VALUE_SIZE_BYTES_MAX:
            raise LocalProtocolError("value must be bytes within CONSENSUS_VALUE_SIZE_BYTES_MAX")
        current = (height, round) == (self._height, self._round)
        if not (current and self._awaiting_value and self._step is _Step.PROPOSE):
            return
        self._awaiting_value = False
        self._validity[crypto.sha256(value)] = True  # our own getValue() is valid
        self._broadcast_proposal(value, -1)  # line 19, with validRound_p = -1 (line 15)
        self._run_rules(now)

    def report_validity(self, value_id: bytes, valid: bool, now: float) -> None:
        """The app's answer to ValidationRequested for a value of the current height."""
        if value_id not in self._validation_requested or value_id in self._validity:
            return
        self._validity[value_id] = bool(valid)
        self._run_rules(now)

    def handle_timer(self, now: float) -> None:
        """Run every timeout due at `now` (lines 57-67) and the re-broadcast."""
        due = sorted(
            (timer for timer in self._timers if timer.deadline <= now),
            key=lambda timer: timer.deadline,
        )
        for timer in due:
            if timer not in self._timers:
                continue  # a previous timeout started a new round and dropped it
            self._timers.remove(timer)
            self._on_timeout(timer, now)
            self._run_rules(now)
        if self._rebroadcast_at is not None and self._rebroadcast_at <= now:
            self._rebroadcast(now)

    def get_timer(self) -> float | None:
        deadlines = [timer.deadline for timer in self._timers]
        if self._rebroadcast_at is not None:
            deadlines.append(self._rebroadcast_at)
        return min(deadlines, default=None)

    # --- outputs ---------------------------------------------------------------------------

    def messages_to_send(self) -> list[bytes]:
        """Encoded signed messages to broadcast to every peer."""
        messages, self._outbox = self._outbox, []
        return messages

    @property
    def signing_halted(self) -> bool:
        return self._signing_halted

    def halt_signing(self) -> None:
        """Sign nothing more: proposals, prevotes and precommits are withheld (the rounds still
        advance by timeouts, as for a silent member). For a validator whose key another process
        uses: two signers of one key would equivocate. A restart resumes signing."""
        self._signing_halted = True

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def signing_state(self) -> bytes:
        """Canonical bytes to make durable before any message in `messages_to_send()` is sent,
        and to pass to `restore_signing_state` after a restart (see the module docstring).
        They carry the kept precommits with their values: a shell that writes the state at
        every step persists `signing_state_compact()` and the precommits' records instead."""
        return self._signing_state().encode()

    def signing_state_compact(self) -> bytes:
        """`signing_state()` with the kept precommits named by id (`kept_precommit_ids`), at
        most SIGNING_STATE_COMPACT_SIZE_BYTES_MAX bytes whatever their values weigh. Make
        durable, in this order, the records of `take_unsaved_precommits()` and then these
        bytes before any message in `messages_to_send()` is sent; after a restart pass both
        to `restore_precommits` (and the state to `restore_signing_state`)."""
        return self._signing_state().encode_compact()

    def kept_precommit_ids(self) -> tuple[bytes, ...]:
        """The ids `signing_state_compact()` names: the ended epoch's kept precommits, then
        this epoch's, oldest first. A record of any other is no longer needed."""
        kept = self._old_precommits + self._precommits_kept
        return tuple(kept_precommit_id(message) for message, _ in kept)

    def take_unsaved_precommits(self) -> list[tuple[bytes, bytes]]:
        """The kept precommits not handed over yet, as (id, record): each one once (it is new,
        or it came back from a state with the values inside), those still kept only."""
        unsaved, self._precommits_unsaved = self._precommits_unsaved, []
        kept = set(self.kept_precommit_ids())
        records = []
        for message, value in unsaved:
            precommit_id = kept_precommit_id(message)
            if precommit_id in kept:
                records.append((precommit_id, encode_kept_precommit(message, value)))
        return records

    def _signing_state(self) -> SigningState:
        if self._keypair is None or self._height is None:
            raise LocalProtocolError("only a validator with a started height has a signing state")
        oldest_round_kept = self._round - SIGNING_STATE_ROUNDS_KEPT + 1
        return SigningState(
            epoch=self._epoch,
            height=self._height,
            round=self._round,
            step=int(self._step),
            locked_round=self._locked_round,
            locked_value=self._locked_value,
            valid_round=self._valid_round,
            valid_value=self._valid_value,
            messages=tuple(m for m in self._own_messages if m.round >= oldest_round_kept),
            precommits_kept=tuple(self._precommits_kept),
            old_precommits=tuple(self._old_precommits),
        )

    def bundle_for(self, height: int) -> CheckpointBundle | None:
        """The bundle of a recently decided height, to help lagging peers catch up."""
        return self._bundles.get(height)

    # --- admission of peer messages ---------------------------------------------------------

    def _admit(self, message: ConsensusMessage) -> None:
        if self._height is None:
            return
        if message.epoch != self._epoch:
            raise WrongEpochError(f"message of epoch {message.epoch}, not {self._epoch}")
        if message.validator not in self._validator_set:
            raise UnknownValidatorError("message signed by a non-member")
        if message.height == self._height and not self._decided:
            book, round_limit = self._book, self._round + limits.CONSENSUS_FUTURE_ROUNDS_MAX
        elif message.height == self._height + 1:
            book, round_limit = self._next_book, limits.CONSENSUS_FUTURE_ROUNDS_MAX
        else:
            return  # an old height (nothing left to do) or too far ahead (catch up by bundles)
        if message.round > round_limit:
            return  # beyond the bounded window; the sender will re-broadcast it later
        if message.kind is MessageKind.PROPOSAL and message.validator != self.proposer(
            message.height, message.round
        ):
            raise NotProposerError("proposal from a validator that is not the proposer")
        verify_message_signature(message, self._network_id)
        if (
            self._keypair is not None
            and message.validator == self._keypair.public_key
            and book is self._book
        ):
            self._check_own_signature(message)
        earlier = book.add(message)
        if earlier is not None:
            self._report_equivocation(book, earlier, message)
        elif book is self._book and message.kind is MessageKind.PROPOSAL:
            self._request_validation(message)

    def _check_own_signature(self, message: ConsensusMessage) -> None:
        """`ForeignOwnSignature` for a message of our key at our height that we did not sign.
        Rounds before those the signing state keeps may hold messages signed before a restart,
        so they prove nothing; neither does the next height's book (a restarted core runs lower
        heights while its signing state waits: finality.py). One event per height."""
        signed = self._signed.get((message.kind, message.round))
        if signed is not None and signed.same_body(message):
            return
        if signed is None and message.round <= self._round - SIGNING_STATE_ROUNDS_KEPT:
            return
        if self._foreign_signature_height == self._height:
            return
        self._foreign_signature_height = self._height
        assert self._height is not None
        kind = message.kind.name.lower()
        self._events.append(ForeignOwnSignature(self._height, message.round, kind))

    def _report_equivocation(
        self, book: _HeightBook, earlier: ConsensusMessage, later: ConsensusMessage
    ) -> None:
        slot = (later.validator, later.kind, later.round)
        if slot in book.equivocations_reported:
            return  # one piece of evidence per slot is enough, and bounds the events
        book.equivocations_reported.add(slot)
        evidence = Evidence(first=earlier.without_value(), second=later.without_value())
        self._events.append(EquivocationDetected(evidence))

    def _request_validation(self, proposal: ConsensusMessage) -> None:
        assert proposal.value_id is not None and proposal.value is not None
        if self._keypair is None or proposal.value_id in self._validation_requested:
            return
        if proposal.value_id in self._validity:
            return  # our own proposal
        self._validation_requested.add(proposal.value_id)
        self._events.append(
            ValidationRequested(proposal.height, proposal.round, proposal.value_id, proposal.value)
        )

    def _reject(self, error: RemoteProtocolError) -> None:
        if len(self._events) >= CONSENSUS_EVENTS_QUEUED_MAX:
            self._rejections_dropped += 1
            return
        self._events.append(MessageRejected(error.code, error.message))

    # --- broadcasting our own messages -------------------------------------------------------

    def _send(self, message: ConsensusMessage) -> None:
        if self._signing_halted:
            self.signatures_withheld += 1
            return
        slot = (message.kind, message.round)
        signed = self._signed.get(slot)
        if signed is not None:
            # Signed before (in this run or before a restart): the same body is already in the
            # book and re-broadcast; a different one would be equivocation, so it never leaves.
            self.conflicting_signatures_refused += not signed.same_body(message)
            return
        self._signed[slot] = message
        if message.kind is MessageKind.PRECOMMIT and message.value_id is not None:
            self._keep_precommit(message)
        # Our own message counts like any other (the paper's broadcast includes ourselves).
        self._book.add(message)
        self._own_messages.append(message)
        self._outbox.append(message.encode())

    def _keep_precommit(self, message: ConsensusMessage) -> None:
        """Keep our precommit for a value with the value (the round's proposal holds it: a
        precommit follows a proposal and 2f+1 prevotes for its id, line 36)."""
        for proposal in self._book.proposals():
            if proposal.value_id == message.value_id and proposal.value is not None:
                self._precommits_kept.append((message, proposal.value))
                del self._precommits_kept[: -limits.SETTLEMENT_PRECOMMITS_KEPT_MAX]
                self._precommits_unsaved.append((message, proposal.value))
                return

    def old_precommits(self, above: int) -> list[tuple[ConsensusMessage, bytes]]:
        """Our non-nil precommits (signed, with their values) of the epoch the last
        `enter_epoch` ended, at heights above `above`, oldest first."""
        return [(m, value) for m, value in self._old_precommits if m.height > above]

    def _broadcast_proposal(self, value: bytes, valid_round: int) -> None:
        assert self._keypair is not None and self._height is not None
        self._send(
            sign_proposal(
                self._keypair,
                self._network_id,
                self._height,
                self._round,
                value,
                valid_round,
                epoch=self._epoch,
            )
        )

    def _broadcast_vote(self, kind: MessageKind, value_id: bytes | None) -> None:
        if self._keypair is None or self._height is None:
            return  # an observer follows the rules silently
        self._send(
            sign_vote(
                self._keypair,
                self._network_id,
                kind,
                self._height,
                self._round,
                value_id,
                epoch=self._epoch,
            )
        )

    def _rebroadcast(self, now: float) -> None:
        # Everything we sent at this height: earlier rounds matter too, since a peer still in
        # an earlier round may need our vote there to reach its quorum (lines 34, 44, 47), a
        # POL (line 28) or a decision (line 49). At most 3 messages per round.
        queued = set(self._outbox)
        for message in [*self._own_messages, *self._pol_messages()]:
            encoded = message.encode()
            if encoded not in queued:
                queued.add(encoded)
                self._outbox.append(encoded)
        self._rebroadcast_at = now + self._config.rebroadcast_interval_s

    def _pol_messages(self) -> list[ConsensusMessage]:
        """The prevotes behind our lock and our valid value, relayed for peers that missed
        them: the paper's gossip guarantees every correct node eventually receives what one
        correct node received, and lines 28-29 of peers depend on these POLs."""
        relayed: list[ConsensusMessage] = []
        for round, value in {
            self._locked_round: self._locked_value,
            self._valid_round: self._valid_value,
        }.items():
            book = self._book.rounds.get(round)
            if book is None or value is None:
                continue
            for vote in book.votes_for(MessageKind.PREVOTE, crypto.sha256(value)):
                if self._keypair is None or vote.validator != self._keypair.public_key:
                    relayed.append(vote)
        return relayed

    # --- the algorithm ----------------------------------------------------------------------

    def _start_round(self, round: int, now: float) -> None:
        """StartRound (lines 11-21)."""
        assert self._height is not None
        self._round = round  # line 12
        self._step = _Step.PROPOSE  # line 13
        self._awaiting_value = False
        self._timers = []  # every pending timeout names an older round: all would be no-ops
        if round > 0:
            self._events.append(RoundAdvanced(self._height, round))
        if self._keypair is not None and self.proposer(self._height, round) == (
            self._keypair.public_key
        ):  # line 14
            if self._valid_value is not None:  # lines 15-16
                self._broadcast_proposal(self._valid_value, self._valid_round)  # line 19
            else:  # line 18: getValue() is asked of the application
                self._awaiting_value = True
                self._events.append(ValueRequested(self._height, round))
        self._schedule(TimeoutKind.PROPOSE, now)  # line 21 (for the proposer too, see above)

    def _schedule(self, kind: TimeoutKind, now: float) -> None:
        assert self._height is not None
        deadline = now + self._config.timeout_s(kind, self._round)
        self._timers.append(_Timer(deadline, kind, self._height, self._round))

    def _on_timeout(self, timer: _Timer, now: float) -> None:
        if (timer.height, timer.round) != (self._height, self._round) or self._decided:
            return
        if timer.kind is TimeoutKind.PROPOSE and self._step is _Step.PROPOSE:  # lines 57-60
            self._broadcast_vote(MessageKind.PREVOTE, None)
            self._step = _Step.PREVOTE
        elif timer.kind is TimeoutKind.PREVOTE and self._step is _Step.PREVOTE:  # lines 61-64
            self._broadcast_vote(MessageKind.PRECOMMIT, None)
            self._step = _Step.PRECOMMIT
        elif timer.kind is TimeoutKind.PRECOMMIT:  # lines 65-67
            self._start_round(self._round + 1, now)

    def _is_valid(self, value_id: bytes) -> bool | None:
        """valid(v): True, False, or None while the application has not answered."""
        if self._keypair is None:
            return True  # observers: see the module docstring
        return self._validity.get(value_id)

    def _run_rules(self, now: float) -> None:
        """Fire upon-rules until none applies (the paper runs them atomically)."""
        for _ in range(CONSENSUS_RULE_FIRINGS_PER_INPUT_MAX):
            if self._height is None or self._decided:
                return
            fired = (
                self._try_decide()
                or self._try_round_skip(now)
                or self._try_prevote()
                or self._try_schedule_prevote_timeout(now)
                or self._try_precommit_value()
                or self._try_precommit_nil()
                or self._try_schedule_precommit_timeout(now)
            )
            if not fired:
                return

    def _try_decide(self) -> bool:
        """Line 49: a proposal and 2f+1 precommits for its id, in any round."""
        for round, book in self._book.rounds.items():
            proposal = book.proposal
            if proposal is None or book.precommits_for(proposal.value_id) < self._quorum:
                continue
            assert proposal.value_id is not None and proposal.value is not None
            if self._is_valid(proposal.value_id) is not True:  # line 50
                continue
            precommits = sorted(
                (vote.validator, vote.signature)
                for vote in book.votes_for(MessageKind.PRECOMMIT, proposal.value_id)
            )
            assert self._height is not None
            self._decide(
                CheckpointBundle(
                    self._height, round, proposal.value, tuple(precommits), epoch=self._epoch
                )
            )
            return True
        return False

    def _decide(self, bundle: CheckpointBundle) -> None:
        """Lines 51-53; the move to the next height waits for `start_height` (see above)."""
        self._decided = True
        self._timers = []
        self._rebroadcast_at = None
        self._bundles[bundle.height] = bundle
        while len(self._bundles) > CONSENSUS_BUNDLES_KEPT_MAX:
            del self._bundles[min(self._bundles)]
        self._events.append(Decided(bundle.height, bundle.round, bundle.value, bundle))

    def _try_round_skip(self, now: float) -> bool:
        """Line 55: f+1 senders of any message in a higher round make us join that round."""
        higher = [
            round
            for round, book in self._book.rounds.items()
            if round > self._round and len(book.senders) >= self._round_skip
        ]
        if not higher:
            return False
        self._start_round(max(higher), now)  # line 56
        return True

    def _try_prevote(self) -> bool:
        """Lines 22-27 (validRound -1) and 28-33 (a proposal backed by a POL in round vr)."""
        book = self._book.rounds.get(self._round)
        if self._step is not _Step.PROPOSE or book is None or book.proposal is None:
            return False
        proposal = book.proposal
        value_id, valid_round = proposal.value_id, proposal.valid_round
        assert value_id is not None
        if valid_round == -1:  # line 22
            lock_allows = self._locked_round == -1 or self._locked_value_id() == value_id
        else:  # line 28: 0 <= vr < round_p was checked when the message was parsed
            pol_book = self._book.rounds.get(valid_round)
            if pol_book is None or pol_book.prevotes_for(value_id) < self._quorum:
                return False
            lock_allows = self._locked_round <= valid_round or self._locked_value_id() == value_id
        validity = self._is_valid(value_id)
        if lock_allows and validity is None:
            return False  # wait for valid(v); the propose timeout still runs
        vote = value_id if lock_allows and validity else None  # lines 23-26 / 29-32
        self._broadcast_vote(MessageKind.PREVOTE, vote)
        self._step = _Step.PREVOTE  # lines 27 / 33
        return True

    def _locked_value_id(self) -> bytes | None:
        return None if self._locked_value is None else crypto.sha256(self._locked_value)

    def _try_schedule_prevote_timeout(self, now: float) -> bool:
        """Line 34: 2f+1 prevotes of any kind, for the first time in this round."""
        book = self._book.rounds.get(self._round)
        if self._step is not _Step.PREVOTE or book is None or (34, self._round) in self._fired:
            return False
        if len(book.prevotes) < self._quorum:
            return False
        self._fired.add((34, self._round))
        self._schedule(TimeoutKind.PREVOTE, now)  # line 35
        return True

    def _try_precommit_value(self) -> bool:
        """Line 36: the proposal and 2f+1 prevotes for it, for the first time in this round."""
        book = self._book.rounds.get(self._round)
        if self._step < _Step.PREVOTE or book is None or book.proposal is None:
            return False
        proposal = book.proposal
        assert proposal.value_id is not None and proposal.value is not None
        if (36, self._round) in self._fired or book.prevotes_for(proposal.value_id) < self._quorum:
            return False
        if self._is_valid(proposal.value_id) is not True:
            return False
        self._fired.add((36, self._round))
        if self._step is _Step.PREVOTE:  # line 37
            self._locked_value = proposal.value  # line 38
            self._locked_round = self._round  # line 39
            self._broadcast_vote(MessageKind.PRECOMMIT, proposal.value_id)  # line 40
            self._step = _Step.PRECOMMIT  # line 41
        self._valid_value = proposal.value  # line 42
        self._valid_round = self._round  # line 43
        return True

    def _try_precommit_nil(self) -> bool:
        """Line 44: 2f+1 nil prevotes while in the prevote step."""
        book = self._book.rounds.get(self._round)
        if self._step is not _Step.PREVOTE or book is None:
            return False
        if book.prevotes_for(None) < self._quorum:
            return False
        self._broadcast_vote(MessageKind.PRECOMMIT, None)  # line 45
        self._step = _Step.PRECOMMIT  # line 46
        return True

    def _try_schedule_precommit_timeout(self, now: float) -> bool:
        """Line 47: 2f+1 precommits of any kind, for the first time in this round."""
        book = self._book.rounds.get(self._round)
        if book is None or (47, self._round) in self._fired:
            return False
        if len(book.precommits) < self._quorum:
            return False
        self._fired.add((47, self._round))
        self._schedule(TimeoutKind.PRECOMMIT, now)  # line 48
        return True
