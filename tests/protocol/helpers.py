"""Builders shared by the protocol tests."""

from __future__ import annotations

from swarmd.protocol import crypto
from swarmd.protocol.genesis import Genesis
from swarmd.protocol.ledger import Ledger
from swarmd.protocol.ops import Op
from swarmd.protocol.wallet import Author


def keypair(label: str) -> crypto.KeyPair:
    return crypto.KeyPair.from_seed(crypto.sha256(label.encode()))


def make_council(n: int = 4, **kw: int) -> tuple[Genesis, list[Author]]:
    keys = [keypair(f"council-{i}") for i in range(n)]
    genesis = Genesis.create("testnet", [k.public_key for k in keys], **kw)
    members = sorted((Author(k, genesis.network_id) for k in keys), key=lambda a: a.key)
    return genesis, members


def author(genesis: Genesis, label: str) -> Author:
    return Author(keypair(label), genesis.network_id)


def feed(ledger: Ledger, ops: list, now: float = 0.0) -> list:
    return [ledger.receive_op(op.envelope, now) for op in ops]


def fund(genesis: Genesis, member: Author, who: Author) -> Op:
    """A signup grant to `who`: state costs credits, so a claimant lists it in its claim's deps."""
    return member.grant(who.key, genesis.signup_reward)
