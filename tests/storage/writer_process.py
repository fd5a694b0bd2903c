"""A writer process for the crash-safety tests (kill -9 and fail-points).

    python tests/storage/writer_process.py DB --seed S --run R --batches B

Opens the store at DB (creating it if needed), then runs B rounds of writes: ops first parked
in the pending pool, then appended through a GroupCommitter by several concurrent submitters,
some status marks, and every few rounds (or at random) a checkpoint with its snapshot and the
final heights of the ops logged since the one before (`final_op_ids`: one write). After
each write returns (and so has committed) it prints one line to stdout and flushes it:

    open <last_seq>
    ack <seq> <op_id hex>
    checkpoint <height> <checkpoint_id hex> <log_seq>
    done

Every envelope is unique (it carries the seed, the run and a counter) and its op id is its
SHA-256, so a checker can tell any logged row's bytes are exact without keeping them. The
workload is deterministic for a given seed and run, so fail-point N always hits the same write.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import random
import sys

from swarmd.storage.api import Checkpoint, NewOp, OpStatus, PendingOp
from swarmd.storage.group_commit import GroupCommitter
from swarmd.storage.store import Store

NETWORK_ID = hashlib.sha256(b"crash-test-network").digest()
NODE_KEY = hashlib.sha256(b"crash-test-node").digest()
SUBMITTERS = 4
OPS_PER_REQUEST_MAX = 6


def emit(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def snapshot_blob_for(checkpoint_id: bytes) -> bytes:
    """The snapshot is derived from the checkpoint id so the checker can verify it."""
    return hashlib.sha256(b"snapshot" + checkpoint_id).digest() * 8


class Workload:
    def __init__(self, store: Store, seed: int, run: int) -> None:
        self.store = store
        self.rng = random.Random(seed * 1_000_003 + run)
        self.tag = f"{seed}:{run}:".encode()
        self.counter = 0
        self.committer = GroupCommitter(store, batch_ops_max=64, queue_ops_max=1024)
        #: The ops logged after the latest checkpoint: the next one makes them final.
        self.unfinal: list[tuple[int, bytes]] = []

    async def load_unfinal(self) -> None:
        """The ops an earlier (killed) run logged after the latest stored checkpoint."""
        latest = await self.store.latest_checkpoint()
        after = latest.log_seq if latest else 0
        while page := await self.store.read_log(after, 1_000):
            self.unfinal += [(op.seq, op.op_id) for op in page]
            after = page[-1].seq

    def new_op(self) -> NewOp:
        self.counter += 1
        envelope = self.tag + str(self.counter).encode() + b":"
        envelope += self.rng.randbytes(self.rng.randint(60, 300))
        author = hashlib.sha256(b"author" + bytes([self.rng.randrange(8)])).digest()
        return NewOp(
            op_id=hashlib.sha256(envelope).digest(),
            author=author,
            author_seq=self.counter,
            envelope=envelope,
            status=OpStatus.APPLIED,
            received_at_ms=self.counter,
        )

    async def submit(self, ops: list[NewOp]) -> None:
        seqs = await self.committer.append(ops)
        for seq, op in zip(seqs, ops, strict=True):
            self.unfinal.append((seq, op.op_id))
            emit(f"ack {seq} {op.op_id.hex()}")

    async def round(self) -> None:
        requests = [
            [self.new_op() for _ in range(self.rng.randint(1, OPS_PER_REQUEST_MAX))]
            for _ in range(SUBMITTERS)
        ]
        parked = [PendingOp(op.op_id, op.envelope, op.received_at_ms) for op in requests[0]]
        await self.store.put_pending(parked)
        await asyncio.gather(*(self.submit(request) for request in requests))
        if self.rng.random() < 0.3:
            await self.store.mark_status([requests[1][0].op_id], OpStatus.REJECTED)

    async def checkpoint(self) -> None:
        latest = await self.store.latest_checkpoint()
        height = (latest.height if latest else 0) + 1
        checkpoint_id = hashlib.sha256(self.tag + b"checkpoint" + str(height).encode()).digest()
        checkpoint = Checkpoint(
            height=height,
            checkpoint_id=checkpoint_id,
            state_root=hashlib.sha256(checkpoint_id).digest(),
            bundle=self.rng.randbytes(200),
            log_seq=self.store.last_seq,
        )
        final = [op_id for seq, op_id in sorted(self.unfinal)]
        blob = snapshot_blob_for(checkpoint_id)
        await self.store.put_checkpoint(checkpoint, blob, final_op_ids=final)
        self.unfinal = []
        emit(f"checkpoint {height} {checkpoint_id.hex()} {checkpoint.log_seq}")


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("database")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--run", type=int, required=True)
    parser.add_argument("--batches", type=int, required=True)
    parser.add_argument("--checkpoint-every", type=int, default=0, help="0: at random")
    args = parser.parse_args(argv)
    store = await Store.open(args.database, network_id=NETWORK_ID, node_key=NODE_KEY)
    emit(f"open {store.last_seq}")
    workload = Workload(store, args.seed, args.run)
    await workload.load_unfinal()
    for index in range(args.batches):
        await workload.round()
        every = args.checkpoint_every
        if (every and index % every == every - 1) or (not every and workload.rng.random() < 0.25):
            await workload.checkpoint()
    await workload.committer.close()
    await store.close()
    emit("done")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
