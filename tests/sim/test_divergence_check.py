"""root-divergence: the victim must halt at the first final height whose state is not the
agreed one, checked on its records re-hashed, not on the tree it keeps.

Seeds 799, 851 and 955 once failed "halted only at height H+2/H+3, not within one": each
corrupted the victim while it was at the precommit step of H+1 with the cut of H+1 already
derived (from the uncorrupted state). Finalizing H+1 merged that derivation over the final
state, rewriting the corrupted record: the final state at H+1 was the agreed one (nothing to
detect). The scenario's corruption of the provisional state's own copy reached a final state
at H+2 or H+3, where the node halted. The check now asks whether any height finalized before
the halt held a state that is not the agreed one, and still fails one that did.
"""

from __future__ import annotations

import pytest

from swarmd.protocol import crypto
from swarmd.protocol.ledger.state import LedgerState
from swarmd.protocol.node_core import CheckpointFinalized
from swarmd.protocol.sim import scenarios
from swarmd.protocol.sim.scenarios.divergence import late_halts, rehashed_root
from swarmd.protocol.sim.swarm import node_keypair

AGREED = crypto.sha256(b"the agreed root")
WHERE = "node 0 (corrupted at final height 8)"


@pytest.mark.parametrize("seed", [799, 851, 955])
def test_seeds_corrupted_mid_decision_pass(seed: int) -> None:
    result = scenarios.run_scenario("root-divergence", seed)
    assert result.ok, scenarios.format_failure(result)


def _finalized(height: int) -> CheckpointFinalized:
    return CheckpointFinalized(height, crypto.sha256(bytes([height])), AGREED, 1, 0.1)


def test_a_height_finalized_on_the_agreed_state_is_no_late_halt() -> None:
    assert late_halts(WHERE, 10, [_finalized(9)], {9: AGREED}) == []


def test_a_height_finalized_on_a_corrupted_state_is_a_late_halt() -> None:
    bad = crypto.sha256(b"a corrupted state")
    for rehashed in ({9: bad}, {9: None}):
        failures = late_halts(WHERE, 10, [_finalized(9)], rehashed)
        assert failures == [
            f"{WHERE}: finalized height 9 on a state that is not the agreed one;"
            " halted only at height 10"
        ]


def _state() -> LedgerState:
    state = LedgerState()
    for index in range(3):
        state.credit(node_keypair(index).public_key, 10 + index)
    state.add_granted(33)
    return state


def test_rehash_sees_a_record_changed_under_the_tree() -> None:
    state = _state()
    root = state.root()
    assert rehashed_root(state) == root
    # A record changed with no dirty mark: the kept tree still shows the old root.
    state.accounts[node_keypair(1).public_key].balance += 7
    assert state.root() == root
    assert rehashed_root(state) != root
