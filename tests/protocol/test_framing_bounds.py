"""FINISHED_MESSAGE_IDS_REMEMBERED_MAX reached at its edge: a decoder remembers exactly that
many finished message ids; one more moves the floor below which every id is discarded."""

from __future__ import annotations

from swarmd.protocol.framing import FrameDecoder
from swarmd.protocol.limits import FINISHED_MESSAGE_IDS_REMEMBERED_MAX

from .test_framing import P, deliver, fragment_frames, payload


def decoder_after_finishing(count: int) -> FrameDecoder:
    """A decoder that delivered fragmented messages with ids 1..count (never id 0)."""
    decoder = FrameDecoder()
    message = payload(P + 1, seed=7)
    for message_id in range(1, count + 1):
        assert deliver(decoder, fragment_frames(message, message_id)) == [message]
    return decoder


def test_finished_ids_are_remembered_up_to_the_bound() -> None:
    message = payload(P + 1, seed=8)
    # All remembered: id 0, never seen and below them all, is still a new message.
    full = decoder_after_finishing(FINISHED_MESSAGE_IDS_REMEMBERED_MAX)
    assert deliver(full, fragment_frames(message, 0)) == [message]
    # One more: id 1 is forgotten and becomes the floor, so id 0 is discarded as old.
    over = decoder_after_finishing(FINISHED_MESSAGE_IDS_REMEMBERED_MAX + 1)
    assert deliver(over, fragment_frames(message, 0)) == []
    assert over.reassemblies == 0
