"""The simulated client population: wallets that grant, transfer, burn and double-spend,
submitting to the simulated nodes and failing over when one is down (deterministic).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from ..crypto import KeyPair
from ..genesis import Genesis
from ..ledger import Outcome
from ..ops import Op
from ..wallet import Author
from .simulator import Simulation

#: Credits listed as deps of one op by the workload (OP_DEPS_MAX allows 64; fewer keeps
#: envelopes small and still exercises multi-credit receipts).
WORKLOAD_RECEIVE_MAX = 16


@dataclass
class Wallet:
    author: Author
    unreceived: list[tuple[bytes, int]] = field(default_factory=list)
    spendable: int = 0


@dataclass
class Submission:
    op: Op
    node: int
    time: float
    outcome: Outcome | None


class Workload:
    """A client population: council members grant, accounts transfer and burn.

    Wallets track their own chain and credits optimistically (as a real wallet does), so every
    op is valid if the swarm applies everything the wallet signed. A client whose node is down
    fails over to the next live node.
    """

    def __init__(self, sim: Simulation, genesis: Genesis, council: list[KeyPair], seed: int):
        self.sim = sim
        self.genesis = genesis
        self.rng = random.Random(seed ^ 0x5EED)
        self.members = [Author(k, genesis.network_id) for k in council]
        self.wallets: list[Wallet] = []
        self.submissions: dict[bytes, Submission] = {}
        self.acked: dict[bytes, int] = {}  # op id -> node that acknowledged it
        self.expect_excluded: set[bytes] = set()
        #: Ops a council rollback may revert (or leave pending on a reverted parent, or refuse
        #: as `op_reverted`): the acknowledged-op checks skip them (network-rollback checks them).
        self.expect_reverted: set[bytes] = set()
        sim.commit_hooks.append(self._on_commit)

    def _on_commit(self, node: int, op_id: bytes) -> None:
        submission = self.submissions.get(op_id)
        if submission is None or op_id in self.acked or submission.node != node:
            return
        outcome = submission.outcome
        if outcome is not None and outcome.status in ("accepted", "pending", "duplicate"):
            self.acked[op_id] = node

    def retry_unacked(self, node: int) -> None:
        """`node` crashed: every op submitted to it and not acknowledged is sent again to the
        next live node, as a client retries a request that got no answer. Without it an op
        lost with the crash (not durable, its push still in flight) would leave the later ops
        of its chain pending everywhere, although they were acknowledged elsewhere."""
        lost = [
            s.op
            for op_id, s in self.submissions.items()
            if s.node == node and op_id not in self.acked and s.outcome is not None
        ]
        for op in lost:
            self.submit(op, (node + 1) % len(self.sim.nodes))

    def new_account(self) -> Wallet:
        keypair = KeyPair.from_seed(self.rng.randbytes(32))
        wallet = Wallet(Author(keypair, self.genesis.network_id))
        self.wallets.append(wallet)
        return wallet

    def submit(self, op: Op, node: int | None = None) -> Submission:
        """Submit now to `node` (random if None), failing over to the next live node."""
        count = len(self.sim.nodes)
        start = self.rng.randrange(count) if node is None else node
        outcome: Outcome | None = None
        chosen = start
        for step in range(count):
            chosen = (start + step) % count
            outcome = self.sim.submit(chosen, op.envelope)
            if outcome is not None:
                break
        submission = Submission(op, chosen, self.sim.now, outcome)
        self.submissions[op.op_id] = submission
        if outcome is not None and op.op_id in self.sim.nodes[chosen].durable.op_ids:
            self._on_commit(chosen, op.op_id)
        return submission

    def grant(self, wallet: Wallet, node: int | None = None) -> Op:
        member = self.members[self.rng.randrange(len(self.members))]
        op = member.grant(wallet.author.key, self.genesis.signup_reward)
        wallet.unreceived.append((op.op_id, op.amount))
        self.submit(op, node)
        return op

    def funded_claim(self, wallet: Wallet, handle: str, node: int | None = None) -> Op:
        """A signup grant for `wallet` submitted now, and a claim receiving it (state costs
        credits: an unfunded claim is `claim_unfunded`). The claim is returned unsubmitted."""
        self.grant(wallet, node)
        return wallet.author.claim(handle, deps=self._take_credits(wallet))

    def _take_credits(self, wallet: Wallet) -> list[bytes]:
        taken = wallet.unreceived[:WORKLOAD_RECEIVE_MAX]
        wallet.unreceived = wallet.unreceived[WORKLOAD_RECEIVE_MAX:]
        wallet.spendable += sum(amount for _, amount in taken)
        return [credit for credit, _ in taken]

    def transfer(self, payer: Wallet, payee: Wallet, node: int | None = None) -> Op | None:
        receive = self._take_credits(payer)
        if payer.spendable == 0:
            return None  # nothing to spend (and therefore nothing was received)
        amount = self.rng.randint(1, payer.spendable)
        op = payer.author.transfer(payee.author.key, amount, receive=receive)
        payer.spendable -= amount
        payee.unreceived.append((op.op_id, amount))
        self.submit(op, node)
        return op

    def burn(self, wallet: Wallet, target: str, node: int | None = None) -> Op | None:
        receive = self._take_credits(wallet)
        if wallet.spendable == 0:
            return None
        amount = self.rng.randint(1, max(1, wallet.spendable // 2))
        op = wallet.author.burn(amount, target, receive=receive)
        wallet.spendable -= amount
        self.submit(op, node)
        return op

    def fork(self, wallet: Wallet, payees: tuple[Wallet, Wallet], nodes: tuple[int, int]) -> None:
        """Double-spend: two transfers at the same seq, each sent to a different node."""
        receive = self._take_credits(wallet)
        if wallet.spendable == 0:
            return
        author = wallet.author
        twin = Author(author.keypair, author.network_id, seq=author.seq, head=author.head)
        amount = wallet.spendable
        first = author.transfer(payees[0].author.key, amount, receive=receive)
        second = twin.transfer(payees[1].author.key, amount, receive=receive)
        wallet.spendable = 0
        # The cheat is retired and the payees do not count on either credit: whichever side
        # loses takes its descendants with it, and the workload must not build on either.
        self.wallets.remove(wallet)
        self.expect_excluded.update((first.op_id, second.op_id))
        self.submit(first, nodes[0])
        self.submit(second, nodes[1])
