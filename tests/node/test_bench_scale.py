"""`swarmd bench scale`: the baseline's rounds alternate with the big state's, a small run prints
every figure it promises, and arguments past its named bounds are refused."""

from __future__ import annotations

import json
import random

import pytest

from swarmd.benchmarks import scale


class Recorder:
    """Stands in for a `scale.Checkpoints` in `interleaved`: says which state ran, in order."""

    def __init__(self, name: str, order: list[str], ms: float) -> None:
        self.name, self.order, self.ms = name, order, ms

    def round(self) -> float:
        self.order.append(self.name)
        return self.ms


def test_the_baseline_alternates_with_the_big_state_each_after_its_own_warmup() -> None:
    order: list[str] = []
    big, small = Recorder("big", order, 30.0), Recorder("small", order, 20.0)

    samples, baseline = scale.interleaved(big, small, rounds=3)  # type: ignore[arg-type]

    pair = ["small"] * (scale.WARMUP_ROUNDS + 1) + ["big"] * (scale.WARMUP_ROUNDS + 1)
    assert order == pair * 3
    assert (samples, baseline) == ([30.0] * 3, [20.0] * 3)


def test_a_small_run_prints_every_figure_and_the_ratios_follow_from_them(capsys) -> None:
    assert scale.main(["--accounts", "300", "--cut-ops", "20", "--rounds", "3", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)

    assert (figures["accounts"], figures["cut_ops"], figures["rounds"]) == (300, 20, 3)
    p50, p50_10k = figures["checkpoint_ms_p50"], figures["checkpoint_ms_p50_at_10k"]
    assert 0 < p50 <= figures["checkpoint_ms_p95"]
    assert figures["ratio"] == pytest.approx(p50 / p50_10k, abs=0.002)
    assert figures["ratio_paired"] > 0
    assert figures["rss_bytes_per_account"] >= 0
    assert figures["snapshot_loop_ms"] >= 0 and figures["snapshot_build_s"] > 0
    assert figures["restart_s"] > 0


def test_checkpoints_finalize_one_height_per_round() -> None:
    checkpoints = scale.Checkpoints(scale.make_genesis(), 50, 5, random.Random(1))

    for _ in range(3):
        assert checkpoints.round() > 0

    assert checkpoints.ledger.final_height == 3
    assert not checkpoints.ledger.unfinalized_heads()


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--accounts", "10", "--cut-ops", "20"], "--cut-ops <= --accounts"),
        (["--cut-ops", "0"], "1 <= --cut-ops"),
        (["--accounts", str(scale.ACCOUNTS_MAX + 1)], f"--accounts <= {scale.ACCOUNTS_MAX}"),
        (["--accounts", "10000", "--cut-ops", str(scale.CUT_OPS_MAX + 1)], "--cut-ops <="),
        (["--rounds", "0"], f"--rounds must be 1..{scale.ROUNDS_MAX}"),
        (["--rounds", str(scale.ROUNDS_MAX + 1)], f"--rounds must be 1..{scale.ROUNDS_MAX}"),
        (["--accounts", "many"], "invalid int value"),
    ],
)
def test_arguments_past_the_bounds_are_refused_before_any_work(argv, says, capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        scale.main(argv)

    assert exited.value.code == 2
    assert says in capsys.readouterr().err
