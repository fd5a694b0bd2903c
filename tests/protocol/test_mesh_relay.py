"""Relay along a bounded mesh (issue 16): a consensus message is relayed once, to every peer
but its sender, and only when it decodes (a peer relaying garbage would be penalized by its
own peers)."""

from __future__ import annotations

from swarmd.protocol import consensus
from swarmd.protocol.messages import ConsensusEnvelope
from swarmd.protocol.sim.harness import Swarm

from .test_lazy_relay import Wire


def _relayed_to(wire: Wire, payload: bytes) -> list[bytes]:
    return sorted(
        peer
        for peer, message in wire.received()
        if isinstance(message, ConsensusEnvelope) and message.payload == payload
    )


def test_a_consensus_message_is_relayed_once_to_every_peer_but_its_sender() -> None:
    swarm = Swarm(4, delta_sync_interval_s=60.0)
    core = swarm.nodes[0]
    wire = Wire(core)
    wire.received()  # what the core queued at connection
    sender = swarm.nodes[1].node_id
    others = sorted(p for p in core.peer_ids() if p != sender)
    payload = consensus.ConsensusMessage(
        consensus.MessageKind.PREVOTE, 5, 0, None, swarm.keys[3].public_key, b"\x00" * 64
    ).encode()
    wire.send(sender, ConsensusEnvelope(payload), 0.0)
    assert _relayed_to(wire, payload) == others
    for peer in sorted(core.peer_ids()):
        wire.send(peer, ConsensusEnvelope(payload), 0.0)
    assert _relayed_to(wire, payload) == []


def test_a_malformed_consensus_payload_is_not_relayed() -> None:
    swarm = Swarm(4, delta_sync_interval_s=60.0)
    core = swarm.nodes[0]
    wire = Wire(core)
    wire.received()
    sender = swarm.nodes[1].node_id
    garbage = b"\x93\x01\x02"
    wire.send(sender, ConsensusEnvelope(garbage), 0.0)
    assert _relayed_to(wire, garbage) == []
    assert core.status()["peers"][sender.hex()]["score"] < 0
