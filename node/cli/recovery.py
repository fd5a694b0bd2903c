"""The recovery drill: `swarmd recover` and `swarmd reset`.

`recover` rebuilds the ledger from nothing but signed data: it verifies every stored checkpoint
bundle offline with the genesis keys, replays the signed op log in log order and, at the log
position each checkpoint covers, re-derives that checkpoint's cut and compares the recomputed
state root with the root the bundle signed and the root the store recorded (hash parity). The
first height that differs is reported and the command exits non-zero. `reset` clears the
derived state (state snapshots and the pending pool) and keeps the signed log and bundles, so a
drill is: reset, recover, compare.

`recover --from-snapshot` starts from a stored state snapshot instead of genesis (the only way
to check a node that caught up by state sync: its log holds no ops below its snapshot). The
snapshot's checkpoint bundle is verified with the genesis keys, its manifest and chunks against
that bundle, and the state rebuilt from the chunks must have the signed root; then the ops
logged above it are replayed and every later checkpoint is checked as above.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from itertools import repeat
from typing import Any

from swarmd.protocol import consensus, encoding
from swarmd.protocol.checkpoint import Cut
from swarmd.protocol.errors import ProtocolError
from swarmd.protocol.genesis import Genesis
from swarmd.protocol.ledger import CutInvalidError, Ledger
from swarmd.protocol.node_core import signed_snapshot_state
from swarmd.protocol.ops import Op, check_envelopes
from swarmd.protocol.snapshot import Manifest, decode_blob
from swarmd.storage import api as storage_api
from swarmd.storage.store import Store

from ..runtime.persistence import LIVE_STATE_META_KEY
from .common import EXIT_FAILED, EXIT_OK, CliError, Output, open_home_store
from .snapshots import SnapshotMissingError, height_argument

#: Threads verifying signatures during a replay (the machine kind has 2 cores), and the ops
#: each one takes at a time.
VERIFY_WORKERS = 2
VERIFY_CHUNK_OPS = 256
#: Rows read from the log per query during a replay.
REPLAY_PAGE_ROWS = 4_096


class NoSnapshotError(CliError):
    def __init__(self) -> None:
        super().__init__(
            "no state snapshot is stored with its checkpoint (one is made every "
            "[consensus].snapshot_interval final heights, and `swarmd reset` deletes them); "
            "run `swarmd recover` without --from-snapshot to replay the log from genesis",
            "no_snapshot",
        )


class SnapshotCorruptError(CliError):
    def __init__(self, height: int, exc: ProtocolError, stored: list[int]) -> None:
        older = [h for h in stored if h < height]
        hint = f"; try an older one: --height {older[-1]}" if older else ""
        super().__init__(
            f"the snapshot at height {height} is unreadable: {exc.message} [{exc.code}]{hint}",
            "snapshot_corrupt",
        )


class LogNotFromGenesisError(CliError):
    """The stored checkpoints skip heights: the node caught up by state sync there, so its log
    holds no ops below the height it jumped to and cannot be replayed across the gap."""

    def __init__(self, expected: int, found: int, from_snapshot: int | None) -> None:
        start = "genesis" if from_snapshot is None else f"the snapshot at height {from_snapshot}"
        super().__init__(
            f"the stored checkpoints jump from height {expected - 1} to {found}: the node "
            f"caught up by state sync there and its log holds no ops below height {found}, so "
            f"it cannot be replayed from {start} (and its snapshots are the only copy of that "
            f"state); check it with `swarmd recover --from-snapshot` from a snapshot at or "
            f"above height {found} (the newest by default, or --height H)",
            "log_not_from_genesis",
        )


class _Replay:
    """Replays a store into a fresh ledger, checkpoint by checkpoint."""

    def __init__(self, genesis: Genesis) -> None:
        self.genesis = genesis
        self.ledger = Ledger(genesis)
        self.replayed_ops = 0
        self.rejected: dict[str, int] = {}
        self.first_divergence: dict[str, Any] | None = None
        self.checkpoints_checked = 0
        #: After `start_from_snapshot`: each author's seq in the snapshot's final state. Logged
        #: ops at or below it are covered by that state (final, or forks that lost).
        self.snapshot_seqs: dict[bytes, int] = {}
        self.skipped_ops = 0
        self.pool = ThreadPoolExecutor(VERIFY_WORKERS, thread_name_prefix="swarmd-verify")

    def start_from_snapshot(
        self, checkpoint: storage_api.Checkpoint, manifest: Manifest, chunks: list[bytes]
    ) -> bool:
        """Continue from a snapshot's state once its bundle verifies, its manifest is that
        bundle's checkpoint and its rebuilt root is the signed one; False on a mismatch."""
        height = checkpoint.height
        if (manifest.height, manifest.state_root) != (height, bytes(checkpoint.state_root)):
            return self._diverged(height, "the snapshot's manifest is not the stored checkpoint")
        try:
            state = signed_snapshot_state(manifest, chunks, bytes(checkpoint.bundle), self.genesis)
        except ProtocolError as exc:
            return self._diverged(height, f"snapshot does not verify: {exc.message}", exc.code)
        self.ledger = Ledger.restore_final(self.genesis, state, height)
        self.snapshot_seqs = {key: account.seq for key, account in state.accounts.items()}
        self.checkpoints_checked += 1
        return True

    def below_snapshot(self, row: storage_api.LoggedOp) -> bool:
        """The rule of `NodeCore.restore`, read from the log row's checksummed columns."""
        if row.author_seq <= self.snapshot_seqs.get(row.author, 0):
            self.skipped_ops += 1
            return True
        return False

    def feed(self, envelopes: list[bytes]) -> None:
        """Decode and verify on worker threads (libsodium releases the GIL), apply in order."""
        chunks = [
            envelopes[i : i + VERIFY_CHUNK_OPS] for i in range(0, len(envelopes), VERIFY_CHUNK_OPS)
        ]
        for checked in self.pool.map(check_envelopes, chunks, repeat(self.genesis.network_id)):
            for item in checked:
                self.replayed_ops += 1
                if isinstance(item, Op):
                    outcome = self.ledger.receive_verified(item, 0.0)
                else:
                    outcome = self.ledger.receive_op(item, 0.0)  # gives the typed rejection
                if outcome.status == "rejected":
                    self.rejected[outcome.code] = self.rejected.get(outcome.code, 0) + 1
        self.ledger.drain_events()

    def check_checkpoint(self, checkpoint: storage_api.Checkpoint) -> bool:
        """Finalize one stored checkpoint; False (and the divergence recorded) on a mismatch."""
        height = checkpoint.height
        try:
            bundle = consensus.CheckpointBundle.decode(bytes(checkpoint.bundle))
            consensus.verify_bundle(bundle, self.genesis.network_id, list(self.genesis.council))
            cut = Cut.decode(bundle.value)
        except ProtocolError as exc:
            return self._diverged(height, f"bundle does not verify: {exc.message}", exc.code)
        if bundle.height != height or cut.height != height:
            return self._diverged(height, "bundle height differs from the stored height")
        if cut.state_root != bytes(checkpoint.state_root):
            return self._diverged(height, "stored state root differs from the signed cut")
        heads = list(cut.heads)
        closure, missing = self.ledger.cut_closure([head for _, _, head in heads])
        if missing:
            return self._diverged(height, f"{len(missing)} ops of the cut are not in the log")
        try:
            root, _ = self.ledger.derive_cut(heads)
        except CutInvalidError as exc:
            return self._diverged(height, exc.message, exc.code)
        if root != cut.state_root:
            return self._diverged(
                height, f"replayed root {root.hex()} != signed root {cut.state_root.hex()}"
            )
        self.ledger.finalize(height, closure)
        self.ledger.drain_events()
        self.checkpoints_checked += 1
        return True

    def _diverged(self, height: int, reason: str, code: str = "parity_mismatch") -> bool:
        self.first_divergence = {"height": height, "reason": reason, "code": code}
        return False


async def recover_store(
    store: Store, genesis: Genesis, *, from_snapshot: bool = False, height: int | None = None
) -> dict[str, Any]:
    """Replay `store`, check parity at every checkpoint and against the live state root the
    node recorded at its last clean stop; returns the drill report.

    With `from_snapshot`, the replay starts from the stored snapshot at `height` (None: the
    newest) instead of genesis. Raises NoSnapshotError / SnapshotMissingError when there is
    none, SnapshotCorruptError when it cannot be read, and LogNotFromGenesisError when the
    stored checkpoints skip heights above the start (a state-synced node replayed from
    genesis)."""
    snapshot_height = await _pick_snapshot(store, height) if from_snapshot else None
    report = await _replay_store(store, genesis, snapshot_height)
    report["from_snapshot_height"] = snapshot_height
    live = await store.get_meta(LIVE_STATE_META_KEY)
    report["live_state_root"] = None
    report["live_parity"] = None
    if live is not None and report["first_divergence"] is None:
        try:
            log_seq, root = encoding.decode(live)
        except ProtocolError:
            log_seq, root = -1, b""
        if log_seq == store.last_seq and isinstance(root, bytes):
            report["live_state_root"] = root.hex()
            report["live_parity"] = root.hex() == report["state_root"]
            if not report["live_parity"]:
                report["parity"] = False
                report["first_divergence"] = {
                    "height": report["checkpoint_height"] + 1,
                    "reason": "replayed provisional root differs from the live root recorded "
                    "at the last clean stop",
                    "code": "live_root_mismatch",
                }
    return report


async def _pick_snapshot(store: Store, height: int | None) -> int:
    stored = await store.snapshot_heights()
    if height is None and not stored:
        raise NoSnapshotError
    if height is not None and height not in stored:
        raise SnapshotMissingError(height, stored)
    return stored[-1] if height is None else height


async def _read_snapshot(store: Store, height: int) -> tuple[Manifest, list[bytes]]:
    """The manifest and hash-checked chunks of the stored snapshot at `height`."""
    try:
        snapshot = await store.get_snapshot(height)
        if snapshot is None:  # listed by _pick_snapshot, and the store is locked
            raise SnapshotMissingError(height, await store.snapshot_heights())
        return decode_blob(bytes(snapshot.blob))
    except ProtocolError as exc:  # a failed checksum (corrupt_database) or a bad blob
        raise SnapshotCorruptError(height, exc, await store.snapshot_heights()) from exc


async def _read_checkpoints(store: Store, after_height: int) -> list[storage_api.Checkpoint]:
    """The stored checkpoints above `after_height`; LogNotFromGenesisError unless they follow
    it without a gap (a gap is where the node caught up by state sync)."""
    checkpoints: list[storage_api.Checkpoint] = []
    while True:
        after = checkpoints[-1].height if checkpoints else after_height
        page = await store.read_checkpoints(after, REPLAY_PAGE_ROWS)
        checkpoints += page
        if len(page) < REPLAY_PAGE_ROWS:
            break
    for expected, checkpoint in enumerate(checkpoints, start=after_height + 1):
        if checkpoint.height != expected:
            raise LogNotFromGenesisError(
                expected, checkpoint.height, after_height if after_height else None
            )
    return checkpoints


async def _replay_store(
    store: Store, genesis: Genesis, snapshot_height: int | None = None
) -> dict[str, Any]:
    started = time.perf_counter()
    replay = _Replay(genesis)
    checkpoints = await _read_checkpoints(store, snapshot_height or 0)
    stored = len(checkpoints)
    if snapshot_height is not None:
        manifest, chunks = await _read_snapshot(store, snapshot_height)
        # Stored: `snapshot_heights` lists only snapshots stored with their checkpoint.
        (base,) = await store.read_checkpoints(snapshot_height - 1, 1)
        stored = len(checkpoints) + 1  # the snapshot's own checkpoint is checked too
        if not replay.start_from_snapshot(base, manifest, chunks):
            return _report(replay, stored, started)
    next_checkpoint = 0
    after_seq = 0
    batch: list[bytes] = []
    while True:
        rows = await store.read_log(after_seq, REPLAY_PAGE_ROWS)
        for row in rows:
            # A checkpoint covers the log up to its log_seq: finalize it before going past.
            while (
                next_checkpoint < len(checkpoints)
                and checkpoints[next_checkpoint].log_seq < row.seq
            ):
                replay.feed(batch)
                batch = []
                if not replay.check_checkpoint(checkpoints[next_checkpoint]):
                    return _report(replay, stored, started)
                next_checkpoint += 1
            skipped = (storage_api.OpStatus.REVERTED, storage_api.OpStatus.EXPIRED)
            # (an empty envelope: a body pruned by [storage].retain_heights, below the snapshot)
            if row.status not in skipped and row.envelope and not replay.below_snapshot(row):
                batch.append(bytes(row.envelope))
        replay.feed(batch)
        batch = []
        if len(rows) < REPLAY_PAGE_ROWS:
            break
        after_seq = rows[-1].seq
    for checkpoint in checkpoints[next_checkpoint:]:
        if not replay.check_checkpoint(checkpoint):
            break
    return _report(replay, stored, started)


def _report(replay: _Replay, stored_checkpoints: int, started: float) -> dict[str, Any]:
    replay.pool.shutdown()
    ledger = replay.ledger
    parity = replay.first_divergence is None
    if parity:
        ledger.check_invariants()
    return {
        "parity": parity,
        "checkpoint_height": ledger.final_height,
        "stored_checkpoints": stored_checkpoints,
        "checkpoints_checked": replay.checkpoints_checked,
        "replayed_ops": replay.replayed_ops,
        "skipped_ops": replay.skipped_ops,
        "rejected_ops": replay.rejected,
        "final_state_root": ledger.final_state.root().hex(),
        "state_root": ledger.state_root().hex(),
        "pending_ops": len(ledger.pending),
        "first_divergence": replay.first_divergence,
        "elapsed_s": round(time.perf_counter() - started, 3),
    }


def cmd_recover(args: argparse.Namespace, out: Output) -> int:
    if args.height is not None and not args.from_snapshot:
        raise CliError("--height names a snapshot: it needs --from-snapshot", "usage")

    async def run() -> dict[str, Any]:
        store, genesis = await open_home_store(args.home)
        try:
            integrity = await store.integrity_check()
            report = await recover_store(
                store, genesis, from_snapshot=args.from_snapshot, height=args.height
            )
            report["integrity_ok"] = bool(integrity.ok)
            return report
        finally:
            await store.close()

    report = asyncio.run(run())
    divergence = report["first_divergence"]
    start = report["from_snapshot_height"]
    text = (
        f"parity: {report['parity']}  height {report['checkpoint_height']}  "
        f"from {'genesis' if start is None else f'the snapshot at height {start}'}  "
        f"replayed {report['replayed_ops']} ops in {report['elapsed_s']} s\n"
        f"state root: {report['state_root']}"
    )
    if divergence:
        text += f"\nfirst divergence at height {divergence['height']}: {divergence['reason']}"
    out.result(report, text)
    return EXIT_OK if report["parity"] else EXIT_FAILED


def cmd_reset(args: argparse.Namespace, out: Output) -> int:
    if not args.yes:
        if not sys.stdin.isatty():
            raise CliError("reset needs --yes when not run interactively", "confirm")
        answer = input(f"clear derived state in {args.home} (the signed log is kept)? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            out.result({"reset": False}, "cancelled")
            return EXIT_FAILED

    async def run() -> dict[str, Any]:
        store, _ = await open_home_store(args.home)
        try:
            # On a node that caught up by state sync a snapshot is not derived state: its log
            # cannot rebuild it, and the node could no longer restart without it.
            await _read_checkpoints(store, 0)
            latest = await store.latest_checkpoint()
            top = (latest.height if latest else 0) + 1
            snapshots = await store.delete_snapshots_below(top)
            pending = await store.load_pending()
            removed = await store.delete_pending([op.op_id for op in pending])
            return {"reset": True, "snapshots_deleted": snapshots, "pending_deleted": removed}
        finally:
            await store.close()

    result = asyncio.run(run())
    out.result(result, "derived state cleared; the signed log and bundles are kept")
    return EXIT_OK


def register(add: Callable[..., argparse.ArgumentParser]) -> None:
    recover = add("recover", cmd_recover, "recovery drill: replay the signed log, check parity")
    recover.add_argument("--home", required=True)
    recover.add_argument(
        "--from-snapshot",
        action="store_true",
        help="start from a stored state snapshot (verified) instead of genesis",
    )
    recover.add_argument(
        "--height", type=height_argument, help="the snapshot's height (default: the newest stored)"
    )
    reset = add("reset", cmd_reset, "clear derived state, keep the signed log")
    reset.add_argument("--home", required=True)
    reset.add_argument("--yes", action="store_true", help="do not ask for confirmation")
