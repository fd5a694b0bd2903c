"""The daemon honours the core's durability-before-send contract (runtime/driver.py's
HeldFrames): a frame leaves only once the write it names is durable, in order."""

from __future__ import annotations

from swarmd.node.runtime.driver import HeldFrames
from swarmd.protocol.limits import HELD_FRAMES_MAX
from swarmd.protocol.node_core import OutgoingFrame


def frame(label: str, after_write: int) -> OutgoingFrame:
    return OutgoingFrame(b"peer", label.encode(), False, after_write)


def labels(frames: list[OutgoingFrame]) -> list[str]:
    return [out.frame.decode() for out in frames]


def test_frames_wait_for_their_write_and_never_overtake() -> None:
    sent: list[OutgoingFrame] = []
    held = HeldFrames(sent.extend)
    held.offer([frame("free", 0)])
    assert labels(sent) == ["free"]
    held.offer([frame("vote", 2), frame("vote 2", 2)])
    held.offer([frame("relay", 0)])  # waits for nothing, but must not overtake the votes
    assert labels(sent) == ["free"] and len(held) == 3
    held.write_done(1, ok=True)  # an older write: not the one the votes need
    assert labels(sent) == ["free"]
    held.write_done(2, ok=True)
    assert labels(sent) == ["free", "vote", "vote 2", "relay"] and len(held) == 0
    held.offer([frame("late", 2)])  # its write is durable already
    assert labels(sent)[-1] == "late"


def test_a_later_durable_write_releases_frames_of_an_earlier_one() -> None:
    sent: list[OutgoingFrame] = []
    held = HeldFrames(sent.extend)
    held.offer([frame("a", 3)])
    held.offer([frame("b", 5)])
    held.write_done(5, ok=True)  # the committer writes in order: 3 is durable too
    assert labels(sent) == ["a", "b"]


def test_frames_waiting_on_a_failed_write_are_dropped() -> None:
    sent: list[OutgoingFrame] = []
    held = HeldFrames(sent.extend)
    held.offer([frame("vote", 4), frame("vote 2", 4)])
    held.offer([frame("next", 6)])
    held.write_done(4, ok=False)
    assert sent == [] and held.dropped == 2 and len(held) == 1
    held.write_done(6, ok=True)  # the core handed its state over again: this one is stored
    assert labels(sent) == ["next"]


def test_past_held_frames_max_the_oldest_held_frames_are_dropped() -> None:
    assert HeldFrames(print).held_max == HELD_FRAMES_MAX
    sent: list[OutgoingFrame] = []
    held = HeldFrames(sent.extend, held_max=3)
    held.offer([frame("a", 1), frame("b", 1)])
    held.offer([frame("c", 2)])
    assert len(held) == 3 and held.dropped == 0  # at the bound: all kept
    held.offer([frame("d", 2)])
    assert len(held) == 2 and held.dropped == 2  # the oldest batch went, never sent
    held.write_done(2, ok=True)
    assert labels(sent) == ["c", "d"]
