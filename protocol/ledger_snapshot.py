"""Compat re-export of `swarmd.protocol.ledger.snapshot`."""

# compat re-export until node/ imports the new path (and protocol/node_core.py, being split)
from .ledger.snapshot import (
    SnapshotRecordError,
    build_snapshot,
    state_from_records,
    state_records,
)

__all__ = ["SnapshotRecordError", "build_snapshot", "state_from_records", "state_records"]
