"""The recovery drill: `swarmd recover` and `swarmd reset`.

`recover` rebuilds the ledger from nothing but signed data: it verifies every stored checkpoint
bundle offline with the genesis keys, replays the signed op log in log order and, at the log
position each checkpoint covers, re-derives that checkpoint's cut and compares the recomputed
state root with the root the bundle signed and the root the store recorded (hash parity). The
first height that differs is reported and the command exits non-zero. `reset` clears the
derived state (state snapshots and the pending pool) and keeps the signed log and bundles, so a
drill is: reset, recover, compare.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from itertools import repeat
from pathlib import Path
from typing import Any

from swarmd.protocol import consensus, encoding
from swarmd.protocol.checkpoint import Cut
from swarmd.protocol.errors import ProtocolError
from swarmd.protocol.genesis import Genesis
from swarmd.protocol.ledger import CutInvalidError, Ledger
from swarmd.protocol.ops import Op, check_envelopes
from swarmd.storage import api as storage_api
from swarmd.storage.store import Store

from . import cli
from .persistence import LIVE_STATE_META_KEY

#: Threads verifying signatures during a replay (the machine kind has 2 cores), and the ops
#: each one takes at a time.
VERIFY_WORKERS = 2
VERIFY_CHUNK_OPS = 256
#: Rows read from the log per query during a replay.
REPLAY_PAGE_ROWS = 4_096


class _Replay:
    """Replays a store into a fresh ledger, checkpoint by checkpoint."""

    def __init__(self, genesis: Genesis) -> None:
        self.genesis = genesis
        self.ledger = Ledger(genesis)
        self.replayed_ops = 0
        self.rejected: dict[str, int] = {}
        self.first_divergence: dict[str, Any] | None = None
        self.checkpoints_checked = 0
        self.pool = ThreadPoolExecutor(VERIFY_WORKERS, thread_name_prefix="swarmd-verify")

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


async def recover_store(store: Store, genesis: Genesis) -> dict[str, Any]:
    """Replay `store`, check parity at every checkpoint and against the live state root the
    node recorded at its last clean stop; returns the drill report."""
    report = await _replay_store(store, genesis)
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


async def _replay_store(store: Store, genesis: Genesis) -> dict[str, Any]:
    started = time.perf_counter()
    replay = _Replay(genesis)
    checkpoints: list[storage_api.Checkpoint] = []
    while True:
        after = checkpoints[-1].height if checkpoints else 0
        page = await store.read_checkpoints(after, REPLAY_PAGE_ROWS)
        checkpoints += page
        if len(page) < REPLAY_PAGE_ROWS:
            break
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
                    return _report(replay, checkpoints, started)
                next_checkpoint += 1
            if row.status != storage_api.OpStatus.REVERTED:
                batch.append(bytes(row.envelope))
        replay.feed(batch)
        batch = []
        if len(rows) < REPLAY_PAGE_ROWS:
            break
        after_seq = rows[-1].seq
    for checkpoint in checkpoints[next_checkpoint:]:
        if not replay.check_checkpoint(checkpoint):
            break
    return _report(replay, checkpoints, started)


def _report(
    replay: _Replay, checkpoints: list[storage_api.Checkpoint], started: float
) -> dict[str, Any]:
    replay.pool.shutdown()
    ledger = replay.ledger
    parity = replay.first_divergence is None
    if parity:
        ledger.check_invariants()
    return {
        "parity": parity,
        "checkpoint_height": ledger.final_height,
        "stored_checkpoints": len(checkpoints),
        "checkpoints_checked": replay.checkpoints_checked,
        "replayed_ops": replay.replayed_ops,
        "rejected_ops": replay.rejected,
        "final_state_root": ledger.final_state.root().hex(),
        "state_root": ledger.state_root().hex(),
        "pending_ops": len(ledger.pending),
        "first_divergence": replay.first_divergence,
        "elapsed_s": round(time.perf_counter() - started, 3),
    }


async def _open_home_store(home: str) -> tuple[Store, Genesis]:
    from .commands import load_home_config

    config = load_home_config(home)
    genesis = cli.load_genesis(Path(config.node.genesis_file))
    keypair = cli.load_key_file(Path(config.node.key_file))
    store = await Store.open(
        config.node.data_file,
        network_id=genesis.network_id,
        node_key=keypair.public_key,
        synchronous=config.node.synchronous,
    )
    return store, genesis


def cmd_recover(args: argparse.Namespace, out: cli.Output) -> int:
    import asyncio

    async def run() -> dict[str, Any]:
        store, genesis = await _open_home_store(args.home)
        try:
            integrity = await store.integrity_check()
            report = await recover_store(store, genesis)
            report["integrity_ok"] = bool(integrity.ok)
            return report
        finally:
            await store.close()

    report = asyncio.run(run())
    divergence = report["first_divergence"]
    text = (
        f"parity: {report['parity']}  height {report['checkpoint_height']}  "
        f"replayed {report['replayed_ops']} ops in {report['elapsed_s']} s\n"
        f"state root: {report['state_root']}"
    )
    if divergence:
        text += f"\nfirst divergence at height {divergence['height']}: {divergence['reason']}"
    out.result(report, text)
    return cli.EXIT_OK if report["parity"] else cli.EXIT_FAILED


def cmd_reset(args: argparse.Namespace, out: cli.Output) -> int:
    import asyncio
    import sys

    if not args.yes:
        if not sys.stdin.isatty():
            raise cli.CliError("reset needs --yes when not run interactively", "confirm")
        answer = input(f"clear derived state in {args.home} (the signed log is kept)? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            out.result({"reset": False}, "cancelled")
            return cli.EXIT_FAILED

    async def run() -> dict[str, Any]:
        store, _ = await _open_home_store(args.home)
        try:
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
    return cli.EXIT_OK


def register(add: Callable[..., argparse.ArgumentParser]) -> None:
    recover = add("recover", cmd_recover, "recovery drill: replay the signed log, check parity")
    recover.add_argument("--home", required=True)
    reset = add("reset", cmd_reset, "clear derived state, keep the signed log")
    reset.add_argument("--home", required=True)
    reset.add_argument("--yes", action="store_true", help="do not ask for confirmation")
