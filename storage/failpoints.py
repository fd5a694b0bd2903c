"""Fail-points: crash the process at the Nth write point (CometBFT's FAIL_TEST_INDEX).

The store calls `failpoint(name)` before and after every commit and between the statements of
a multi-statement transaction. With the environment variable SWARMD_FAILPOINT=N (N >= 1) the
Nth call writes one line to stderr and ends the process with `os._exit(1)`: no cleanup, no
flush, no `finally` blocks, as close to a power cut as a process can get without the kernel.
Without the variable (or with 0) a fail-point costs one integer comparison.

The crash-safety test walks N = 1, 2, 3, ... over a fixed workload until the workload finishes
without reaching N, so every write point is crashed at once.
"""

from __future__ import annotations

import os
import sys

ENV_VAR = "SWARMD_FAILPOINT"
#: The exit status of a process stopped by a fail-point (as CometBFT's fail package).
FAILPOINT_EXIT_CODE = 1
#: The line written to stderr just before exiting; tests look for it.
FAILPOINT_MESSAGE_PREFIX = "swarmd failpoint"


def _target_from_environment() -> int:
    raw = os.environ.get(ENV_VAR, "").strip()
    if not raw:
        return 0
    try:
        target = int(raw)
    except ValueError:
        # A typo in a test harness must not silently disable the crash it asked for.
        raise SystemExit(f"{ENV_VAR} must be an integer, not {raw!r}") from None
    return max(target, 0)


_target = _target_from_environment()
_count = 0


def failpoint(name: str) -> None:
    """Count one write point; exit the process when the count reaches SWARMD_FAILPOINT."""
    global _count
    if _target == 0:
        return
    _count += 1
    if _count == _target:
        sys.stderr.write(f"{FAILPOINT_MESSAGE_PREFIX} {_count} {name}\n")
        sys.stderr.flush()
        os._exit(FAILPOINT_EXIT_CODE)
