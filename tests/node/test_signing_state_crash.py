"""A crash at every write point of the signing-state files (fail-points, storage/failpoints.py):
after the record of a kept precommit and before the compact state naming it, after the state,
and everywhere else. After each crash the files restore (every record the state names is
there), every precommit the process reported as sent is among the kept precommits restored,
no two kept precommits share a slot, and a second run finishes the heights from there."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from swarmd.node.runtime.signing_state import SigningStateFile
from swarmd.protocol import consensus
from swarmd.storage.failpoints import ENV_VAR, FAILPOINT_EXIT_CODE, FAILPOINT_MESSAGE_PREFIX
from swarmd.storage.store import Store

from .signing_state_writer import MEMBER, NETWORK_ID, restored_core

WRITER = Path(__file__).with_name("signing_state_writer.py")
HEIGHTS = 3
#: The walk ends when a run reaches no fail-point; it has about 10 (open + 2 per height).
WALK_MAX = 30
RUN_TIMEOUT_S = 60.0


async def _run(data_file: Path, run: int, failpoint: int) -> tuple[int, dict[int, bytes], str]:
    """One writer run: its exit code, the precommits it reported sent by height, stderr."""
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, str(WRITER), str(data_file)),
        *("--run", str(run), "--heights", str(HEIGHTS)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, ENV_VAR: str(failpoint)},
    )
    out, err = await asyncio.wait_for(process.communicate(), RUN_TIMEOUT_S)
    sent: dict[int, bytes] = {}
    for line in out.decode().splitlines(keepends=True):
        words = line.split()
        if line.endswith("\n") and words[0] == "sent":
            sent[int(words[1])] = bytes.fromhex(words[2])
    assert process.returncode is not None
    return process.returncode, sent, err.decode()


def _check(data_file: Path, sent: dict[int, bytes]) -> int:
    """Restore from the files as a restart does; the height decided last."""
    core, decided = restored_core(SigningStateFile.beside(data_file))
    kept = core.kept_precommit_ids()
    assert set(sent.values()) <= set(kept), "a precommit that left is not kept after the crash"
    assert decided >= max(sent, default=0)
    if decided == 0:  # no state durable yet: nothing kept (a record alone binds nothing)
        assert kept == ()
        return 0
    whole = consensus.decode_signing_state(core.signing_state(), NETWORK_ID, MEMBER.public_key)
    slots = {(m.epoch, m.height, m.round) for m, _ in whole.precommits_kept}
    assert len(slots) == len(kept), "two kept precommits for one slot"
    return decided


@pytest.mark.slow
async def test_a_crash_at_every_signing_state_write_point(tmp_path: Path) -> None:
    crashed_at: list[str] = []
    for target in range(1, WALK_MAX + 1):
        data_file = tmp_path / f"crash-{target}" / "node.db"
        data_file.parent.mkdir()
        # Created and migrated here: the writer's fail-points are its own writes.
        store = await Store.open(data_file, network_id=NETWORK_ID, node_key=MEMBER.public_key)
        await store.close()
        code, first, err = await _run(data_file, 1, target)
        if code == 0:
            assert len(first) == HEIGHTS and target > HEIGHTS
            break
        assert code == FAILPOINT_EXIT_CODE and FAILPOINT_MESSAGE_PREFIX in err, err
        crashed_at.append(err.split()[-1])
        _check(data_file, first)
        code, second, err = await _run(data_file, 2, 0)
        assert code == 0, err
        assert not set(first) & set(second), "a height whose precommit left was decided again"
        assert _check(data_file, {**first, **second}) == HEIGHTS
    else:
        raise AssertionError(f"the writer still crashed at fail-point {WALK_MAX}")
    assert crashed_at.count("signing_state.precommit_saved") == HEIGHTS
    assert crashed_at.count("signing_state.saved") == HEIGHTS
