"""The `swarmd` command line (`swarmd.node.cli:main` is the console entry point).

One module per command group (keys, offline, chaos, recovery, rollback, snapshots, home,
wallet, devnet), `common` for what they share, `main` for the parser.
"""

from .main import main

__all__ = ["main"]
