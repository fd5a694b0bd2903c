"""The daemon logs a root divergence (issue 12) as an error naming the first divergent
height (node/runtime/observe.py)."""

from __future__ import annotations

import io

from swarmd.node.logs import configure_logging, parse_json_lines, reset_logging
from swarmd.node.metrics import NodeMetrics
from swarmd.node.runtime import observe
from swarmd.protocol.node_core import RootDiverged
from swarmd.protocol.sim.harness import Swarm


def test_a_root_divergence_is_logged_as_an_error_with_the_first_height() -> None:
    output = io.StringIO()
    configure_logging("sw1node", "info", "json", stream=output)
    try:
        event = RootDiverged(12, b"\x01" * 32, b"\x02" * 32, 11)
        observe.record(event, NodeMetrics(process_metrics=False), Swarm(1).nodes[0])
    finally:
        reset_logging()
    (line,) = parse_json_lines(output.getvalue())
    assert (line["event"], line["level"]) == ("root_divergence", "error")
    assert line["first_divergent_height"] == 11 and line["height"] == 12
    assert line["own_root"] == "01" * 32 and line["signed_root"] == "02" * 32
