"""`python -m swarmd.node.cli` (how the devnet starts its nodes) is `swarmd`."""

import sys

from .main import main

sys.exit(main())
