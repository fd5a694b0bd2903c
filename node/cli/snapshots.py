"""`swarmd snapshot list|show|diff`: the node's stored state snapshots, read offline.

Each stored snapshot is a catalog entry (a manifest naming every chunk by its hash) followed by
its chunks (`protocol/snapshot.py`, `encode_blob`). These commands open the node's database
read-only (`Store.open_read_only`: no lock, so the node may be running; SQLite's WAL lets a
reader beside its one writer), decode each blob, check every chunk against its manifest,
and print the catalog. `diff` compares two manifests the way a node holding the first would
fetch the second: the chunks it already has and the bytes it would still download.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from typing import Any

from swarmd.protocol.errors import ProtocolError
from swarmd.protocol.snapshot import Manifest, decode_blob, diff_manifests

from .common import EXIT_FAILED, EXIT_OK, CliError, Handler, Output, open_home_store


class SnapshotMissingError(CliError):
    def __init__(self, height: int, heights: list[int]) -> None:
        stored = ", ".join(str(h) for h in heights) or "none"
        super().__init__(
            f"no snapshot is stored at height {height} (stored: {stored})", "no_snapshot"
        )


def manifest_summary(manifest: Manifest, blob_size_bytes: int) -> dict[str, Any]:
    return {
        "height": manifest.height,
        "checkpoint_id": manifest.checkpoint_id.hex(),
        "state_root": manifest.state_root.hex(),
        "manifest_id": manifest.manifest_id.hex(),
        "chunks": manifest.chunk_count,
        "size_bytes": manifest.total_size_bytes,
        "stored_size_bytes": blob_size_bytes,
        "records": manifest.record_count,
    }


async def _read(home: str, heights: list[int] | None) -> tuple[list[int], dict[int, Any]]:
    """The stored snapshot heights, and for each of `heights` (None: all) its decoded
    (manifest, chunks, blob size) or the ProtocolError that reading or decoding raised."""
    store, _ = await open_home_store(home, read_only=True)
    try:
        stored = await store.snapshot_heights()
        wanted = stored if heights is None else heights
        for height in wanted:
            if height not in stored:
                raise SnapshotMissingError(height, stored)
        found: dict[int, Any] = {}
        for height in wanted:
            try:
                snapshot = await store.get_snapshot(height)
                if snapshot is None:  # a running node pruned it since it was listed
                    raise CliError(f"snapshot {height} was pruned meanwhile", "no_snapshot")
                manifest, chunks = decode_blob(bytes(snapshot.blob))
                if (manifest.height, manifest.state_root) != (height, snapshot.state_root):
                    raise CliError(
                        f"snapshot {height}: its manifest names height {manifest.height} "
                        f"and root {manifest.state_root.hex()}",
                        "snapshot_mismatch",
                    )
                found[height] = (manifest, chunks, len(snapshot.blob))
            except (ProtocolError, CliError) as exc:
                found[height] = exc
        return stored, found
    finally:
        await store.close()


def _error(exc: ProtocolError | CliError) -> dict[str, str]:
    if isinstance(exc, ProtocolError):
        return {"code": exc.code, "error": exc.message}
    return {"code": exc.code, "error": str(exc)}


def _raise_if_failed(value: Any) -> tuple[Manifest, list[bytes], int]:
    if isinstance(value, ProtocolError | CliError):
        raise value
    return value  # type: ignore[no-any-return]


def cmd_snapshot_list(args: argparse.Namespace, out: Output) -> int:
    _, found = asyncio.run(_read(args.home, None))
    entries: list[dict[str, Any]] = []
    lines = []
    for height, value in found.items():
        entry: dict[str, Any]
        if isinstance(value, ProtocolError | CliError):
            entry = {"height": height, "valid": False, **_error(value)}
            lines.append(f"{height:>10}  UNREADABLE: {entry['error']} [{entry['code']}]")
        else:
            manifest, _, blob_size = value
            entry = {"valid": True, **manifest_summary(manifest, blob_size)}
            lines.append(
                f"{height:>10}  root {entry['state_root'][:16]}  manifest "
                f"{entry['manifest_id'][:16]}  {entry['chunks']} chunks  "
                f"{entry['size_bytes']} bytes  {entry['records']} records"
            )
        entries.append(entry)
    header = f"{len(entries)} snapshot(s) in {args.home}"
    out.result({"home": args.home, "snapshots": entries}, "\n".join([header, *lines]))
    return EXIT_OK if all(entry["valid"] for entry in entries) else EXIT_FAILED


def cmd_snapshot_show(args: argparse.Namespace, out: Output) -> int:
    _, found = asyncio.run(_read(args.home, [args.height]))
    manifest, chunks, blob_size = _raise_if_failed(found[args.height])
    value = manifest_summary(manifest, blob_size)
    value["chunk_hashes"] = [digest.hex() for digest in manifest.chunk_hashes]
    value["chunk_sizes_bytes"] = [len(chunk) for chunk in chunks]
    text = "\n".join(f"{k}: {v}" for k, v in value.items() if not k.startswith("chunk_"))
    text += "\n" + "\n".join(
        f"  chunk {index}: {digest.hex()} ({len(chunk)} bytes)"
        for index, (digest, chunk) in enumerate(zip(manifest.chunk_hashes, chunks, strict=True))
    )
    out.result(value, text)
    return EXIT_OK


def cmd_snapshot_diff(args: argparse.Namespace, out: Output) -> int:
    _, found = asyncio.run(_read(args.home, [args.a, args.b]))
    manifest_a, _, size_a = _raise_if_failed(found[args.a])
    manifest_b, chunks_b, size_b = _raise_if_failed(found[args.b])
    diff = diff_manifests(manifest_a, manifest_b)
    hashes_of_b = set(manifest_b.chunk_hashes)
    only_in_a = [i for i, digest in enumerate(manifest_a.chunk_hashes) if digest not in hashes_of_b]
    value = {
        "a": manifest_summary(manifest_a, size_a),
        "b": manifest_summary(manifest_b, size_b),
        "same_state_root": diff.same_state_root,
        # By content: what a node holding snapshot a has of b, and what it must fetch.
        "chunks_shared": diff.reused_chunk_count,
        "chunks_only_in_a": only_in_a,
        "chunks_only_in_b": list(diff.new_chunk_indices),
        "bytes_to_fetch": sum(len(chunks_b[index]) for index in diff.new_chunk_indices),
        # By position.
        "changed_indices": list(diff.changed_indices),
        "added_indices": list(diff.added_indices),
        "removed_indices": list(diff.removed_indices),
    }
    text = (
        f"{args.a} -> {args.b}: {value['chunks_shared']} of {manifest_b.chunk_count} chunks "
        f"shared, {len(only_in_a)} only in {args.a}, {len(diff.new_chunk_indices)} only in "
        f"{args.b}; {value['bytes_to_fetch']} bytes to fetch; same state root: "
        f"{diff.same_state_root}"
    )
    out.result(value, text)
    return EXIT_OK


def height_argument(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a height") from None
    if not 1 <= value <= 2**63 - 1:
        raise argparse.ArgumentTypeError(f"height {text} is out of range (1..2^63-1)")
    return value


def register(add: Callable[..., argparse.ArgumentParser]) -> None:
    snapshot = add(
        "snapshot", _no_action, "the node's stored state snapshots (read-only: the node may run)"
    )
    actions = snapshot.add_subparsers(dest="action", required=True, parser_class=type(snapshot))

    def action(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        parser = actions.add_parser(name, help=help_text, description=help_text)
        parser.add_argument("--json", action="store_true", help="print one JSON object")
        parser.add_argument("--home", required=True, help="the node's home directory")
        parser.set_defaults(handler=handler)
        return parser

    action("list", cmd_snapshot_list, "every stored snapshot: height, root, manifest, size")
    show = action("show", cmd_snapshot_show, "one snapshot's manifest with its chunk hashes")
    show.add_argument("--height", type=height_argument, required=True)
    diff = action("diff", cmd_snapshot_diff, "chunks two snapshots share, bytes to fetch a->b")
    diff.add_argument("a", type=height_argument, help="height of the snapshot held")
    diff.add_argument("b", type=height_argument, help="height of the snapshot wanted")


def _no_action(args: argparse.Namespace, out: Output) -> int:
    raise CliError("name an action: list, show or diff", "usage")
