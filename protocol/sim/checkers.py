"""The checkers every scenario runs when the swarm has settled (docs/parts/simulator.md):
agreement, ledger invariants, bank conservation, no acknowledged op lost, fragments,
finality (per-height agreement, verifiable bundles, evidence) and MTTD.
"""

from __future__ import annotations

from .. import consensus, crypto
from ..checkpoint import Cut
from ..errors import RemoteProtocolError
from ..ops import Kind
from .simulator import FaultKind, SimCore, Simulation
from .swarm import (
    Swarm,
    covered_by_state,
    honest_cores,
    honest_live,
    snapshot_base_height,
)


def converged(swarm: Swarm) -> bool:
    nodes = [swarm.sim.nodes[i].core for i in honest_live(swarm)]
    cores = [core for core in nodes if core is not None]
    if not cores:
        return False
    root = cores[0].ledger.state_root()
    full = [core for core in cores if not snapshot_base_height(core)]
    count = len(full[0].ledger.applied_ids()) if full else 0
    for core in cores:
        if core.ledger.state_root() != root:
            return False
        if not snapshot_base_height(core) and len(core.ledger.applied_ids()) != count:
            return False
    for op_id in swarm.workload.acked:
        if op_id in swarm.workload.expect_reverted:
            continue
        for core in cores:
            status = core.ledger.status_of(op_id)[0]
            if status in ("unknown", "pending") and not covered_by_state(swarm, core, op_id):
                return False
    return True


#: Which detections reveal which fault. A sync that finds missing ops is routine gossip lag in
#: a healthy swarm, so it only counts as detecting a wiped store.
DETECTED_BY: dict[FaultKind, frozenset[str]] = {
    FaultKind.PARTITION: frozenset({"peer_lost"}),
    FaultKind.CRASH: frozenset({"peer_lost"}),
    FaultKind.WIPE: frozenset({"peer_lost", "sync_found_missing", "CatchUpStarted"}),
    FaultKind.FLOOD: frozenset({"PeerMisbehaved"}),
    FaultKind.FORK: frozenset({"OpExcluded", "StateRederived"}),
    FaultKind.EQUIVOCATION: frozenset({"EquivocationRecorded"}),
}


def mttd(sim: Simulation) -> list[float]:
    values = []
    for fault in sim.faults:
        kinds = DETECTED_BY[fault.kind]
        times = [d.time for d in sim.detections if d.time >= fault.injected_at and d.what in kinds]
        if times:
            values.append(min(times) - fault.injected_at)
    return values


#: FrameDecoder counters (summed in NodeCore.status()["fragments"]) of messages given up.
FRAGMENT_DROP_COUNTERS = ("reassemblies_expired", "reassemblies_rejected", "integrity_failures")


def fragments_dropped(swarm: Swarm) -> int:
    total = 0
    for _index, core in honest_cores(swarm):
        counters = core.status().get("fragments", {})
        if isinstance(counters, dict):
            total += sum(int(counters.get(name, 0)) for name in FRAGMENT_DROP_COUNTERS)
    return total


def describe_divergence(swarm: Swarm) -> str:
    parts = []
    for index, core in honest_cores(swarm):
        ledger = core.ledger
        parts.append(
            f"node {index}: root {ledger.state_root().hex()[:12]} "
            f"applied {len(ledger.applied_ids())} pending {len(ledger.pending)}"
        )
    return ", ".join(parts)


def finality_settled(swarm: Swarm) -> bool:
    """Every live honest node has everything it applied final, at one height and one root."""
    cores = [swarm.sim.nodes[i].core for i in honest_live(swarm)]
    if not cores:
        return False
    heights, roots = set(), set()
    for core in cores:
        assert core is not None
        if core.ledger.unfinalized_count():
            return False
        heights.add(core.ledger.final_height)
        roots.add(core.ledger.final_state.root())
    return len(heights) == 1 and len(roots) == 1


def describe_finality(swarm: Swarm) -> str:
    parts = []
    for index, core in honest_cores(swarm):
        ledger = core.ledger
        parts.append(
            f"node {index}: final height {ledger.final_height} "
            f"root {ledger.final_state.root().hex()[:12]} unfinalized {ledger.unfinalized_count()}"
        )
    return ", ".join(parts)


def check_finality(swarm: Swarm) -> list[str]:
    """Agreement per height, offline-verifiable bundles matching the final roots, supply at
    every final checkpoint, handle uniqueness and verifiable evidence (every scenario)."""
    log = swarm.finality
    honest = set(range(len(swarm.sim.nodes))) - swarm.dishonest
    failures: list[str] = list(dict.fromkeys(log.violations))[:3]
    decided: dict[tuple[int, int], set[tuple[bytes, bytes]]] = {}
    #: (node, epoch, height) -> the node's own final root there (per epoch: after a rollback the
    #: same height is final again with another root).
    own_root: dict[tuple[int, int, int], bytes] = {}
    for record in log.finalizations:
        if record.node not in honest:
            continue
        key = (record.epoch, record.height)
        decided.setdefault(key, set()).add((record.checkpoint_id, record.state_root))
        if record.final_root is not None:
            own_root[(record.node, record.epoch, record.height)] = record.final_root
            if record.final_root != record.state_root:
                failures.append(
                    f"node {record.node}: final root at height {record.height} is not the cut's"
                )
        if record.supply_ok is False:
            failures.append(
                f"node {record.node}: supply invariant broken at final height {record.height}"
            )
    for (epoch, height), values in sorted(decided.items()):
        if len(values) > 1:
            where = f"height {height}" + (f" of epoch {epoch}" if epoch else "")
            failures.append(f"agreement: {len(values)} different checkpoints at {where}")
    failures.extend(_check_bundles(swarm, decided, own_root))
    failures.extend(_check_evidence(swarm, honest))
    return failures[:10]


def _check_bundles(
    swarm: Swarm,
    decided: dict[tuple[int, int], set[tuple[bytes, bytes]]],
    own_root: dict[tuple[int, int, int], bytes],
) -> list[str]:
    """Every bundle a live honest node holds verifies with the genesis council alone, and its
    cut is the checkpoint (id and state root) the node finalized at that height."""
    failures: list[str] = []
    council = list(swarm.genesis.council)
    verified: set[bytes] = set()
    for index, core in honest_cores(swarm):
        # A node keeps the bundles of its last `bundles_kept` heights (fewer after a state
        # sync): they must run without a gap up to its final height.
        held = False
        for height in range(1, core.final_height + 1):
            data = core.bundle(height)
            if data is None and not held and height < core.final_height:
                continue
            if data is None:
                failures.append(f"node {index}: no bundle for final height {height}")
                break
            held = True
            try:
                digest = crypto.sha256(data)
                bundle = consensus.CheckpointBundle.decode(data)
                if digest not in verified:
                    consensus.verify_bundle(bundle, swarm.genesis.network_id, council)
                    verified.add(digest)
                cut = Cut.decode(bundle.value)
            except RemoteProtocolError as exc:
                failures.append(f"node {index}: bundle {height} does not verify: {exc.code}")
                break
            expected = own_root.get((index, bundle.epoch, height))
            if cut.height != height or (cut.checkpoint_id, cut.state_root) not in decided.get(
                (bundle.epoch, height), {(cut.checkpoint_id, cut.state_root)}
            ):
                failures.append(f"node {index}: bundle {height} is not the finalized checkpoint")
                break
            if expected is not None and cut.state_root != expected:
                failures.append(f"node {index}: bundle {height} root != final root")
                break
    return failures


def _check_evidence(swarm: Swarm, honest: set[int]) -> list[str]:
    failures: list[str] = []
    council = list(swarm.genesis.council)
    for node in sorted(honest):
        for data in swarm.finality.evidence.get(node, []):
            try:
                evidence = consensus.Evidence.decode(data)
                consensus.verify_evidence(evidence, swarm.genesis.network_id, council)
            except RemoteProtocolError as exc:
                failures.append(f"node {node}: recorded evidence does not verify: {exc.code}")
                break
            if evidence.validator not in swarm.byzantine_keys:
                failures.append(
                    f"node {node}: evidence against honest member {evidence.validator.hex()[:12]}"
                )
                break
    return failures


def check_swarm(swarm: Swarm) -> list[str]:
    failures: list[str] = []
    live = honest_live(swarm)
    if len(live) < len(swarm.sim.nodes) - len(swarm.dishonest):
        failures.append("a node is still down at the end of the run")
    applied_sets = []
    for index in live:
        core = swarm.sim.nodes[index].core
        assert core is not None
        failures.extend(f"node {index}: {f}" for f in check_node(swarm, core))
        if not snapshot_base_height(core):  # a restored node applied only what came after
            applied_sets.append(frozenset(core.ledger.applied_ids()))
    if len(set(applied_sets)) > 1:
        failures.append("honest nodes applied different op sets")
    return failures


def check_node(swarm: Swarm, core: SimCore) -> list[str]:
    ledger = core.ledger
    failures: list[str] = []
    try:
        ledger.check_invariants()
    except AssertionError as exc:
        failures.append(f"ledger invariant broken: {exc}")
    state = ledger.state
    grants = 0
    seqs: dict[bytes, list[int]] = {}
    for op_id in ledger.applied_ids():
        op = ledger.op(op_id)
        if op is None:
            failures.append(f"applied op {op_id.hex()[:12]} unknown")
            continue
        grants += op.kind is Kind.GRANT
        seqs.setdefault(op.author, []).append(op.seq)
    restored = snapshot_base_height(core) > 0  # its history starts at a snapshot
    if not restored and state.granted != grants * swarm.genesis.signup_reward:
        failures.append(f"granted {state.granted} != {grants} grants x reward")
    if state.total_balances() != state.granted - state.burned:
        failures.append("balances do not sum to granted - burned")
    if sum(state.burn_tallies.values()) != state.burned:
        failures.append("burn tallies do not sum to burned")
    for author, author_seqs in sorted(seqs.items()):
        if restored:
            break  # check_invariants checks its chains from the snapshot's seqs on
        if sorted(author_seqs) != list(range(1, len(author_seqs) + 1)):
            failures.append(f"author {author.hex()[:12]} seqs have a gap or duplicate")
    failures.extend(check_acked(swarm, core))
    failures.extend(check_fragments(swarm, core))
    return failures


def check_acked(swarm: Swarm, core: SimCore) -> list[str]:
    failures = []
    workload = swarm.workload
    for op_id in sorted(workload.acked):
        status, code = core.ledger.status_of(op_id)
        if status == "applied":
            continue
        if op_id in workload.expect_reverted:
            continue  # a council rollback may have reverted it (network-rollback checks those)
        if status in ("excluded", "rejected") and code and op_id in workload.expect_excluded:
            continue
        if covered_by_state(swarm, core, op_id):
            # Final before the snapshot it restored from: its state holds the op, and the
            # op itself, should it arrive, looks like a fork of a final chain (rejected).
            continue
        failures.append(f"acknowledged op {op_id.hex()[:12]} lost: {status} {code}".strip())
        if len(failures) >= 3:
            break
    return failures


def check_fragments(swarm: Swarm, core: SimCore) -> list[str]:
    """Fragmented messages this core gave up on (FRAGMENT_DROP_COUNTERS, cumulative over every
    peer it had) while it ends the run behind the best honest node: nothing recovered what
    they carried. Given-up messages on a node that caught up were recovered (by delta sync,
    bundles or a resend) and are no failure."""
    counters = core.status().get("fragments", {})
    given_up = sum(int(counters.get(name, 0)) for name in FRAGMENT_DROP_COUNTERS)
    if not given_up:
        return []
    best = max(c.ledger.final_height for _index, c in honest_cores(swarm))
    behind = core.ledger.final_height < best or core.ledger.unfinalized_count() > 0
    if not behind:
        return []
    return [
        f"{given_up} fragmented messages given up and not recovered (final height "
        f"{core.ledger.final_height} of {best}, unfinalized {core.ledger.unfinalized_count()})"
    ]


def sync_sessions_lost(swarm: Swarm) -> int:
    """Delta sync sessions started by the live honest nodes that never finished (replaced,
    abandoned, failed): they count in the within-cadence ratio as not within cadence."""
    return sum(core.stats.sync_sessions_lost for _index, core in honest_cores(swarm))
