"""RECONCILE_ROUNDS_MAX reached: the default session gives up after that many messages with a
typed error, and no session may be configured to allow more."""

from __future__ import annotations

import pytest

from swarmd.protocol.errors import LocalProtocolError
from swarmd.protocol.limits import RECONCILE_ROUNDS_MAX
from swarmd.protocol.reconcile import IdSet, Reconciler, ReconcileRoundsExceededError

from .test_reconcile import Session, make_ids


def test_a_session_stops_after_reconcile_rounds_max_messages() -> None:
    common = make_ids(2000)
    # Small messages and many differences: far more messages than the bound are needed.
    session = Session(common + make_ids(400, 1), common + make_ids(400, 2), message_size_max=2048)
    assert session.initiator.rounds_max == RECONCILE_ROUNDS_MAX
    with pytest.raises(ReconcileRoundsExceededError):
        session.run()
    assert session.initiator.rounds == session.responder.rounds == RECONCILE_ROUNDS_MAX


def test_no_session_allows_more_than_reconcile_rounds_max() -> None:
    assert Reconciler(IdSet(), rounds_max=RECONCILE_ROUNDS_MAX).rounds_max == RECONCILE_ROUNDS_MAX
    with pytest.raises(LocalProtocolError):
        Reconciler(IdSet(), rounds_max=RECONCILE_ROUNDS_MAX + 1)
