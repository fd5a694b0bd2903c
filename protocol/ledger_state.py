"""Compat re-export of `swarmd.protocol.ledger.state`."""

# compat re-export until node/ imports the new path (and protocol/node_core.py, being split)
from .ledger.state import Account, Binding, Claim, EndorsementKey, LedgerState, unreceived_term

__all__ = ["Account", "Binding", "Claim", "EndorsementKey", "LedgerState", "unreceived_term"]
