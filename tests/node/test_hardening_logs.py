"""Issue 14, F11: a log stream that fails (EPIPE) never raises into the code that logs."""

from __future__ import annotations

import io

from swarmd.node.logs import configure_logging, get_logger, reset_logging


class BrokenPipe(io.StringIO):
    writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        raise BrokenPipeError(32, "Broken pipe")


def test_a_broken_log_pipe_is_dropped_not_raised() -> None:
    stream = BrokenPipe()
    configure_logging("test-node", "info", "json", stream=stream)
    try:
        log = get_logger("swarmd.test")
        log.info("first")  # meets EPIPE
        log.warning("second")  # not even tried

        assert stream.writes == 1
    finally:
        reset_logging()
