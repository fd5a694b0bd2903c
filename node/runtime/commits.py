"""The daemon's durable writes, through the storage group committer.

`PersistOps` and `PersistCheckpoint` events are queued, in order, on
`swarmd.storage.group_commit.GroupCommitter`: the ops queued while a commit runs share the next
transaction (group commit), each checkpoint is written after the ops queued before it, and the
validator's signing state (`PersistConsensusState`) after both, to its file beside the
database, and each kept precommit's record (`PersistPrecommit`) once, before the state naming
it. `barrier()` is done once everything queued so far is durable: a client submission is
acknowledged, and frames relying on a vote or a checkpoint are sent, only after it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from swarmd.protocol.node_core import PersistCheckpoint, PersistConsensusState, PersistPrecommit
from swarmd.storage.group_commit import GroupCommitter

from ..logs import get_logger
from .persistence import LogAppender, NodeLog
from .signing_state import SigningStateFile

log = get_logger("swarmd.commits")

#: Envelopes one commit writes at most; a longer queue is cut into several commits so one
#: transaction's memory stays bounded (8 KiB x 4096 = 32 MiB).
COMMIT_BATCH_OPS_MAX = 4096


@dataclass
class _StateWrite:
    """A queued signing-state write; a newer state replaces it until it starts."""

    state: PersistConsensusState
    started: bool = False
    future: asyncio.Future[None] | None = None


class NodeWrites:
    """Queues the core's persistence events on the group committer (see the module comment)."""

    def __init__(
        self, node_log: NodeLog, signing_state_file: SigningStateFile | None = None
    ) -> None:
        self.node_log = node_log
        self.signing_state_file = signing_state_file
        self.committer = GroupCommitter(
            LogAppender(node_log),
            batch_ops_max=COMMIT_BATCH_OPS_MAX,
            queue_ops_max=None,  # the core bounds what it emits; a durable write is never refused
            on_error=_log_failure,
        )
        self._state_stored: bytes | None = None
        self._state_latest: bytes | None = None
        #: The newest queued state write, while nothing else was queued after it.
        self._state_last: _StateWrite | None = None
        #: Kept precommits' records not durable yet (a failed write is retried by the next
        #: state naming it), and the ids the records on disk were last pruned to.
        self._records_unsaved: dict[bytes, bytes] = {}
        self._records_pruned: tuple[bytes, ...] | None = None

    @property
    def commits(self) -> int:
        return self.committer.commits

    @property
    def failures(self) -> int:
        return self.committer.failures

    def add_ops(self, envelopes: tuple[bytes, ...]) -> None:
        new_ops = self.node_log.new_ops(envelopes)
        for start in range(0, len(new_ops), COMMIT_BATCH_OPS_MAX):
            self.committer.queue_ops(new_ops[start : start + COMMIT_BATCH_OPS_MAX])
        self._state_last = None

    def add_expired(self, op_id: bytes) -> None:
        """Mark an op the pending pool evicted or expired: queued after its own append (the
        core emitted that first), so the row exists when the mark is written."""
        self.committer.queue_write(lambda: self.node_log.mark_expired([op_id]))

    def add_checkpoint(self, checkpoint: PersistCheckpoint) -> None:
        # A checkpoint's ops were always queued before it (the core emits them in that order),
        # so writing in queue order keeps "a stored checkpoint's ops are stored".
        self.committer.queue_write(lambda: self.node_log.put_checkpoint(checkpoint))
        self._state_last = None

    def add_write(self, write: Callable[[], Awaitable[None]]) -> asyncio.Future[None]:
        """Queue another durable write (a rollback's records) after everything queued so far."""
        future = self.committer.queue_write(write)
        self._state_last = None
        return future

    def add_precommit(self, event: PersistPrecommit) -> None:
        """Queue a kept precommit's record (written once; the state naming it comes next)."""
        if self.signing_state_file is None:
            return
        self._records_unsaved[event.precommit_id] = event.data
        self.committer.queue_write(lambda: self._save_records((event.precommit_id,)))
        self._state_last = None

    async def _save_records(self, ids: tuple[bytes, ...]) -> None:
        """Write the records of `ids` not durable yet, in order."""
        assert self.signing_state_file is not None
        for precommit_id in ids:
            data = self._records_unsaved.get(precommit_id)
            if data is not None:
                await asyncio.to_thread(self.signing_state_file.save_precommit, precommit_id, data)
                self._records_unsaved.pop(precommit_id, None)

    def add_consensus_state(self, state: PersistConsensusState) -> None:
        """Queue the signing state. The core hands over the same state with every periodic
        re-broadcast: when it is the stored one and no commit is pending, or the one already
        on its way, nothing is written (a failed commit leaves the old state stored, so the
        next hand-over writes it, after the records it names that failed too). A newer state
        replaces a queued one that has not started while nothing was queued after it: the
        signing state is never durable before the writes queued ahead of it."""
        if self.signing_state_file is None:
            return
        data, idle = state.data, self.committer.idle
        stored = data == (self._state_stored if idle else self._state_latest)
        if stored and not self._records_unsaved:
            return
        self._state_latest = data
        last = self._state_last
        pending = last is not None and last.future is not None and not last.future.done()
        if last is not None and pending and not last.started:
            last.state = state
            return
        write = _StateWrite(state)
        write.future = self.committer.queue_write(lambda: self._save_state(write))
        self._state_last = write

    async def _save_state(self, write: _StateWrite) -> None:
        """The records the state names first (those whose own write failed), then the state;
        then the records it no longer names go (only those written before it: a record
        queued after this state is written after this runs)."""
        write.started = True
        assert self.signing_state_file is not None
        state = write.state
        await self._save_records(state.precommit_ids)
        await asyncio.to_thread(self.signing_state_file.save, state.data)
        self._state_stored = state.data
        if state.precommit_ids != self._records_pruned:
            keep = set(state.precommit_ids) | set(self._records_unsaved)
            await asyncio.to_thread(self.signing_state_file.prune_precommits, keep)
            self._records_pruned = state.precommit_ids

    def barrier(self) -> asyncio.Future[None]:
        """Done when everything queued so far is durable (or failed to be)."""
        return self.committer.barrier()

    async def stop(self) -> None:
        """Commit what is queued, then stop the writer."""
        await self.committer.close()


def _log_failure(exc: Exception) -> None:
    log.error("commit_failed", error=getattr(exc, "code", type(exc).__name__))
