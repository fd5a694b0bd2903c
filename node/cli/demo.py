"""`swarmd demo`: an in-process ledger run that shows the core at work in a second.

Four council members, five beta testers: signup grants, transfers, hype burns, a contested
handle with council endorsements, and one op delivered before its dependency. It prints the
balances, tallies, handles and the state root; a second ledger fed the same ops in reverse order
reaches the same root, which the output states.
"""

from __future__ import annotations

import random
from typing import Any

from swarmd.protocol import crypto
from swarmd.protocol.genesis import Genesis
from swarmd.protocol.ledger import Ledger
from swarmd.protocol.ops import Op
from swarmd.protocol.wallet import Author

TESTERS = ("ada", "grace", "linus", "margaret", "ken")


def run_demo(seed: int = 1) -> dict[str, Any]:
    rng = random.Random(seed)
    council_keys = [crypto.KeyPair.from_seed(rng.randbytes(32)) for _ in range(4)]
    genesis = Genesis.create("demo", [k.public_key for k in council_keys], signup_reward=100)
    council = [Author(k, genesis.network_id) for k in council_keys]
    testers = {
        name: Author(crypto.KeyPair.from_seed(rng.randbytes(32)), genesis.network_id)
        for name in TESTERS
    }
    ops: list[Op] = []
    unreceived: dict[str, list[bytes]] = {name: [] for name in TESTERS}
    for index, (name, tester) in enumerate(testers.items()):
        grant = council[index % 4].grant(tester.key, genesis.signup_reward)
        ops.append(grant)
        unreceived[name].append(grant.op_id)
    for _ in range(12):
        payer, payee = rng.sample(TESTERS, 2)
        receive, unreceived[payer] = unreceived[payer], []
        op = testers[payer].transfer(testers[payee].key, rng.randint(1, 20), receive=receive)
        unreceived[payee].append(op.op_id)
        ops.append(op)
    for name in ("ada", "ken"):
        receive, unreceived[name] = unreceived[name], []
        ops.append(testers[name].burn(5, "launch-party", receive=receive))
    claims = []  # each claimant receives what it holds unreceived: a claim needs funds
    for name in ("grace", "linus"):
        receive, unreceived[name] = unreceived[name], []
        claims.append(testers[name].claim("queen", deps=receive))
    ops.extend(claims)
    for claim in claims:
        ops.extend(member.endorse(claim) for member in council[: genesis.quorum])

    ledger = Ledger(genesis)
    for op in ops:
        ledger.receive_op(op.envelope, 0.0)
    ledger.check_invariants()
    replay = Ledger(genesis)
    for op in reversed(ops):
        replay.receive_op(op.envelope, 0.0)
    owner = ledger.handle_owner("queen")
    owner_name = next((n for n, t in testers.items() if t.key == owner), None)
    return {
        "network_id": genesis.network_id.hex(),
        "ops": len(ops),
        "accepted": ledger.stats.accepted,
        "balances": {name: ledger.balance(t.key) for name, t in testers.items()},
        "hype": dict(ledger.state.burn_tallies),
        "handles": {"queen": owner_name},
        "granted": ledger.state.granted,
        "burned": ledger.state.burned,
        "state_root": ledger.state_root().hex(),
        "reverse_order_state_root_equal": replay.state_root() == ledger.state_root(),
    }
