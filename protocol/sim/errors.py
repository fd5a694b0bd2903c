"""The simulator's own errors (a misuse or a core breaking the sans-I/O contract)."""

from __future__ import annotations

from ..errors import LocalProtocolError


class SimulationError(LocalProtocolError):
    """The simulator was misused or a core broke a rule of the sans-I/O contract."""

    code = "simulation_error"


class SimActionsExceededError(SimulationError):
    code = "sim_actions_exceeded"
