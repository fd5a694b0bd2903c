"""Client-side op authoring: keeps an author's chain position and unreceived credits.

Used by the CLI wallet, the simulator's workloads, benchmarks and tests. Pure: it only signs.
"""

from __future__ import annotations

from typing import Any

from . import limits
from .crypto import KeyPair
from .ops import Kind, Op, build_op


class Author:
    """Signs consecutive ops of one account (seq and prev tracked locally)."""

    def __init__(self, keypair: KeyPair, network_id: bytes, *, seq: int = 0, head: bytes = b""):
        self.keypair = keypair
        self.network_id = network_id
        self.seq = seq
        self.head = head

    @property
    def key(self) -> bytes:
        return self.keypair.public_key

    def sign(
        self,
        kind: Kind,
        *,
        deps: list[bytes] | tuple[bytes, ...] = (),
        basis: int = 0,
        **fields: Any,
    ) -> Op:
        op = build_op(
            self.keypair,
            self.network_id,
            kind,
            seq=self.seq + 1,
            prev=self.head,
            # An op's prev already counts as a parent, so it is never repeated in deps.
            deps=tuple(dep for dep in deps if dep != self.head),
            basis=basis,
            **fields,
        )
        self.seq, self.head = op.seq, op.op_id
        return op

    def grant(self, to: bytes, amount: int, **kw: Any) -> Op:
        return self.sign(Kind.GRANT, to=to, amount=amount, **kw)

    def transfer(
        self, to: bytes, amount: int, *, receive: list[bytes] | tuple[bytes, ...] = (), **kw: Any
    ) -> Op:
        return self.sign(Kind.TRANSFER, to=to, amount=amount, deps=receive, **kw)

    def burn(
        self, amount: int, target: str, *, receive: list[bytes] | tuple[bytes, ...] = (), **kw: Any
    ) -> Op:
        return self.sign(Kind.BURN, amount=amount, target=target, deps=receive, **kw)

    def claim(self, handle: str, **kw: Any) -> Op:
        return self.sign(Kind.HANDLE_CLAIM, handle=handle, **kw)

    def endorse(self, claim: Op, **kw: Any) -> Op:
        return self.sign(Kind.HANDLE_ENDORSE, claim=claim.op_id, deps=[claim.op_id], **kw)

    def revoke(self, claim: Op, **kw: Any) -> Op:
        return self.sign(
            Kind.HANDLE_REVOKE, handle=claim.fields["handle"], deps=[claim.op_id], **kw
        )

    def quiesce(self, reason: str) -> Op:
        return self.sign(Kind.COUNCIL_QUIESCE, reason=reason)

    def resume(self, reason: str) -> Op:
        return self.sign(Kind.COUNCIL_RESUME, reason=reason)

    def pause_claims(self, reason: str = "") -> Op:
        """A vote to refuse new handle claims network-wide (the plan's Stage 1 play)."""
        return self.sign(Kind.COUNCIL_PAUSE_CLAIMS, reason=reason)

    def resume_claims(self, reason: str = "") -> Op:
        return self.sign(Kind.COUNCIL_RESUME_CLAIMS, reason=reason)


def chunk_deps(ids: list[bytes]) -> list[list[bytes]]:
    """Split credit ids into groups that fit one op's deps."""
    return [ids[i : i + limits.OP_DEPS_MAX] for i in range(0, len(ids), limits.OP_DEPS_MAX)]
