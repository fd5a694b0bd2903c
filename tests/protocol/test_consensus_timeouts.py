"""The default Tendermint timeouts of protocol/limits.py reached, each at its edge: a step
times out exactly CONSENSUS_TIMEOUT_<STEP>_S (+ round x CONSENSUS_TIMEOUT_DELTA_S) after it
started waiting, not a millisecond sooner."""

from __future__ import annotations

from swarmd.protocol.consensus import MessageKind
from swarmd.protocol.limits import (
    CONSENSUS_TIMEOUT_DELTA_S,
    CONSENSUS_TIMEOUT_PRECOMMIT_S,
    CONSENSUS_TIMEOUT_PREVOTE_S,
    CONSENSUS_TIMEOUT_PROPOSE_S,
)

from .test_consensus import Bench

EARLY_S = 0.001
PREVOTE, PRECOMMIT = MessageKind.PREVOTE, MessageKind.PRECOMMIT


def test_each_step_times_out_after_its_default_timeout() -> None:
    bench = Bench.create()  # the default ConsensusConfig; validator 0 proposes round 0
    bench.advance_to(CONSENSUS_TIMEOUT_PROPOSE_S - EARLY_S)
    assert bench.my_votes(PREVOTE, 0) == []
    bench.advance_to(CONSENSUS_TIMEOUT_PROPOSE_S)
    assert bench.my_votes(PREVOTE, 0) == [None]  # no proposal in time
    # A late proposal and split prevotes: a quorum of prevotes, but for no single value.
    bench.propose(0, b"cut v")
    bench.vote(PREVOTE, 0, b"cut v", [1])
    bench.vote(PREVOTE, 0, None, [0])
    waiting = bench.now
    bench.advance_to(waiting + CONSENSUS_TIMEOUT_PREVOTE_S - EARLY_S)
    assert bench.my_votes(PRECOMMIT, 0) == []
    bench.advance_to(waiting + CONSENSUS_TIMEOUT_PREVOTE_S)
    assert bench.my_votes(PRECOMMIT, 0) == [None]
    # Split precommits: the round ends after the precommit timeout.
    bench.vote(PRECOMMIT, 0, b"cut v", [1])
    bench.vote(PRECOMMIT, 0, None, [0])
    waiting = bench.now
    bench.advance_to(waiting + CONSENSUS_TIMEOUT_PRECOMMIT_S - EARLY_S)
    assert bench.core.round == 0
    bench.advance_to(waiting + CONSENSUS_TIMEOUT_PRECOMMIT_S)
    assert bench.core.round == 1
    # Round 1 waits one delta longer for its proposal.
    started = bench.now
    bench.advance_to(started + CONSENSUS_TIMEOUT_PROPOSE_S + CONSENSUS_TIMEOUT_DELTA_S - EARLY_S)
    assert bench.my_votes(PREVOTE, 1) == []
    bench.advance_to(started + CONSENSUS_TIMEOUT_PROPOSE_S + CONSENSUS_TIMEOUT_DELTA_S)
    assert bench.my_votes(PREVOTE, 1) == [None]
