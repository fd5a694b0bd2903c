"""deploy/: the Prometheus alert rules pass `promtool check rules` and their unit tests (the
no-finality and participation alerts fire on synthetic series), and every swarmd metric the
rules and the Grafana dashboard name is one the node exports.

promtool comes from Debian's `prometheus` package (.ci/run installs it); without it the two
promtool tests are skipped, the metric-name checks still run."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from swarmd.node.metrics import NodeMetrics
from swarmd.node.runtime.observe import telemetry_gauges

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RULES = DEPLOY / "prometheus" / "swarmd-alerts.yml"
RULE_TESTS = DEPLOY / "prometheus" / "swarmd-alerts.test.yml"
DASHBOARD = DEPLOY / "grafana" / "swarmd-dashboard.json"
METRIC_NAME = re.compile(r"\bswarmd_[a-z0-9_]+")
SAMPLE_SUFFIXES = ("", "_total", "_bucket", "_sum", "_count", "_created")

promtool = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(promtool is None, reason="promtool (Debian: prometheus)")


def exported_families() -> set[str]:
    metrics = NodeMetrics(process_metrics=False)
    telemetry_gauges(metrics.registry)  # (registered by the API app: node/runtime/observe.py)
    text = metrics.render().decode()
    return {family.name for family in text_string_to_metric_families(text)}


def unknown_metrics(expressions: list[str]) -> set[str]:
    families = exported_families()
    names = {name for expr in expressions for name in METRIC_NAME.findall(expr)}
    return {
        name
        for name in names
        if not any(name.removesuffix(s) in families for s in SAMPLE_SUFFIXES if name.endswith(s))
    }


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


@needs_promtool
def test_promtool_checks_the_rules() -> None:
    result = subprocess.run(
        [str(promtool), "check", "rules", str(RULES)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_no_finality_and_participation_alerts_fire_on_synthetic_series() -> None:
    result = subprocess.run(
        [str(promtool), "test", "rules", str(RULE_TESTS)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    tests = RULE_TESTS.read_text()
    assert "alertname: SwarmdNoFinality" in tests and "alertname: SwarmdParticipationLow" in tests


def test_the_rules_name_only_exported_metrics() -> None:
    text = RULES.read_text()
    expressions = [line for line in text.splitlines() if "swarmd_" in line]
    assert expressions
    assert unknown_metrics(expressions) == set()


def test_every_dashboard_expression_names_an_exported_metric() -> None:
    expressions = dashboard_expressions()
    assert len(expressions) >= 20
    assert all(METRIC_NAME.search(expr) for expr in expressions)
    assert unknown_metrics(expressions) == set()


def test_the_name_check_can_fail() -> None:
    assert unknown_metrics(["rate(swarmd_no_such_metric_total[5m])"]) == {
        "swarmd_no_such_metric_total"
    }
    assert unknown_metrics(["swarmd_final_height", "swarmd_ops_total"]) == set()
