"""What the daemon needs from durable storage, and the adapters that provide it.

The driver (node/daemon.py) talks to a `NodeLog`: append op envelopes, store checkpoint
bundles, read both back at start, keep the admin mode. `open_node_log` returns the adapter
over `swarmd.storage.store.Store` (the project's store).
Each write is durable when its coroutine returns; a write that raises wrote nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from swarmd.protocol import encoding
from swarmd.protocol.node_core import Mode, PersistCheckpoint
from swarmd.protocol.ops import Op, envelope_metadata, op_id_of

#: Store meta key of the live state root recorded at a clean stop: [log seq, root].
LIVE_STATE_META_KEY = "live_state"
#: Rows read per query while loading the log at start: bounds memory per read.
LOAD_PAGE_ROWS = 4096
#: Mode reasons longer than this are cut (the store bounds meta values; a reason is one line).
MODE_REASON_SIZE_BYTES_MAX = 256


class NodeLog(Protocol):
    async def append_ops(self, envelopes: Sequence[bytes]) -> None: ...

    async def put_checkpoint(self, checkpoint: PersistCheckpoint) -> None: ...

    async def load(self) -> tuple[list[bytes], list[bytes]]:
        """(envelopes in log order, checkpoint bundles by ascending height)."""
        ...

    async def latest_snapshot(self) -> tuple[int, bytes] | None:
        """(height, blob) of the newest stored state snapshot, or None. Raises the store's
        CorruptDatabaseError when its bytes fail their checksum."""
        ...

    async def snapshot_heights(self) -> list[int]:
        """Heights of the stored snapshots a restore may use, ascending."""
        ...

    async def get_snapshot(self, height: int) -> bytes | None:
        """The snapshot blob at `height` (None: none stored); CorruptDatabaseError as above."""
        ...

    async def get_bundle(self, height: int) -> bytes | None: ...

    async def latest_height(self) -> int: ...

    async def get_mode(self) -> tuple[Mode, str]: ...

    async def set_mode(self, mode: Mode, reason: str) -> None: ...

    async def record_live_state(self, state_root: bytes) -> None: ...

    async def close(self) -> None: ...


def _clip_reason(reason: str) -> str:
    data = reason.encode()[:MODE_REASON_SIZE_BYTES_MAX]
    return data.decode(errors="ignore")


# --- the project's store -------------------------------------------------------------------


class StoreLog:
    """`NodeLog` over `swarmd.storage` (`OpStore`)."""

    def __init__(
        self, store: Any, api: Any, errors: Any, snapshots_kept: int | None = None
    ) -> None:
        self.store = store
        self.api = api
        self.errors = errors
        #: Snapshots kept when a new one is stored (None: all; see `[storage].snapshots_kept`).
        self.snapshots_kept = snapshots_kept
        #: The decoded op of an op id, when the caller knows it (the daemon: its ledger). It
        #: saves decoding each envelope again for its author and seq (~6 us an op); the id is
        #: the envelope's hash, so a known id always names this very envelope.
        self.known_op: Callable[[bytes], Op | None] | None = None

    async def append_ops(self, envelopes: Sequence[bytes]) -> None:
        now_ms = int(time.time() * 1000)
        new_op = self.api.NewOp
        applied = self.api.OpStatus.APPLIED
        known_op = self.known_op
        new_ops = []
        for envelope in envelopes:
            # The core admitted it already: its metadata needs no checks.
            op_id = op_id_of(envelope)
            op = known_op(op_id) if known_op is not None else None
            if op is not None:
                author, seq = op.author, op.seq
            else:
                op_id, author, seq = envelope_metadata(envelope)
            new_ops.append(new_op(op_id, author, seq, envelope, applied, now_ms))
        unique = list({op.op_id: op for op in new_ops}.values())
        for start in range(0, len(unique), self.api.APPEND_OPS_MAX):
            chunk = unique[start : start + self.api.APPEND_OPS_MAX]
            try:
                await self.store.append_ops(chunk)
            except self.errors.DuplicateOpError:
                # An op logged before (e.g. evicted from the pending pool after a restart and
                # received again): write the others one by one and skip what is already there.
                for op in chunk:
                    try:
                        await self.store.append_ops([op])
                    except self.errors.DuplicateOpError:
                        # Logged before. If a rollback had marked it reverted and it came back
                        # by sync, it is live again: without this it would be dropped at the
                        # next restart while a later checkpoint needs it.
                        logged = await self.store.get_op(op.op_id)
                        if logged is not None and logged.status == self.api.OpStatus.REVERTED:
                            await self.store.mark_status([op.op_id], self.api.OpStatus.APPLIED)

    async def put_checkpoint(self, checkpoint: PersistCheckpoint) -> None:
        record = self.api.Checkpoint(
            checkpoint.height,
            checkpoint.checkpoint_id,
            checkpoint.state_root,
            checkpoint.bundle,
            self.store.last_seq,
        )
        # The snapshot goes in the same transaction as its checkpoint, and pruning the old
        # ones too: after a crash the store holds both or neither.
        await self.store.put_checkpoint(
            record, checkpoint.snapshot, snapshots_kept=self.snapshots_kept
        )

    async def latest_snapshot(self) -> tuple[int, bytes] | None:
        snapshot = await self.store.latest_snapshot()
        return None if snapshot is None else (int(snapshot.height), bytes(snapshot.blob))

    async def load(self) -> tuple[list[bytes], list[bytes]]:
        envelopes: list[bytes] = []
        after = 0
        while True:
            rows = await self.store.read_log(after, LOAD_PAGE_ROWS)
            envelopes += [row.envelope for row in rows if row.status != self.api.OpStatus.REVERTED]
            if len(rows) < LOAD_PAGE_ROWS:
                break
            after = rows[-1].seq
        bundles: list[bytes] = []
        height = 0
        while True:
            checkpoints = await self.store.read_checkpoints(height, LOAD_PAGE_ROWS)
            bundles += [checkpoint.bundle for checkpoint in checkpoints]
            if len(checkpoints) < LOAD_PAGE_ROWS:
                break
            height = checkpoints[-1].height
        return envelopes, bundles

    async def snapshot_heights(self) -> list[int]:
        return [int(height) for height in await self.store.snapshot_heights()]

    async def get_snapshot(self, height: int) -> bytes | None:
        snapshot = await self.store.get_snapshot(height)
        return None if snapshot is None or not snapshot.blob else bytes(snapshot.blob)

    async def get_bundle(self, height: int) -> bytes | None:
        checkpoint = await self.store.get_checkpoint(height)
        return None if checkpoint is None else bytes(checkpoint.bundle)

    async def latest_height(self) -> int:
        checkpoint = await self.store.latest_checkpoint()
        return 0 if checkpoint is None else int(checkpoint.height)

    async def get_mode(self) -> tuple[Mode, str]:
        mode, reason = await self.store.get_mode()
        return Mode(str(mode.value).replace("_", "-")), str(reason)

    async def set_mode(self, mode: Mode, reason: str) -> None:
        await self.store.set_mode(
            self.api.NodeMode(mode.value.replace("-", "_")), _clip_reason(reason)
        )

    async def record_live_state(self, state_root: bytes) -> None:
        """Remember the provisional state root at the current end of the log."""
        value = encoding.encode([self.store.last_seq, state_root])
        await self.store.set_meta(LIVE_STATE_META_KEY, value)

    async def close(self) -> None:
        await self.store.close()


async def open_node_log(
    path: Path,
    *,
    network_id: bytes,
    node_key: bytes,
    synchronous: str = "FULL",
    snapshots_kept: int | None = None,
) -> NodeLog:
    """The node's log over the project's store (`swarmd.storage.store.Store`)."""
    from swarmd.storage import api, errors
    from swarmd.storage.store import Store

    if snapshots_kept is not None:
        api.check_snapshots_kept(snapshots_kept)
    store = await Store.open(
        path, network_id=network_id, node_key=node_key, synchronous=synchronous
    )
    return StoreLog(store, api, errors, snapshots_kept)
