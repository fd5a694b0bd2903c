"""Nodes started by a devnet stop with it.

`swarmd devnet`, the swarm benchmark and the integration tests start `swarmd run` processes in
sessions of their own (a terminal's Ctrl-C goes to the devnet, which stops them in order). If
the devnet itself dies without stopping them (kill -9, a CI timeout), they would run on as
orphans holding ports and CPU. The devnet names itself in `SWARMD_EXIT_WITH_PARENT`; a node
that finds its pid there asks Linux for SIGTERM when its parent dies (prctl PR_SET_PDEATHSIG),
which stops it cleanly like any SIGTERM. Elsewhere the setting only checks the parent is alive.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Mapping

from .common import CliError

EXIT_WITH_PARENT_ENV = "SWARMD_EXIT_WITH_PARENT"
#: prctl(2) option: the signal this process gets when its parent dies.
PR_SET_PDEATHSIG = 1


def exit_with_parent(environ: Mapping[str, str]) -> bool:
    """Arrange to get SIGTERM when the process named in the environment dies; returns whether
    it was asked for. Raises CliError when that process is already gone (or is not our parent):
    a node must not start as an orphan."""
    value = environ.get(EXIT_WITH_PARENT_ENV)
    if not value:
        return False
    try:
        parent = int(value)
    except ValueError:
        raise CliError(
            f"{EXIT_WITH_PARENT_ENV} must be a process id, not {value!r}", "bad_environment"
        ) from None
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
            error = ctypes.get_errno()
            raise CliError(f"prctl(PR_SET_PDEATHSIG) failed: {os.strerror(error)}", "os_error")
    # Checked after prctl: a parent that died before it would never send the signal.
    if os.getppid() != parent:
        raise CliError(f"the process that started this node ({parent}) is gone", "orphaned")
    return True
