"""Every scenario's trace digest with the `Persist*` event lines left out (branch sigstate).

The signing state's format changed (compact, plus a `PersistPrecommit` per kept precommit), so
every trace hash changed: the trace records each persist event. This prints the digests of
the rest (every delivered frame, every other event, every fault and check) as JSON, to compare
a checkout before the change with one after:

    PYTHONPATH=/tmp/before python tests/sim/trace_hashes_without_persist.py 10 > before.json
    python tests/sim/trace_hashes_without_persist.py 10 > after.json && diff before.json after.json

(/tmp/before/swarmd: `git archive <commit>` of the checkout before.) It swaps the simulator's
hash constructor for one that skips those lines; a tool, not a test.
"""

from __future__ import annotations

import hashlib
import json
import sys
from typing import Any

from swarmd.protocol.sim import scenarios, simulator


class _WithoutPersist:
    def __init__(self, data: bytes = b"") -> None:
        self._hash = hashlib.sha256(data)

    def update(self, data: bytes) -> None:
        if not (data.startswith(b"E|") and b"|Persist" in data):
            self._hash.update(data)

    def copy(self) -> _WithoutPersist:
        other = _WithoutPersist()
        other._hash = self._hash.copy()
        return other

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


class _Hashlib:
    sha256 = _WithoutPersist


def main(seeds: int) -> dict[str, str]:
    module: Any = simulator
    module.hashlib = _Hashlib
    digests = {}
    for name in scenarios.scenario_names():
        digest = hashlib.sha256()
        for seed in range(1, seeds + 1):
            digest.update(scenarios.run_scenario(name, seed).trace_hash.encode() + b"\n")
        digests[name] = digest.hexdigest()
    return digests


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]) if len(sys.argv) > 1 else 10), indent=1, sort_keys=True))
