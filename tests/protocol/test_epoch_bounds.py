"""EPOCH_HISTORY_CERTIFICATES_MAX reached with the default history: that many rollback
certificates are accepted, the next one is a typed refusal."""

from __future__ import annotations

import pytest

from swarmd.protocol.limits import EPOCH_HISTORY_CERTIFICATES_MAX
from swarmd.protocol.rollback import EpochHistory, EpochHistoryFullError

from .test_rollback_certificate import NETWORK_ID, VALIDATORS, body, certificate


@pytest.mark.slow  # about 6k signatures made and checked
def test_the_default_history_holds_epoch_history_certificates_max() -> None:
    history = EpochHistory(NETWORK_ID, VALIDATORS)
    for epoch in range(EPOCH_HISTORY_CERTIFICATES_MAX):
        rollback = body(from_epoch=epoch, height=100)
        history = history.accept(certificate(rollback), 100, rollback.checkpoint_id)
    assert history.current_epoch == EPOCH_HISTORY_CERTIFICATES_MAX
    last = body(from_epoch=EPOCH_HISTORY_CERTIFICATES_MAX, height=100)
    with pytest.raises(EpochHistoryFullError):
        history.accept(certificate(last), 100, last.checkpoint_id)
    restored = EpochHistory.restore(NETWORK_ID, VALIDATORS, list(history.certificates))
    assert restored.current_epoch == EPOCH_HISTORY_CERTIFICATES_MAX
