"""`swarmd bench scale`: what a checkpoint, a snapshot and a restart cost on a big state.

Builds N funded accounts directly in a `LedgerState` (signing N grants would measure signing,
not the paths under test) and continues from it with `Ledger.restore_final`, as a node restored
from a snapshot does. Then, per round, K transfers from K signing accounts (to random accounts
of the N) are admitted untimed, and the daemon's own checkpoint path is timed: the proposer's
heads (`unfinalized_heads`), the cut check (`derive_cut`) and `finalize`, plus the new final
root. The N-account ledger first goes through `--rounds` checkpoints (then its memory, snapshot
and restart are measured); then a 10k-account ledger is built beside it and the two are
checkpointed alternately (`interleaved`), `--rounds` timed checkpoints each: those give
`checkpoint_ms_p50`, `checkpoint_ms_p95` and the same run's baseline `checkpoint_ms_p50_at_10k`
(`ratio` = p50 / baseline; `ratio_paired` = the median of the ratios of the back-to-back
pairs, which a change of the host's speed between pairs does not move).

- `rss_bytes_per_account`: resident memory added by the N-account ledger (after its
  first checkpoints), divided by N (read from /proc/self/statm; measured before the 10k
  ledger exists).
- `snapshot_build_s`: the daemon's snapshot build (snapshot_build = "frozen"): freezing the
  final state on the event loop (`Ledger.freeze_final`, O(1); `snapshot_loop_ms` alone), then
  `build_snapshot` and `encode_blob` on the worker thread, then `thaw_final`.
- `restart_s`: restoring from that blob as a restart does (`decode_blob`, rebuilding the state
  from its chunks without the curve-point check of the node's own account keys, checking its
  root, `Ledger.restore_final` taking the rebuilt state over); the bundle's signature check
  (a constant four verifications) is left out, and so is the log above the snapshot (a
  restart streams it; its cost is the ops above the snapshot, not the accounts).
"""

from __future__ import annotations

import argparse
import gc
import operator
import os
import random
import statistics
import time
from typing import Any

from swarmd.node.runtime.restore import gc_paused
from swarmd.protocol import crypto
from swarmd.protocol.genesis import Genesis
from swarmd.protocol.ledger import Ledger
from swarmd.protocol.ledger.snapshot import build_snapshot
from swarmd.protocol.ledger.state import LedgerState
from swarmd.protocol.limits import CUT_HEADS_MAX
from swarmd.protocol.node_core.state_sync import rebuild_snapshot_state
from swarmd.protocol.snapshot import decode_blob, encode_blob
from swarmd.protocol.wallet import Author

from .common import emit, percentile

BASELINE_ACCOUNTS = 10_000
#: Untimed checkpoints of a state before each timed one in the interleaved rounds.
WARMUP_ROUNDS = 1
#: The largest state the bench builds: ~400 resident bytes an account make 10M about the 4 GiB
#: of the systemd unit's MemoryMax (deploy/), beyond which no daemon runs either.
ACCOUNTS_MAX = 10_000_000
#: Transfers per cut: one head each, so at most the heads a proposer puts in one cut.
CUT_OPS_MAX = CUT_HEADS_MAX
#: Timed checkpoints per state (each round also signs and admits its transfers untimed).
ROUNDS_MAX = 1_000
FUNDS = 1_000_000
SEED = 13


def make_genesis() -> Genesis:
    rng = random.Random(SEED)
    council = [crypto.KeyPair.from_seed(rng.randbytes(32)).public_key for _ in range(4)]
    return Genesis.create("bench-scale", council, signup_reward=FUNDS)


def build_state(accounts: int, signers: list[Author]) -> LedgerState:
    """`accounts` funded accounts (the signers' first), built directly in the state."""
    state = LedgerState()
    keys = [signer.key for signer in signers]
    keys += [
        crypto.KeyPair.from_seed(crypto.sha256(b"bench/scale/%d" % index)).public_key
        for index in range(accounts - len(keys))
    ]
    for key in keys:
        account = state.account(key)
        account.balance = account.spendable = FUNDS
        account.granted = True
    state.add_granted(FUNDS * len(keys))
    state.root()
    return state


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class Checkpoints:
    """A ledger over `accounts` funded accounts, `cut_ops` of them signing, checkpointed one
    round at a time: `cut_ops` transfers to random accounts are admitted untimed, then the
    daemon's checkpoint path is timed (module docstring)."""

    def __init__(self, genesis: Genesis, accounts: int, cut_ops: int, rng: random.Random) -> None:
        self.signers = [
            Author(crypto.KeyPair.from_seed(rng.randbytes(32)), genesis.network_id)
            for _ in range(cut_ops)
        ]
        state = build_state(accounts, self.signers)
        self.ledger = Ledger.restore_final(genesis, state, 0)
        del state
        gc.collect()
        self.keys = list(self.ledger.final_state.accounts)
        self.rng = rng

    def round(self) -> float:
        """One checkpoint of `cut_ops` transfers; its ms."""
        ledger = self.ledger
        for signer in self.signers:
            to = self.rng.choice(self.keys)
            while to == signer.key:
                to = self.rng.choice(self.keys)
            outcome = ledger.receive_verified(signer.transfer(to, 1), 0.0)
            assert outcome.status == "accepted", outcome
        began = time.perf_counter()
        heads = ledger.unfinalized_heads()
        root, closure = ledger.derive_cut(heads)
        ledger.finalize(ledger.final_height + 1, closure)
        assert ledger.final_state.root() == root
        return (time.perf_counter() - began) * 1000


def interleaved(
    big: Checkpoints, small: Checkpoints, rounds: int
) -> tuple[list[float], list[float]]:
    """`rounds` timed checkpoints of each, alternating (the small state's first), each after
    WARMUP_ROUNDS untimed ones of the same state, so neither is timed just after the other's
    rounds evicted it from the caches. The host's speed changes within seconds on a shared
    machine (BENCHMARKS.md, session 10: whole stretches of rounds run ~40 % slower, at both
    sizes); back-to-back pairs see the same host."""
    samples: list[float] = []
    baseline: list[float] = []
    for _ in range(rounds):
        for run, timed in ((small, baseline), (big, samples)):
            for _ in range(WARMUP_ROUNDS):
                run.round()
            timed.append(run.round())
    return samples, baseline


def snapshot_and_restart(genesis: Genesis, ledger: Ledger) -> tuple[float, float, float]:
    """(snapshot_build_s, snapshot_loop_s, restart_s) of the ledger's final state (module
    docstring)."""
    height = ledger.final_height
    root = ledger.final_state.root()
    began = time.perf_counter()
    state = ledger.freeze_final()
    assert state is not None
    loop_s = time.perf_counter() - began
    manifest, chunks = build_snapshot(state, height, b"\x00" * 32, root)
    blob = encode_blob(manifest, chunks)
    ledger.thaw_final(state)
    snapshot_s = time.perf_counter() - began
    del state
    began = time.perf_counter()
    with gc_paused():  # as the daemon's restart does (node/runtime/restore.py)
        manifest, chunks = decode_blob(blob)
        state = rebuild_snapshot_state(manifest, chunks, check_keys=False)
        restored = Ledger.restore_final(genesis, state, height, owned=True)
    restart_s = time.perf_counter() - began
    gc.unfreeze()  # (the baseline run after this should collect as usual)
    assert restored.final_state.root() == root
    return snapshot_s, loop_s, restart_s


def measure(accounts: int, cut_ops: int, rounds: int) -> dict[str, Any]:
    genesis = make_genesis()
    rng = random.Random(SEED)
    gc.collect()
    rss_before = rss_bytes()
    big = Checkpoints(genesis, accounts, cut_ops, rng)
    for _ in range(rounds):
        big.round()
    gc.collect()
    rss_per_account = (rss_bytes() - rss_before) / accounts
    snapshot_s, loop_s, restart_s = snapshot_and_restart(genesis, big.ledger)
    gc.collect()
    small = Checkpoints(genesis, BASELINE_ACCOUNTS, cut_ops, rng)
    samples, baseline = interleaved(big, small, rounds)
    p50 = statistics.median(samples)
    p50_10k = statistics.median(baseline)
    return {
        "accounts": accounts,
        "cut_ops": cut_ops,
        "rounds": rounds,
        "checkpoint_ms_p50": round(p50, 3),
        "checkpoint_ms_p95": round(percentile(samples, 0.95), 3),
        "checkpoint_ms_p50_at_10k": round(p50_10k, 3),
        "ratio": round(p50 / p50_10k, 3),
        "ratio_paired": round(statistics.median(map(operator.truediv, samples, baseline)), 3),
        "rss_bytes_per_account": round(rss_per_account),
        "snapshot_build_s": round(snapshot_s, 3),
        "snapshot_loop_ms": round(loop_s * 1000, 3),
        "restart_s": round(restart_s, 3),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="swarmd bench scale", description=__doc__)
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--cut-ops", type=int, default=100, help="ops per checkpoint cut")
    parser.add_argument("--rounds", type=int, default=20, help="checkpoints timed per state")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if not 1 <= args.cut_ops <= min(args.accounts, CUT_OPS_MAX) or args.accounts > ACCOUNTS_MAX:
        parser.error(
            f"need 1 <= --cut-ops <= --accounts <= {ACCOUNTS_MAX} and --cut-ops <= {CUT_OPS_MAX}"
        )
    if not 1 <= args.rounds <= ROUNDS_MAX:
        parser.error(f"--rounds must be 1..{ROUNDS_MAX}")
    emit(measure(args.accounts, args.cut_ops, args.rounds), args.json)
    return 0
