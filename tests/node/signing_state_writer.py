"""A validator's signing-state writes in a process of its own, for the crash tests (fail-points).

    python tests/node/signing_state_writer.py DATA_FILE --run R --heights H

A lone council member (a `Tendermint` core) resumes from the signing-state files beside
DATA_FILE (whose store the caller created), then decides heights up to H, one step each.
After each step it hands the core's persist events to `NodeWrites` as the driver does (the
records of the new kept precommits, then the compact state) and, once `barrier()` is done
(when the driver would send the step's messages), prints

    sent <height> <precommit id hex>

The values carry the run number, so a height decided again after a crash (its precommit
never left) is another value, another precommit.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import sys
from pathlib import Path

from swarmd.node.runtime.commits import NodeWrites
from swarmd.node.runtime.persistence import open_node_log
from swarmd.node.runtime.signing_state import SigningStateFile
from swarmd.protocol import consensus, crypto
from swarmd.protocol.node_core import PersistConsensusState, PersistPrecommit

MEMBER = crypto.KeyPair.from_seed(hashlib.sha256(b"signing state crash member").digest())
NETWORK_ID = hashlib.sha256(b"signing state crash network").digest()


def restored_core(state_file: SigningStateFile) -> tuple[consensus.Tendermint, int]:
    """A core resumed from the files, and the height it decided last (0: none)."""
    core = consensus.Tendermint(
        network_id=NETWORK_ID, validators=[MEMBER.public_key], keypair=MEMBER
    )
    state = state_file.load()
    if state is None:
        return core, 0
    core.restore_precommits(state, state_file.load_precommits(state))
    core.restore_signing_state(state, 0.0)
    assert core.decided, "a lone member's durable state is of a decided height"
    return core, consensus.decode_signing_state(state, NETWORK_ID, MEMBER.public_key).height


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("data_file", type=Path)
    parser.add_argument("--run", type=int, required=True)
    parser.add_argument("--heights", type=int, required=True)
    args = parser.parse_args(argv)
    node_log = await open_node_log(
        args.data_file, network_id=NETWORK_ID, node_key=MEMBER.public_key
    )
    state_file = SigningStateFile.beside(args.data_file)
    writes = NodeWrites(node_log, state_file)
    core, decided = restored_core(state_file)
    core.messages_to_send()  # a restored core's messages left before its state was durable
    for height in range(decided + 1, args.heights + 1):
        core.start_height(height, 0.0)
        core.provide_value(height, 0, b"run %d height %d" % (args.run, height), 0.0)
        assert core.decided and core.messages_to_send()
        for precommit_id, record in core.take_unsaved_precommits():
            writes.add_precommit(PersistPrecommit(precommit_id, record))
        state = core.signing_state_compact()
        writes.add_consensus_state(PersistConsensusState(state, core.kept_precommit_ids()))
        await writes.barrier()
        sys.stdout.write(f"sent {height} {core.kept_precommit_ids()[-1].hex()}\n")
        sys.stdout.flush()
    await writes.stop()
    await node_log.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
