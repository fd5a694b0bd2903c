"""The rollback play: `swarmd rollback --home DIR --to-height H`.

A rollback takes a stopped, quiesced node back to the final checkpoint at height H (0 is
genesis). It first verifies the signed bundles up to H offline with the genesis keys, then, in
one store transaction, moves the checkpoints above H out of the active set (into
`reverted_checkpoints`) and marks every op final above H REVERTED (by final height, not log
position: ops never final stay pending).
Nothing is deleted: the signed bytes stay in the log and the bundles stay readable. Finally it
replays the store the way the recovery drill does and reports hash parity at H.

It refuses (`final_heights_unknown`) when ops final above H have no recorded final height: a
store upgraded from before schema v6 lacks them for the ops final before the upgrade, and a
rollback by final height would leave those ops applied. A restart records them for the
heights it replays (node/runtime/restore.py); the check reads the heads of each cut above H.

The node stays quiesced. After `swarmd admin resume` and a restart it resyncs from its peers,
so ops after H may come back by sync: that is expected, the play re-issues the last stable
checkpoint of this one node rather than erasing history network-wide. A network-wide revert is
a council decision: `swarmd council rollback` (a certificate, a new epoch, docs/PROTOCOL.md
section 9).

Epochs: the offline rollback stays inside the node's current epoch. When the store holds
council rollback certificates, a target below the latest one's height (where the current
epoch starts) is refused with `rollback_crosses_epoch`: that history was settled by the
council, and only a new certificate (`swarmd council rollback`) may go below it. The report
names the epoch the node stays in.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from typing import Any

from swarmd.protocol import consensus, encoding
from swarmd.protocol.checkpoint import Cut
from swarmd.protocol.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from swarmd.protocol.genesis import Genesis
from swarmd.storage import api as storage_api
from swarmd.storage.store import Store

from ..runtime.persistence import LIVE_STATE_META_KEY
from .common import EXIT_FAILED, EXIT_OK, CliError, Output, open_home_store
from .recovery import REPLAY_PAGE_ROWS, recover_store


class NotQuiescedError(LocalProtocolError):
    """The node's stored mode is not quiesced: a rollback would race new state."""

    code = "not_quiesced"


class UnknownCheckpointError(LocalProtocolError):
    """No final checkpoint is stored at the requested height."""

    code = "unknown_checkpoint"


class RollbackCrossesEpochError(LocalProtocolError):
    """The target is below the height where the node's current epoch starts (the latest
    council rollback certificate's height): an offline rollback cannot undo a council one."""

    code = "rollback_crosses_epoch"


class FinalHeightsUnknownError(LocalProtocolError):
    """Ops final above the target have no recorded final height (a store upgraded from before
    schema v6 recorded them): reverting by final height would leave them applied."""

    code = "final_heights_unknown"


class BundleInvalidError(RemoteProtocolError):
    """A stored bundle at or below the target does not verify: the target is not trustworthy."""

    code = "bundle_invalid"


async def verify_bundles_up_to(store: Store, genesis: Genesis, height: int) -> int:
    """Verify every stored bundle at heights 1..`height` offline; returns how many. Raises
    UnknownCheckpointError for a missing height, BundleInvalidError for a bad bundle."""
    council = list(genesis.council)
    expected = 1
    while expected <= height:
        page = await store.read_checkpoints(expected - 1, REPLAY_PAGE_ROWS)
        for checkpoint in page:
            if checkpoint.height > height:
                break
            if checkpoint.height != expected:
                raise UnknownCheckpointError(f"no final checkpoint is stored at height {expected}")
            _verify_one(checkpoint, genesis.network_id, council)
            expected += 1
        if len(page) < REPLAY_PAGE_ROWS:
            break
    if expected <= height:
        raise UnknownCheckpointError(f"no final checkpoint is stored at height {expected}")
    return height


def _verify_one(checkpoint: storage_api.Checkpoint, network_id: bytes, council: list[Any]) -> None:
    height = checkpoint.height
    try:
        bundle = consensus.CheckpointBundle.decode(bytes(checkpoint.bundle))
        consensus.verify_bundle(bundle, network_id, council)
        cut = Cut.decode(bundle.value)
    except ProtocolError as exc:
        raise BundleInvalidError(f"bundle {height} does not verify: {exc.message}") from None
    if bundle.height != height or cut.height != height:
        raise BundleInvalidError(f"bundle {height} is signed for another height")
    if cut.state_root != bytes(checkpoint.state_root):
        raise BundleInvalidError(f"bundle {height}: stored state root differs from the cut")


def _heads(checkpoint: storage_api.Checkpoint) -> list[bytes]:
    """The op ids of the cut's heads: ops that became final at its height (every cut has one)."""
    try:
        cut = Cut.decode(consensus.CheckpointBundle.decode(bytes(checkpoint.bundle)).value)
    except ProtocolError as exc:
        raise BundleInvalidError(
            f"bundle {checkpoint.height} does not decode: {exc.message}"
        ) from None
    return [op_id for _, _, op_id in cut.heads]


async def check_final_heights_above(store: Store, height: int) -> None:
    """Raise FinalHeightsUnknownError when a stored checkpoint above `height` has a head op
    logged (applied, with its body) without a recorded final height. A checkpoint's final
    heights are written with it (one transaction) and a restart's backfill writes a height's
    ops in order, ending with a head, so recorded heads mean the whole height is recorded."""
    unknown, lowest, highest = 0, 0, 0
    after = height
    while page := await store.read_checkpoints(after, REPLAY_PAGE_ROWS):
        for checkpoint in page:
            if await store.unrecorded_final(_heads(checkpoint)):
                unknown += 1
                lowest, highest = lowest or checkpoint.height, checkpoint.height
        after = page[-1].height
    if unknown:
        raise FinalHeightsUnknownError(
            f"the ops final at {unknown} stored heights above {height} (from {lowest} to "
            f"{highest}) have no recorded final height (a store upgraded from before schema "
            f"v6): this rollback would leave them applied. Roll back to height {highest} or "
            "above, or let a restart record them: a start records those of the heights it "
            "replays above the newest snapshot (all of them after `swarmd reset --home DIR "
            "--yes`, which drops the snapshots); stop the node and run the rollback again "
            "(docs/OPERATIONS.md)"
        )


async def current_epoch(store: Store) -> tuple[int, int]:
    """(epoch, the height it starts after) from the stored certificates; (0, 0) without."""
    epoch, height = 0, 0
    while rows := await store.read_rollbacks(epoch, REPLAY_PAGE_ROWS):
        epoch, height = rows[-1].epoch, rows[-1].height
    return epoch, height


async def roll_back_store(store: Store, genesis: Genesis, height: int) -> dict[str, Any]:
    """Roll an open store back to the final checkpoint at `height`; returns the report.

    Refuses (NotQuiescedError) unless the stored mode is quiesced. The caller holds the store
    open, so the store's file lock already proves no daemon is running on it."""
    mode, _ = await store.get_mode()
    if mode is not storage_api.NodeMode.QUIESCED:
        raise NotQuiescedError(
            f"the node is {mode.value}; run `swarmd admin quiesce` before a rollback"
        )
    if height < 0:
        raise UnknownCheckpointError("the height must be 0 (genesis) or more")
    target = await store.get_checkpoint(height) if height > 0 else None
    if height > 0 and target is None:
        raise UnknownCheckpointError(f"no final checkpoint is stored at height {height}")
    epoch, epoch_height = await current_epoch(store)
    if height < epoch_height:
        raise RollbackCrossesEpochError(
            f"height {height} is below {epoch_height}, where the council's certificate started "
            f"epoch {epoch}: an offline rollback stays in the current epoch; to revert the "
            "network further, the council signs a new certificate (`swarmd council rollback "
            "--home DIR --to-height H --reason TEXT`)"
        )
    await verify_bundles_up_to(store, genesis, height)
    await check_final_heights_above(store, height)
    reverted_ops, reverted_checkpoints = await store.roll_back_to(height)
    # The live root recorded at the last stop describes the state before the rollback: forget
    # it (no log position is -1), replay, and record the rolled-back state as the live one.
    await store.set_meta(LIVE_STATE_META_KEY, encoding.encode([-1, b""]))
    replay = await recover_store(store, genesis)
    if replay["first_divergence"] is None:
        live = encoding.encode([store.last_seq, bytes.fromhex(replay["state_root"])])
        await store.set_meta(LIVE_STATE_META_KEY, live)
    expected_root = bytes(target.state_root).hex() if target is not None else None
    parity = bool(replay["parity"]) and replay["checkpoint_height"] == height
    if expected_root is not None:
        parity = parity and replay["final_state_root"] == expected_root
    return {
        "rolled_back_to": height,
        "epoch": epoch,
        "reverted_ops": reverted_ops,
        "reverted_checkpoints": reverted_checkpoints,
        "state_root": replay["state_root"],
        "final_state_root": replay["final_state_root"],
        "checkpoint_state_root": expected_root,
        "parity": parity,
        "replayed_ops": replay["replayed_ops"],
        "pending_ops": replay["pending_ops"],
        "first_divergence": replay["first_divergence"],
    }


def _confirm(args: argparse.Namespace) -> bool:
    if args.yes:
        return True
    if not sys.stdin.isatty():
        raise CliError("rollback needs --yes when not run interactively", "confirm")
    answer = input(
        f"roll {args.home} back to checkpoint {args.to_height} "
        "(later ops are kept, marked reverted)? [y/N] "
    )
    return answer.strip().lower() in ("y", "yes")


def cmd_rollback(args: argparse.Namespace, out: Output) -> int:
    if args.to_height < 0:
        raise CliError("--to-height must be 0 (genesis) or more", "bad_height")
    if not _confirm(args):
        out.result({"rolled_back": False}, "cancelled")
        return EXIT_FAILED

    async def run() -> dict[str, Any]:
        # Opening takes the store's file lock: a running daemon makes this a typed
        # `database_locked` error before anything is read or written.
        store, genesis = await open_home_store(args.home)
        try:
            return await roll_back_store(store, genesis, args.to_height)
        finally:
            await store.close()

    report = asyncio.run(run())
    text = (
        f"rolled back to height {report['rolled_back_to']} (epoch {report['epoch']}): "
        f"{report['reverted_ops']} ops and "
        f"{report['reverted_checkpoints']} checkpoints reverted (kept)\n"
        f"parity: {report['parity']}  final state root: {report['final_state_root']}\n"
        "the node stays quiesced: `swarmd admin resume` after checking the root with peers\n"
        "this node only: its peers send the ops above the height again; a network-wide revert "
        "is `swarmd council rollback`"
    )
    out.result(report, text)
    return EXIT_OK if report["parity"] else EXIT_FAILED


def register(add: Callable[..., argparse.ArgumentParser]) -> None:
    rollback = add("rollback", cmd_rollback, "roll a quiesced, stopped node back to a checkpoint")
    rollback.add_argument("--home", required=True)
    rollback.add_argument(
        "--to-height", type=int, required=True, help="a final checkpoint height (0 = genesis)"
    )
    rollback.add_argument("--yes", action="store_true", help="do not ask for confirmation")
