"""The simulator honours the core's durability-before-send contract: a frame leaves only
once the write it waits for is durable, and a crash loses both the uncommitted writes and the
frames waiting on them (protocol/node_core/events.py, protocol/sim/simulator.py)."""

from __future__ import annotations

from swarmd.protocol.node_core import EquivocationRecorded, PersistConsensusState
from swarmd.protocol.sim import scenarios
from swarmd.protocol.sim.network import NetworkConfig

COMMIT_DELAY_S = 0.2


def make_swarm(**network: float) -> scenarios.Swarm:
    params = scenarios.ScenarioParams(network=NetworkConfig(**network))
    return scenarios.build_swarm("test", 1, params)


def test_every_scenario_runs_with_a_commit_delay() -> None:
    for name in scenarios.scenario_names():
        _, params = scenarios.SCENARIOS[name]
        assert params.network.commit_delay_s > 0, name


def test_frames_after_a_signing_state_wait_for_its_commit() -> None:
    swarm = make_swarm(commit_delay_s=COMMIT_DELAY_S)
    sim = swarm.sim
    node = sim.nodes[0]
    seen: list[tuple[int, bytes]] = []
    checks: list[str] = []

    def while_uncommitted(write_id: int, data: bytes) -> None:
        # Same instant as the event: the state is not durable and its frames wait.
        assert node.durable.consensus_state != data
        assert node.held and all(out.after_write >= write_id for out in node.held)
        checks.append("held")

    def after_commit(write_id: int) -> None:
        assert node.durable_write >= write_id
        assert all(out.after_write > write_id for out in node.held)
        checks.append("released")

    def hook(index: int, event: object) -> None:
        if index == 0 and isinstance(event, PersistConsensusState) and not seen:
            seen.append((event.write_id, event.data))
            sim.at(sim.now, lambda: while_uncommitted(event.write_id, event.data))
            sim.at(sim.now + COMMIT_DELAY_S, lambda: after_commit(event.write_id))

    sim.event_hooks.append(hook)
    swarm.workload.grant(swarm.workload.new_account(), node=1)
    sim.run_until(3.0)
    assert seen and checks == ["held", "released"]


def test_a_crash_loses_the_uncommitted_state_and_the_frames_waiting_on_it() -> None:
    swarm = make_swarm(commit_delay_s=COMMIT_DELAY_S)
    sim = swarm.sim
    node = sim.nodes[0]
    crashed: list[bytes | None] = []  # the durable signing state when node 0 crashed
    armed: list[float] = []

    def crash_before_commit() -> None:
        assert node.held  # the votes of the state that is not durable yet
        sim.crash(0)
        assert not node.held and not node.uncommitted
        crashed.append(node.durable.consensus_state)
        sim.at(sim.now + 1.0, lambda: sim.restart(0))

    def hook(index: int, event: object) -> None:
        # Once, past the first heights (an older state is durable by then).
        late = sim.now > 1.0 and not armed
        if index == 0 and isinstance(event, PersistConsensusState) and late:
            armed.append(sim.now)
            sim.at(sim.now, crash_before_commit)

    equivocations: list[object] = []

    def evidence(index: int, event: object) -> None:
        if isinstance(event, EquivocationRecorded):
            equivocations.append(event)

    sim.event_hooks += [hook, evidence]
    for _ in range(6):
        swarm.workload.grant(swarm.workload.new_account(), node=1)
    sim.run_until(4.0)
    for _ in range(4):
        swarm.workload.grant(swarm.workload.new_account(), node=2)
    sim.run_until(20.0)
    assert len(crashed) == 1 and crashed[0] is not None
    assert scenarios.converged(swarm) and sim.errors == []
    assert sim.nodes[0].core is not None and sim.nodes[0].core.ledger.final_height >= 2
    # Nobody saw node 0 sign two bodies in one slot: its lost votes never left it.
    assert equivocations == []
