"""Structured logs: one JSON object per line with timestamp (ISO 8601, UTC), level, event,
logger and node_id, through structlog.

`configure_logging` sets the process-wide pipeline; the node id given there is added to every
line. Processes that run several nodes (tests, an in-process devnet) bind each node's id in
its own asyncio context with `bind_node_id`, which wins over the process default. Records from
the standard `logging` module (aiohttp, aiortc, aioice) go through the same pipeline, so the
output stays one format.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any, TextIO

import structlog

from swarmd.protocol.errors import LocalProtocolError

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
FORMATS = ("json", "console")

#: Longest rendered value of a stdlib log message; a library logging a whole SDP or packet
#: dump at debug level should not produce megabyte lines.
STDLIB_MESSAGE_SIZE_MAX = 8192


class LoggingSetupError(LocalProtocolError):
    """`configure_logging` was called with an unknown level or format."""

    code = "logging_invalid"


class _LineLogger:
    """Writes each rendered event as one line; structlog calls the method named by level."""

    def __init__(self, factory: _LineLoggerFactory, name: str | None) -> None:
        self.factory = factory
        self.name = name

    def msg(self, message: str) -> None:
        # aiortc and aioice log from the event loop but the default executor may log too.
        factory = self.factory
        with factory.lock:
            if factory.closed:
                return
            try:
                factory.stream.write(message + "\n")
                factory.stream.flush()
            except (OSError, ValueError):
                # The reader of our pipe went away (`swarmd run 2>&1 | head -2`: EPIPE) or the
                # stream was closed. Logging must never take a caller down with it (a handler,
                # the signal path, the stop): drop this and every later line.
                factory.closed = True

    log = debug = info = warning = warn = error = critical = exception = fatal = msg


class _LineLoggerFactory:
    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.lock = threading.Lock()
        #: Set once a write failed; later lines are dropped.
        self.closed = False

    def __call__(self, *args: Any) -> _LineLogger:
        name = args[0] if args and isinstance(args[0], str) else None
        return _LineLogger(self, name)


def _json_default(value: object) -> str:
    """bytes (ids, hashes) as hex; anything else as its str()."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return str(value)


def _processors(node_id_text: str, fmt: str) -> list[Any]:
    def add_node_id(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        event.setdefault("node_id", node_id_text)
        return event

    def add_logger_name(
        logger: Any, __: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        name = getattr(logger, "name", None)
        if name is not None:
            event.setdefault("logger", name)
        return event

    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        add_node_id,
        add_logger_name,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    if fmt == "json":
        return [
            *shared,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(default=_json_default),
        ]
    return [*shared, structlog.dev.ConsoleRenderer(colors=False)]


class _StdlibBridge(logging.Handler):
    """Forwards standard `logging` records into the structlog pipeline."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()[:STDLIB_MESSAGE_SIZE_MAX]
            method = record.levelname.lower() if record.levelname.lower() in LEVELS else "info"
            logger = structlog.get_logger(record.name)
            if record.exc_info:
                getattr(logger, method)(message, exc_info=record.exc_info)
            else:
                getattr(logger, method)(message)
        except Exception:
            self.handleError(record)


_bridge: _StdlibBridge | None = None

#: Libraries whose info lines are free text about their internals (aioice: every candidate
#: pair check, 16 of a node's first 64 lines): only their warnings and errors are shown.
QUIET_LIBRARY_LOGGERS = ("aioice",)


def configure_logging(
    node_id_text: str, level: str = "info", fmt: str = "json", stream: TextIO | None = None
) -> None:
    """Send every swarmd log line to `stream` (default stderr) in format `fmt`.

    `level` is one of LEVELS; `fmt` is "json" (one object per line) or "console".
    Calling it again replaces the previous configuration.
    """
    global _bridge
    if level not in LEVELS:
        raise LoggingSetupError(f"unknown log level {level!r} (known: {', '.join(LEVELS)})")
    if fmt not in FORMATS:
        raise LoggingSetupError(f"unknown log format {fmt!r} (known: {', '.join(FORMATS)})")
    structlog.configure(
        processors=_processors(node_id_text, fmt),
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=_LineLoggerFactory(stream if stream is not None else sys.stderr),
        # Not cached: modules create their loggers at import time, before configuration, and
        # tests reconfigure; logging is never on a per-op hot path.
        cache_logger_on_first_use=False,
    )
    root = logging.getLogger()
    if _bridge is not None:
        root.removeHandler(_bridge)
    _bridge = _StdlibBridge(level=LEVELS[level])
    root.addHandler(_bridge)
    root.setLevel(LEVELS[level])
    for name in QUIET_LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(max(LEVELS[level], logging.WARNING))


def get_logger(name: str) -> Any:
    """A structlog logger whose lines carry `logger=name`."""
    return structlog.get_logger(name)


@contextmanager
def bind_node_id(node_id_text: str) -> Iterator[None]:
    """Within this block (and tasks created in it) log lines carry `node_id_text`."""
    with structlog.contextvars.bound_contextvars(node_id=node_id_text):
        yield


def parse_json_lines(output: str) -> list[dict[str, Any]]:
    """The events of JSON log output (for tests and the log-reading tools)."""
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def reset_logging() -> None:
    """Undo `configure_logging`: structlog defaults, no stdlib bridge (for tests)."""
    global _bridge
    structlog.reset_defaults()
    for name in QUIET_LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET)
    if _bridge is not None:
        logging.getLogger().removeHandler(_bridge)
        _bridge = None
