"""Crash safety of the SQLite store: kill -9 at random moments and a crash at every write point.

A writer process (writer_process.py) prints each acknowledgement after its commit returned.
After each crash the database must open cleanly, pass the full integrity check, hold every
acknowledged op at its acknowledged seq with exact bytes, have seqs 1..n without a gap, and
contain nothing corrupt: every logged or pending envelope still hashes to its op id, no op is
both pending and logged, every acknowledged checkpoint is there with its snapshot, and the
final heights of its ops are recorded exactly when it is stored (`final_heights_match`).

Replay a failing kill run with SWARMD_STORAGE_CRASH_SEED=<seed printed in the failure>.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import random
import signal
import sqlite3
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from swarmd.storage import api
from swarmd.storage.api import NewOp, OpStatus
from swarmd.storage.failpoints import ENV_VAR, FAILPOINT_EXIT_CODE, FAILPOINT_MESSAGE_PREFIX
from swarmd.storage.store import Store

from .writer_process import NETWORK_ID, NODE_KEY, snapshot_blob_for

WRITER = Path(__file__).with_name("writer_process.py")
#: Databases and kill -9 runs on each: 4 x 25 = 100 kills, each database killed repeatedly
#: (also while it is being created) and reopened by the next run.
KILL_DATABASES = 4
KILLS_PER_DATABASE = 25
#: Lines read before the kill: 0 kills right after the spawn (during start-up or creation).
KILL_AFTER_LINES_MAX = 60
#: A writer that prints nothing for this long is hung: a bug, reported as a failure.
LINE_TIMEOUT_S = 30.0
#: The fail-point walk stops here at the latest (the fixed workload has about 40 write points).
FAILPOINT_WALK_MAX = 200
DEFAULT_SEED = 20261127


@dataclass
class Acknowledged:
    ops: dict[int, bytes] = field(default_factory=dict)
    checkpoints: dict[int, tuple[bytes, int]] = field(default_factory=dict)

    def absorb(self, output: bytes) -> None:
        """Count the complete lines only: a line cut by the kill was never acknowledged."""
        for line in output.decode().splitlines(keepends=True):
            if not line.endswith("\n"):
                continue
            words = line.split()
            if words[0] == "ack":
                seq = int(words[1])
                assert seq not in self.ops, f"seq {seq} acknowledged twice"
                self.ops[seq] = bytes.fromhex(words[2])
            elif words[0] == "checkpoint":
                self.checkpoints[int(words[1])] = (bytes.fromhex(words[2]), int(words[3]))


async def start_writer(
    database: Path, seed: int, run: int, batches: int, env: dict[str, str], every: int = 0
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *(sys.executable, str(WRITER), str(database)),
        *("--seed", str(seed), "--run", str(run), "--batches", str(batches)),
        *("--checkpoint-every", str(every)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **env},
    )


async def read_all_ops(store: Store) -> list[api.LoggedOp]:
    logged: list[api.LoggedOp] = []
    while page := await store.read_log(len(logged), api.READ_LOG_LIMIT_MAX):
        logged += page
    return logged


async def check_database(database: Path, acknowledged: Acknowledged, context: str) -> int:
    """Open after a crash, check every property, prove the store still writes; return n."""
    store = await Store.open(database, network_id=NETWORK_ID, node_key=NODE_KEY)
    try:
        report = await store.integrity_check()
        assert report.ok, f"{context}: {report.problems}"
        logged = await read_all_ops(store)
        assert [op.seq for op in logged] == list(range(1, len(logged) + 1)), context
        assert store.last_seq == len(logged) == report.ops_checked, context
        for op in logged:
            assert hashlib.sha256(op.envelope).digest() == op.op_id, f"{context}: seq {op.seq}"
        for seq, op_id in acknowledged.ops.items():
            assert seq <= len(logged), f"{context}: acknowledged seq {seq} lost"
            assert logged[seq - 1].op_id == op_id, f"{context}: seq {seq} holds another op"
        pending = await store.load_pending()
        assert not {op.op_id for op in logged} & {op.op_id for op in pending}, context
        for parked in pending:
            assert hashlib.sha256(parked.envelope).digest() == parked.op_id, context
        for height, (checkpoint_id, log_seq) in acknowledged.checkpoints.items():
            checkpoint = await store.get_checkpoint(height)
            assert checkpoint is not None, f"{context}: checkpoint {height} lost"
            assert (checkpoint.checkpoint_id, checkpoint.log_seq) == (checkpoint_id, log_seq)
        for checkpoint in await store.read_checkpoints(0, api.READ_LOG_LIMIT_MAX):
            snapshot = await store.get_snapshot(checkpoint.height)
            assert snapshot is not None, f"{context}: checkpoint without its snapshot"
            assert snapshot.blob == snapshot_blob_for(checkpoint.checkpoint_id), context
            assert checkpoint.log_seq <= len(logged), context
        final_heights_match(database, context)
        envelope = f"after {context}".encode()
        probe = NewOp(hashlib.sha256(envelope).digest(), NODE_KEY, 1, envelope, OpStatus.APPLIED, 0)
        assert await store.append_ops([probe]) == [len(logged) + 1], context
        acknowledged.ops[len(logged) + 1] = probe.op_id
        return len(logged) + 1
    finally:
        await store.close()


def final_heights_match(database: Path, context: str) -> None:
    """The ops logged up to a stored checkpoint's log_seq (after the one before) are final at
    its height, and the ops after the latest one have no final height: a crash never leaves
    a checkpoint without its ops' final heights, nor final heights without their checkpoint
    (the writer passes them to put_checkpoint, one write)."""
    with contextlib.closing(sqlite3.connect(database)) as connection:
        finals = dict(connection.execute("SELECT seq, final_height FROM op_log"))
        bounds = list(connection.execute("SELECT height, log_seq FROM checkpoints ORDER BY height"))
    expected: dict[int, int | None] = dict.fromkeys(finals)
    after = 0
    for height, log_seq in bounds:
        expected.update({seq: height for seq in range(after + 1, log_seq + 1) if seq in finals})
        after = log_seq
    assert finals == expected, f"{context}: final heights differ from the stored checkpoints"


async def kill_after_lines(process: asyncio.subprocess.Process, lines: int) -> bytes:
    """Read `lines` lines (fewer if the writer ends first), SIGKILL it, return all it wrote."""
    assert process.stdout is not None
    output = b""
    for _ in range(lines):
        line = await asyncio.wait_for(process.stdout.readline(), LINE_TIMEOUT_S)
        output += line
        if not line:
            break
    if process.returncode is None:
        process.send_signal(signal.SIGKILL)
    rest = await asyncio.wait_for(process.stdout.read(), LINE_TIMEOUT_S)
    await asyncio.wait_for(process.wait(), LINE_TIMEOUT_S)
    return output + rest


@pytest.mark.slow
async def test_kill_9_at_random_moments_loses_no_acknowledged_op(tmp_path: Path) -> None:
    seed = int(os.environ.get("SWARMD_STORAGE_CRASH_SEED", DEFAULT_SEED))
    rng = random.Random(seed)
    kills = 0
    for database_index in range(KILL_DATABASES):
        database = tmp_path / f"kill{database_index}.db"
        acknowledged = Acknowledged()
        for run in range(KILLS_PER_DATABASE):
            lines = rng.choice([0, rng.randint(1, 5), *[rng.randint(1, KILL_AFTER_LINES_MAX)] * 2])
            process = await start_writer(database, seed, run, batches=1_000, env={})
            output = await kill_after_lines(process, lines)
            assert process.returncode == -signal.SIGKILL, await process.stderr.read()  # type: ignore[union-attr]
            acknowledged.absorb(output)
            context = f"seed {seed} database {database_index} run {run} killed after {lines}"
            await check_database(database, acknowledged, context)
            kills += 1
        assert len(acknowledged.ops) > KILLS_PER_DATABASE, "the writer barely wrote anything"
    assert kills >= 100


@pytest.mark.slow
async def test_a_crash_at_every_write_point_loses_no_acknowledged_op(tmp_path: Path) -> None:
    points_hit: list[str] = []
    for target in range(1, FAILPOINT_WALK_MAX + 1):
        database = tmp_path / f"failpoint{target}.db"
        process = await start_writer(database, 7, 0, batches=4, env={ENV_VAR: str(target)}, every=2)
        output, errors = await asyncio.wait_for(process.communicate(), LINE_TIMEOUT_S)
        acknowledged = Acknowledged()
        acknowledged.absorb(output)
        if process.returncode == 0:
            assert output.endswith(b"done\n")
            break
        assert process.returncode == FAILPOINT_EXIT_CODE, errors.decode()
        message = errors.decode().strip().splitlines()[-1]
        assert message.startswith(f"{FAILPOINT_MESSAGE_PREFIX} {target} "), message
        points_hit.append(message.split()[-1])
        await check_database(database, acknowledged, f"fail-point {target} ({message})")
    else:
        raise AssertionError(f"the workload still had write points after {FAILPOINT_WALK_MAX}")
    expected = {
        "open.before_migrations",
        "migrate_v1.in_transaction",
        "migrate_v1.before_commit",
        "migrate_v1.after_commit",
        "migrate_v2.after_commit",
        "put_pending.before_commit",
        "append_ops.before_commit",
        "append_ops.after_commit",
        "put_checkpoint.in_transaction",
        "put_checkpoint.after_commit",
    }
    assert expected <= set(points_hit), sorted(set(points_hit))
