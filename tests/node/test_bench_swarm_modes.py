"""`swarmd bench swarm`'s modes: the open-loop schedule (`--rate`), medians of repeated runs,
and the refusal of contradictory flags. The end-to-end open-loop run starts real daemons."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from swarmd.benchmarks import swarm
from swarmd.protocol.crypto import KeyPair
from swarmd.protocol.ops import Op
from swarmd.protocol.wallet import Author

NETWORK = b"n" * 32


def make_chains(accounts: int, length: int) -> list[list[Op]]:
    authors = [Author(KeyPair.from_seed(bytes([i + 1]) * 32), NETWORK) for i in range(accounts)]
    payee = authors[0].key
    return [[author.transfer(payee, 1) for _ in range(length)] for author in authors]


def test_open_loop_schedule_paces_every_op_and_keeps_chains_in_order() -> None:
    chains = make_chains(accounts=6, length=4)  # 24 ops on 3 nodes, 2 chains per node
    rate = 12.0

    schedule = swarm.open_loop_schedule(chains, nodes=3, batch=1, rate=rate)

    offsets = [offset for offset, _, _ in schedule]
    assert offsets == sorted(offsets)
    # One op per request, every op once, the k-th op of the run due at k / rate.
    assert [len(ops) for _, _, ops in schedule] == [1] * 24
    assert offsets == [k / rate for k in range(24)]
    sent = [ops[0] for _, _, ops in schedule]
    assert sorted(op.op_id for op in sent) == sorted(op.op_id for c in chains for op in c)
    for index, chain in enumerate(chains):
        nodes = {node for _, node, ops in schedule if ops[0] in chain}
        assert nodes == {index % 3}  # a chain stays on its node ...
        due = [offset for offset, _, ops in schedule if ops[0] in chain]
        assert due == sorted(due)  # ... in chain order ...
        # ... and an account's next op comes accounts / rate seconds after its previous one.
        assert [b - a for a, b in itertools.pairwise(due)] == pytest.approx([0.5] * 3)


def test_open_loop_schedule_batches_by_the_time_of_their_first_op() -> None:
    chains = make_chains(accounts=4, length=5)  # 20 ops, 2 nodes, 10 ops each

    schedule = swarm.open_loop_schedule(chains, nodes=2, batch=4, rate=10.0)

    assert [(offset, node, len(ops)) for offset, node, ops in schedule] == [
        (0.0, 0, 4),
        (0.1, 1, 4),
        (0.8, 0, 4),
        (0.9, 1, 4),
        (1.6, 0, 2),
        (1.7, 1, 2),
    ]


def test_medians_take_each_figure_and_list_the_runs() -> None:
    runs: list[dict[str, Any]] = [
        {"transport": "webrtc", "final_ops_per_s": f, "node_cpu_us_per_op": c, "ok": True}
        for f, c in [(100, 7.0), (300, 5.0), (200, 9.0)]
    ]
    for run in runs:
        run["finality_latency_ms_p50"] = run["finality_latency_ms_p95"] = 1.0

    result = swarm.medians(runs)

    assert result["final_ops_per_s"] == 200 and result["node_cpu_us_per_op"] == 7.0
    assert result["final_ops_per_s_samples"] == [100, 300, 200]
    assert result["transport"] == "webrtc" and result["ok"] is True and result["runs"] == 3


@pytest.mark.parametrize(
    "argv",
    [
        ["--transport", "both", "--rate", "10"],
        ["--rate", "10", "--rate-fractions", "0.5"],
        ["--rate-fractions", "0.5,1.5"],
        ["--rate", "0"],
        ["--repeat", "0"],
    ],
)
def test_contradictory_or_out_of_range_flags_are_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        swarm.main(argv)
    assert exited.value.code == 2


@pytest.mark.integration
def test_an_open_loop_run_is_paced_by_the_offered_rate(capsys: pytest.CaptureFixture[str]) -> None:
    ops, rate = 60, 30.0
    argv = ["--nodes", "2", "--ops", str(ops), "--accounts", "6", "--rate", str(rate), "--json"]

    assert swarm.main(argv) == 0

    result = json.loads(capsys.readouterr().out)
    assert result["offered_ops_per_s"] == rate and result["ops"] == ops
    # Open loop: the last op is not due before (ops - 1) / rate, whatever the swarm does.
    assert result["elapsed_s"] >= (ops - 1) / rate
    assert result["latency_samples"] == 6 * (ops // 6)
    assert 0 < result["finality_latency_ms_p50"] <= result["finality_latency_ms_p95"]
