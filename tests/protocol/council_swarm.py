"""The setup the council-rollback and rejoin tests share (test_rollback_node.py,
test_rejoin.py): a 4-member simulated swarm whose first grants are final."""

from __future__ import annotations

from swarmd.protocol.node_core import NodeCoreConfig
from swarmd.protocol.sim.harness import Swarm


def fund(swarm: Swarm, label: str, count: int, node: int = 0) -> list[bytes]:
    """`count` grants of 100 to new accounts "<label>-<i>" (from the members in turn), each
    submitted to `node` and accepted; their op ids."""
    ids = []
    for i in range(count):
        person = swarm.author(f"{label}-{i}")
        grant = swarm.members[i % len(swarm.members)].grant(person.key, 100)
        assert swarm.submit(node, grant).status == "accepted"
        ids.append(grant.op_id)
    return ids


def funded_swarm(seed: int, configs: dict[int, NodeCoreConfig] | None = None) -> Swarm:
    """A 4-member swarm (node i's config replaced by `configs[i]` first), three grants
    ("before-0..2") submitted to node 0, run to t = 4.0 s: final at some height."""
    swarm = Swarm(4, seed=seed)
    for index, config in (configs or {}).items():
        swarm.nodes[index].config = config
    fund(swarm, "before", 3)
    swarm.run(until=4.0)
    return swarm
