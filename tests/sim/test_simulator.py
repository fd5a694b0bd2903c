"""The simulator's network, persistence and fault model, driving real node cores."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import Enum, IntEnum

import pytest

from swarmd.protocol.node_core import (
    PeerMisbehaved,
    PersistCheckpoint,
    PersistConsensusState,
    PersistOps,
)
from swarmd.protocol.sim import scenarios
from swarmd.protocol.sim.errors import SimulationError
from swarmd.protocol.sim.network import NetworkConfig
from swarmd.protocol.sim.simulator import EVENT_HANDLERS, FaultKind, Simulation, canonical_repr


def make_swarm(seed: int = 1, **network: float) -> scenarios.Swarm:
    params = scenarios.ScenarioParams(network=NetworkConfig(**network))
    return scenarios.build_swarm("test", seed, params)


def core_of(swarm: scenarios.Swarm, index: int):  # type: ignore[no-untyped-def]
    core = swarm.sim.nodes[index].core
    assert core is not None
    return core


def test_gossip_reaches_every_node() -> None:
    swarm = make_swarm()
    op = swarm.workload.grant(swarm.workload.new_account(), node=0)
    swarm.sim.run_until(1.0)
    for index in range(5):
        assert core_of(swarm, index).ledger.status_of(op.op_id)[0] == "applied"
    assert op.op_id in swarm.workload.acked
    assert swarm.sim.frames_delivered > 0


def test_partition_blocks_frames_until_heal() -> None:
    swarm = make_swarm()
    sim = swarm.sim
    sim.partition([0, 1], [2, 3, 4])
    sim.run_until(0.1)
    op = swarm.workload.grant(swarm.workload.new_account(), node=0)
    sim.run_until(5.0)
    assert core_of(swarm, 1).ledger.status_of(op.op_id)[0] == "applied"
    for index in (2, 3, 4):
        assert core_of(swarm, index).ledger.status_of(op.op_id)[0] == "unknown"
    assert any(d.what == "peer_lost" for d in sim.detections)
    sim.heal()
    sim.run_until(15.0)
    assert scenarios.converged(swarm)
    assert core_of(swarm, 4).ledger.status_of(op.op_id)[0] == "applied"


def test_crash_before_commit_loses_the_write_and_the_ack() -> None:
    swarm = make_swarm(commit_delay_s=0.5)
    sim = swarm.sim
    sim.partition([0], [1, 2, 3, 4])  # nothing can leave node 0
    op = swarm.workload.grant(swarm.workload.new_account(), node=0)
    assert swarm.workload.submissions[op.op_id].outcome is not None
    sim.run_until(0.1)
    assert op.op_id not in sim.nodes[0].durable.op_ids
    sim.crash(0)
    sim.run_until(1.0)
    assert op.op_id not in sim.nodes[0].durable.op_ids
    assert op.op_id not in swarm.workload.acked
    sim.restart(0)
    assert core_of(swarm, 0).ledger.status_of(op.op_id)[0] == "unknown"


def test_committed_writes_survive_a_crash() -> None:
    swarm = make_swarm(commit_delay_s=0.05)
    sim = swarm.sim
    sim.partition([0], [1, 2, 3, 4])
    op = swarm.workload.grant(swarm.workload.new_account(), node=0)
    sim.run_until(0.2)
    assert op.op_id in swarm.workload.acked
    sim.crash(0)
    sim.restart(0)
    assert core_of(swarm, 0).ledger.status_of(op.op_id)[0] == "applied"


def test_wiped_node_rebuilds_from_peers() -> None:
    swarm = make_swarm()
    sim = swarm.sim
    ops = [swarm.workload.grant(swarm.workload.new_account()) for _ in range(5)]
    sim.run_until(3.0)
    sim.crash(2, wipe=True)
    sim.restart(2)
    assert core_of(swarm, 2).ledger.applied_ids() == []
    sim.run_until(20.0)
    assert scenarios.converged(swarm)
    assert all(core_of(swarm, 2).ledger.status_of(op.op_id)[0] == "applied" for op in ops)


def test_loss_and_duplication_are_applied() -> None:
    swarm = make_swarm(loss=0.3, duplicate=0.3)
    swarm.workload.grant(swarm.workload.new_account())
    swarm.sim.run_until(10.0)
    assert swarm.sim.frames_lost > 0
    assert scenarios.converged(swarm)


def test_clock_skew_is_per_node_and_bounded() -> None:
    swarm = make_swarm(clock_skew_s_max=0.5)
    skews = [node.skew_s for node in swarm.sim.nodes]
    assert len(set(skews)) == len(skews)
    assert all(abs(skew) <= 0.5 for skew in skews)


def test_invalid_network_config_is_refused() -> None:
    with pytest.raises(SimulationError):
        NetworkConfig(loss=1.0)
    with pytest.raises(SimulationError):
        NetworkConfig(delay_s=-1.0)


def test_duplicate_node_keys_are_refused() -> None:
    key = scenarios.node_keypair(0)
    genesis = scenarios.sim_genesis([key])
    with pytest.raises(SimulationError):
        Simulation(seed=1, keypairs=[key, key], factory=scenarios.node_core_factory(genesis))


@dataclass(frozen=True)
class _Sample:
    ids: frozenset[bytes]
    table: dict[str, int]


def test_canonical_repr_does_not_depend_on_set_or_dict_order() -> None:
    one = _Sample(frozenset({b"\x01", b"\x02", b"\x03"}), {"b": 2, "a": 1})
    two = _Sample(frozenset({b"\x03", b"\x01", b"\x02"}), {"a": 1, "b": 2})
    assert canonical_repr(one) == canonical_repr(two)
    assert canonical_repr(one) == "_Sample(ids={01,02,03},table={'a':1,'b':2})"


def _plain_canonical_repr(value: object) -> str:
    """The recursive definition the trace hashes were recorded with (before the type dispatch
    of trace.py): both must give the same text for every value."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        inner = ",".join(
            f"{f.name}={_plain_canonical_repr(getattr(value, f.name))}"
            for f in dataclasses.fields(value)
        )
        return f"{type(value).__name__}({inner})"
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex()
    if isinstance(value, Enum):
        return f"{type(value).__name__}.{value.name}"
    if isinstance(value, set | frozenset):
        return "{" + ",".join(sorted(_plain_canonical_repr(item) for item in value)) + "}"
    if isinstance(value, dict):
        items = sorted(
            (_plain_canonical_repr(k), _plain_canonical_repr(v)) for k, v in value.items()
        )
        return "{" + ",".join(f"{k}:{v}" for k, v in items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_plain_canonical_repr(item) for item in value) + "]"
    return repr(value)


class _Level(IntEnum):
    LOW = 1


@dataclass
class _Nested:
    inner: _Sample
    items: list[object]
    pair: tuple[int, float]
    flag: bool
    nothing: None = None


def test_canonical_repr_is_the_plain_recursive_definition() -> None:
    sample = _Sample(frozenset({b"\x02", b"\x01"}), {"z": 0})
    values: list[object] = [
        b"\x00\xff",
        bytearray(b"\x01"),
        1,
        -2.5,
        True,
        None,
        "text",
        _Level.LOW,
        FaultKind.CRASH,
        _Sample,  # a dataclass class, not an instance: its repr
        sample,
        _Nested(sample, [b"\x03", {1: b"", 2: [_Level.LOW]}, {3, 1}], (1, 0.1), False),
        PersistOps((b"\x01\x02",), write_id=3),
    ]
    for value in values:
        assert canonical_repr(value) == _plain_canonical_repr(value), value


def test_events_are_dispatched_by_class_not_by_name() -> None:
    # The table holds the core's event classes themselves: renaming one breaks the import of
    # the simulator instead of silently stopping persistence.
    assert all(isinstance(kind, type) for kind in EVENT_HANDLERS)
    for kind in (PersistOps, PersistCheckpoint, PersistConsensusState, PeerMisbehaved):
        assert kind in EVENT_HANDLERS
    impostor = type("PersistOps", (), {})
    assert impostor not in EVENT_HANDLERS
