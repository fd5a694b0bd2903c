"""Group commit: many writers' appends share one transaction and one fsync.

Each caller awaits `GroupCommitter.append(ops)` (or queues with `queue_ops` and keeps the
future). Requests queue while the store is busy; as soon as the writer is free, one flusher
task takes everything queued (up to `batch_ops_max` ops), commits it with a single
`append_ops`, and resolves each caller's future with its own seqs, only after the commit. No
timer is involved: under light load a request is committed at once (a batch of one), under
heavy load batches grow by themselves while the previous fsync runs.

A request that makes the shared batch fail (a malformed op, an op id already logged, or the
same op submitted by two callers) must not fail its neighbours: the batch is then retried
request by request, so only the guilty request gets StoreUsageError or DuplicateOpError. (The
ops are checked once, by the store, not also here: the check costs about a microsecond per op.)

Writes other than op appends (the daemon's checkpoints and its signing state file) queue with
`queue_write`. The flusher takes everything queued while it was busy as one group: first the
group's ops (merged into as few commits as `batch_ops_max` allows), then its writes in queue
order; a write runs only when nothing before it in its group failed (a checkpoint is never
stored without its ops). `barrier()` is done once everything queued before it is durable, and
fails with the first error of its group: the daemon acknowledges a client, or sends frames that
rely on a write, only after it.

A caller that is cancelled after queueing may still have its ops committed; it just does not
hear about it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from . import api
from .api import NewOp
from .errors import DuplicateOpError, StorageOverloadedError, StoreClosedError, StoreUsageError

#: Ops per group commit: 1000 rows amortize the commit's fsync (measured ~150 us) to well under
#: a microsecond per op, and keep one INSERT statement (storage.store.OPS_PER_STATEMENT_MAX).
GROUP_COMMIT_BATCH_OPS_MAX: Final = 1_000
#: Ops waiting for a commit before new requests are refused with StorageOverloadedError (HTTP
#: 503): ten batches, i.e. about a tenth of a second of writing at the measured rate.
GROUP_COMMIT_QUEUE_OPS_MAX: Final = 10 * GROUP_COMMIT_BATCH_OPS_MAX


class OpAppender(Protocol):
    """Where the committer writes ops: an `OpStore`, or an adapter over one."""

    async def append_ops(self, ops: Sequence[NewOp]) -> list[int]: ...


@dataclass(slots=True)
class _Request:
    ops: list[NewOp]
    future: asyncio.Future[list[int]]


@dataclass(slots=True)
class _Write:
    write: Callable[[], Awaitable[None]]
    future: asyncio.Future[None]


@dataclass(slots=True)
class _Barrier:
    future: asyncio.Future[None]


class GroupCommitter:
    def __init__(
        self,
        store: OpAppender,
        *,
        batch_ops_max: int = GROUP_COMMIT_BATCH_OPS_MAX,
        queue_ops_max: int | None = GROUP_COMMIT_QUEUE_OPS_MAX,
        on_error: Callable[[Exception], None] | None = None,
    ) -> None:
        """`queue_ops_max` None: never refuse (the daemon, whose core bounds what it queues).
        `on_error` hears every failed request or write (the daemon logs them)."""
        too_small = queue_ops_max is not None and queue_ops_max < batch_ops_max
        if not 1 <= batch_ops_max <= api.APPEND_OPS_MAX or too_small:
            raise StoreUsageError("need 1 <= batch_ops_max <= APPEND_OPS_MAX <= queue_ops_max")
        self._store = store
        self._batch_ops_max = batch_ops_max
        self._queue_ops_max = queue_ops_max
        self._on_error = on_error
        self._queue: deque[_Request | _Write | _Barrier] = deque()
        self._queued_ops = 0
        self._flusher: asyncio.Task[None] | None = None
        self._closed = False
        #: The newest barrier, and whether anything was queued after it.
        self._last_barrier: asyncio.Future[None] | None = None
        self._queued_since_barrier = False
        #: Commits made (op batches and writes), ops committed and failures, for metrics/tests.
        self.commits = 0
        self.ops_committed = 0
        self.failures = 0

    @property
    def queued_ops(self) -> int:
        return self._queued_ops

    @property
    def idle(self) -> bool:
        """Nothing is queued or being written."""
        return not self._queue and (self._flusher is None or self._flusher.done())

    async def append(self, ops: Sequence[NewOp]) -> list[int]:
        """Append `ops` (atomically, in order) and return their seqs after the commit."""
        return await self.queue_ops(ops)

    def queue_ops(self, ops: Sequence[NewOp]) -> asyncio.Future[list[int]]:
        """`append` without waiting: the future resolves after the commit."""
        if self._closed:
            raise StoreClosedError("the group committer is closed")
        if len(ops) > self._batch_ops_max:
            raise StoreUsageError(f"{len(ops)} ops exceed batch_ops_max {self._batch_ops_max}")
        future: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        if not ops:
            future.set_result([])
            return future
        if self._queue_ops_max is not None and self._queued_ops + len(ops) > self._queue_ops_max:
            raise StorageOverloadedError(f"{self._queued_ops} ops already wait for a commit")
        self._queued_ops += len(ops)
        self._enqueue(_Request(list(ops), future))
        return future

    def queue_write(self, write: Callable[[], Awaitable[None]]) -> asyncio.Future[None]:
        """Run `write` after everything queued so far (see the module comment)."""
        if self._closed:
            raise StoreClosedError("the group committer is closed")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._enqueue(_Write(write, future))
        return future

    def barrier(self) -> asyncio.Future[None]:
        """Done when everything queued so far is durable; fails with the first error among
        what was queued since the previous barrier."""
        last = self._last_barrier
        if not self._queued_since_barrier and last is not None and not last.done():
            return last
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if not self._queued_since_barrier:  # everything queued before is settled
            future.set_result(None)
            return future
        self._last_barrier = future
        self._queued_since_barrier = False
        self._queue.append(_Barrier(future))
        self._start_flusher()
        return future

    async def close(self) -> None:
        """Refuse new requests and wait until every queued one is committed or failed."""
        self._closed = True
        if self._flusher is not None:
            await self._flusher

    def _enqueue(self, item: _Request | _Write) -> None:
        self._queue.append(item)
        self._queued_since_barrier = True
        self._start_flusher()

    def _start_flusher(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())

    async def _flush(self) -> None:
        while self._queue:
            # One group: everything queued so far. Its ops go first, merged into as few
            # commits as batch_ops_max allows; then its writes and barriers, in queue order.
            group = list(self._queue)
            self._queue.clear()
            failure = await self._commit_ops([i for i in group if isinstance(i, _Request)])
            for item in group:
                if isinstance(item, _Barrier):
                    _settle(item.future, failure)
                elif isinstance(item, _Write):
                    failure = await self._run_write(item, failure)

    async def _commit_ops(self, requests: list[_Request]) -> Exception | None:
        """Commit `requests` in order, in batches; the first error, if any."""
        failure: Exception | None = None
        index = 0
        while index < len(requests):
            batch = [requests[index]]
            size = len(batch[0].ops)
            index += 1
            while index < len(requests) and size + len(requests[index].ops) <= self._batch_ops_max:
                size += len(requests[index].ops)
                batch.append(requests[index])
                index += 1
            self._queued_ops -= size
            error = await self._commit(batch)
            failure = failure or error
        return failure

    async def _run_write(self, item: _Write, failure: Exception | None) -> Exception | None:
        """Run one write unless something before it in its group failed; the group's first
        error so far."""
        if failure is not None:
            _settle(item.future, failure)
            return failure
        try:
            await item.write()
        except Exception as error:
            self._failed(error)
            _settle(item.future, error)
            return error
        self.commits += 1
        _settle(item.future, None)
        return None

    async def _commit(self, batch: list[_Request]) -> Exception | None:
        ops = [op for request in batch for op in request.ops]
        try:
            seqs = await self._store.append_ops(ops)
        except (DuplicateOpError, StoreUsageError) as error:
            if len(batch) == 1:
                self._fail(batch[0], error)
                return error
            failure: Exception | None = None
            for request in batch:
                alone = await self._commit([request])
                failure = failure or alone
            return failure
        except Exception as error:
            for request in batch:
                self._fail(request, error)
            return error
        self.commits += 1
        self.ops_committed += len(ops)
        start = 0
        for request in batch:
            if not request.future.done():
                request.future.set_result(seqs[start : start + len(request.ops)])
            start += len(request.ops)
        return None

    def _fail(self, request: _Request, error: Exception) -> None:
        self._failed(error)
        if not request.future.done():
            request.future.set_exception(error)
            request.future.exception()  # retrieved here: a queue_ops caller may not wait

    def _failed(self, error: Exception) -> None:
        self.failures += 1
        if self._on_error is not None:
            self._on_error(error)


def _settle(future: asyncio.Future[None], error: Exception | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)
        future.exception()  # retrieved here: nobody may be waiting
