"""The bounds limits.py names: one heads bound, reached by a cut at and just over it."""

from __future__ import annotations

import pytest

from swarmd.protocol import checkpoint, limits
from swarmd.protocol.checkpoint import Cut, CutDecodeError
from swarmd.protocol.codes import RejectCode


def _cut(head_count: int) -> Cut:
    heads = tuple(
        (index.to_bytes(limits.PUBLIC_KEY_SIZE_BYTES, "big"), 1, bytes(limits.HASH_SIZE_BYTES))
        for index in range(head_count)
    )
    return Cut(b"", 1, heads, bytes(limits.HASH_SIZE_BYTES), limits.CUT_TIME_MS_MAX)


def test_a_cut_of_cut_heads_max_heads_decodes() -> None:
    cut = _cut(limits.CUT_HEADS_MAX)
    assert len(cut.encode()) <= limits.ENCODED_VALUE_SIZE_BYTES_MAX
    assert Cut.decode(cut.encode()) == cut


def test_a_cut_over_cut_heads_max_is_malformed() -> None:
    with pytest.raises(CutDecodeError) as raised:
        Cut.decode(_cut(limits.CUT_HEADS_MAX + 1).encode())
    assert raised.value.code == RejectCode.CUT_MALFORMED


def test_the_heads_bound_is_one_name() -> None:
    assert checkpoint.CUT_HEADS_MAX == limits.CUT_HEADS_MAX == 2_000
    # The old contradicting name is gone; the ops trigger has its own ceiling.
    assert not hasattr(limits, "CHECKPOINT_HEADS_MAX")
    assert limits.CHECKPOINT_OPS_TRIGGER <= limits.CHECKPOINT_OPS_TRIGGER_MAX
    assert not hasattr(limits, "GOSSIP_SEEN_IDS_MAX")
