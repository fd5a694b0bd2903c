"""The simulator's virtual network: per-link connection state, partitions, delay, loss and
duplication (sans-I/O, deterministic).

The model is per link: a delay of ``base + uniform(0, jitter)`` (so frames reorder), a loss
probability and a duplication probability. A partition is a set of cut node pairs. Connections
are modelled like the real transports (WebRTC data channel, WebSocket): a link between two live
nodes that can reach each other is up; the application heartbeat notices a cut or a dead peer
after `NetworkConfig.detect_s`, and a healed link or restarted node is reconnected after
`NetworkConfig.reconnect_s`. A frame belongs to the connection (epoch) it was sent on and is
dropped if that connection is gone when it arrives.

`Links` holds the state and makes the random draws; `Simulation` (simulator.py) schedules what
they decide and drives the cores.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass

from .. import limits
from .errors import SimulationError


@dataclass(frozen=True)
class NetworkConfig:
    """The virtual network and the shell model. Times in virtual seconds."""

    delay_s: float = 0.010
    jitter_s: float = 0.020
    loss: float = 0.0
    duplicate: float = 0.0
    #: The application heartbeat declares a peer dead after this long without frames.
    detect_s: float = limits.HEARTBEAT_DEAD_AFTER_S
    #: A healed link or a restarted node is connected again after this long (signaling, ICE).
    reconnect_s: float = 0.5
    #: Delay between a Persist* event and its write being durable (frames waiting on the
    #: write are held that long; a crash in between loses both). 3 ms: an fsync'd SQLite
    #: group commit on an SSD. Never 0 in a scenario (tests/sim/test_durable_send.py): with 0
    #: the durability-before-send contract is never exercised.
    commit_delay_s: float = 0.003
    #: Each node's clock is off by uniform(-skew, +skew) seconds.
    clock_skew_s_max: float = 0.0

    def __post_init__(self) -> None:
        if not (0.0 <= self.loss < 1.0 and 0.0 <= self.duplicate < 1.0):
            raise SimulationError("loss and duplicate are probabilities below 1")
        if min(self.delay_s, self.jitter_s, self.detect_s, self.reconnect_s) < 0:
            raise SimulationError("delays must be non-negative")
        if self.commit_delay_s < 0 or self.clock_skew_s_max < 0:
            raise SimulationError("commit delay and skew must be non-negative")


@dataclass
class Link:
    up: bool = False
    epoch: int = 0
    #: One end crashed: the survivor still believes the link is up until its heartbeat
    #: notices, but nothing it sends arrives.
    broken: bool = False


def pair(a: int, b: int) -> tuple[int, int]:
    """The key of the undirected link between `a` and `b`."""
    return (a, b) if a < b else (b, a)


class Links:
    """Every link's connection state and the partition's cut pairs."""

    def __init__(self, config: NetworkConfig, rng: random.Random) -> None:
        self.config = config
        self.rng = rng
        self._links: dict[tuple[int, int], Link] = {}
        self.cut: set[tuple[int, int]] = set()

    def link(self, a: int, b: int) -> Link:
        key = pair(a, b)
        link = self._links.get(key)
        if link is None:
            link = self._links[key] = Link()
        return link

    def reachable(self, a: int, b: int) -> bool:
        return pair(a, b) not in self.cut

    def cut_between(self, groups: Iterable[Iterable[int]]) -> list[int]:
        """Cut every link between different groups; returns the nodes involved, sorted."""
        sets = [sorted(set(group)) for group in groups]
        involved: list[int] = []
        for i, group in enumerate(sets):
            involved.extend(group)
            for other in sets[i + 1 :]:
                for a in group:
                    for b in other:
                        self.cut.add(pair(a, b))
        return sorted(involved)

    def heal(self) -> list[tuple[int, int]]:
        """Remove every cut; returns the pairs that were cut, sorted."""
        cut, self.cut = sorted(self.cut), set()
        return cut

    def delays(self) -> list[float] | None:
        """The delivery delay of each copy of one frame sent on an up link (two when it is
        duplicated), or None when it is lost. Draws from the simulation's rng."""
        network, copies = self.config, 1
        if network.loss and self.rng.random() < network.loss:
            return None
        if network.duplicate and self.rng.random() < network.duplicate:
            copies = 2
        return [network.delay_s + self.rng.uniform(0.0, network.jitter_s) for _ in range(copies)]
