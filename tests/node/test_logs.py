"""Structured logs: JSON lines with timestamp, level, event, logger and node_id."""

from __future__ import annotations

import asyncio
import io
import logging
from datetime import UTC, datetime, timedelta

import pytest
import structlog

from swarmd.node.logs import (
    LoggingSetupError,
    bind_node_id,
    configure_logging,
    get_logger,
    parse_json_lines,
    reset_logging,
)

NODE = "sw1testnode"


@pytest.fixture
def stream():
    output = io.StringIO()
    configure_logging(NODE, "info", "json", stream=output)
    yield output
    reset_logging()


def test_every_line_is_json_with_the_required_fields(stream):
    get_logger("swarmd.test").info("op_accepted", op_id=b"\x01\x02", count=3)
    (event,) = parse_json_lines(stream.getvalue())
    assert event["event"] == "op_accepted"
    assert event["level"] == "info"
    assert event["node_id"] == NODE
    assert event["logger"] == "swarmd.test"
    assert event["count"] == 3
    assert event["op_id"] == "0102"
    stamp = datetime.fromisoformat(event["timestamp"])
    assert stamp.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - stamp) < timedelta(minutes=5)


def test_level_filters_lower_levels(stream):
    logger = get_logger("swarmd.test")
    logger.debug("hidden")
    logger.info("shown")
    logger.warning("also_shown")
    events = parse_json_lines(stream.getvalue())
    assert [(event["event"], event["level"]) for event in events] == [
        ("shown", "info"),
        ("also_shown", "warning"),
    ]


def test_loggers_created_before_configuration_follow_it():
    early = structlog.get_logger("swarmd.early")
    output = io.StringIO()
    configure_logging(NODE, "debug", "json", stream=output)
    try:
        early.debug("late_configured", peer="x")
    finally:
        reset_logging()
    (event,) = parse_json_lines(output.getvalue())
    assert (event["event"], event["node_id"], event["peer"]) == ("late_configured", NODE, "x")


def test_exceptions_are_rendered_into_the_line(stream):
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        get_logger("swarmd.test").exception("handler_failed")
    (event,) = parse_json_lines(stream.getvalue())
    assert event["level"] == "error"
    assert "RuntimeError: boom" in event["exception"]


def test_stdlib_records_use_the_same_pipeline(stream):
    logging.getLogger("aiohttp.access").warning("GET /status %d", 200)
    logging.getLogger("aioice.ice").debug("not at info level")
    (event,) = parse_json_lines(stream.getvalue())
    assert event["event"] == "GET /status 200"
    assert event["logger"] == "aiohttp.access"
    assert event["level"] == "warning"
    assert event["node_id"] == NODE


async def test_bound_node_id_wins_per_task(stream):
    async def node(node_id: str) -> None:
        with bind_node_id(node_id):
            await asyncio.sleep(0)  # let the other task interleave
            get_logger("swarmd.node").info("tick")

    await asyncio.gather(node("sw1alpha"), node("sw1beta"))
    get_logger("swarmd.node").info("outside")
    events = parse_json_lines(stream.getvalue())
    assert sorted(event["node_id"] for event in events if event["event"] == "tick") == [
        "sw1alpha",
        "sw1beta",
    ]
    assert [event["node_id"] for event in events if event["event"] == "outside"] == [NODE]


def test_console_format_is_one_readable_line():
    output = io.StringIO()
    configure_logging(NODE, "info", "console", stream=output)
    try:
        get_logger("swarmd.test").info("started", port=7000)
    finally:
        reset_logging()
    (line,) = output.getvalue().splitlines()
    assert "started" in line
    assert "port=7000" in line
    assert f"node_id={NODE}" in line


@pytest.mark.parametrize(("level", "fmt"), [("loud", "json"), ("info", "xml")])
def test_unknown_level_or_format_is_refused(level, fmt):
    with pytest.raises(LoggingSetupError) as caught:
        configure_logging(NODE, level, fmt, stream=io.StringIO())
    assert caught.value.code == "logging_invalid"
