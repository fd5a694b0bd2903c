"""Offline commands: `swarmd checkpoint verify`, `swarmd demo`, `swarmd bench`."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path
from typing import Any

from swarmd.protocol import consensus, crypto
from swarmd.protocol.checkpoint import Cut
from swarmd.protocol.errors import ProtocolError

from .common import EXIT_FAILED, EXIT_OK, Add, CliError, Output, load_genesis
from .demo import run_demo

BENCHMARKS = (
    "pipeline",
    "storage",
    "recovery",
    "sync",
    "framing",
    "state_tree",
    "swarm",
    "api",
)


def cmd_bench(args: argparse.Namespace, out: Output) -> int:
    module = importlib.import_module(f"swarmd.benchmarks.{args.name}")
    rest = list(args.rest)
    if out.as_json and "--json" not in rest:
        rest.append("--json")
    result: int = module.main(rest)
    return result


def read_bundle_file(path: Path) -> bytes:
    """A bundle file holds the raw bundle bytes or their hex (as the HTTP API returns it)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc}", "bundle_unreadable") from exc
    text = data.strip()
    try:
        return bytes.fromhex(text.decode("ascii")) if text else data
    except (UnicodeDecodeError, ValueError):
        return data


def cmd_checkpoint_verify(args: argparse.Namespace, out: Output) -> int:
    """Verify a checkpoint bundle offline with only the genesis keys."""
    genesis = load_genesis(Path(args.genesis))
    data = read_bundle_file(Path(args.file))
    result: dict[str, Any] = {"file": args.file, "network_id": genesis.network_id.hex()}
    try:
        bundle = consensus.CheckpointBundle.decode(data)
        consensus.verify_bundle(bundle, genesis.network_id, list(genesis.council))
        cut = Cut.decode(bundle.value)
    except ProtocolError as exc:
        result.update(valid=False, code=exc.code, error=exc.message)
        out.result(result, f"INVALID: {exc.message} [{exc.code}]")
        return EXIT_FAILED
    result.update(
        valid=True,
        height=bundle.height,
        round=bundle.round,
        checkpoint_id=cut.checkpoint_id.hex(),
        parent_id=cut.parent_id.hex(),
        state_root=cut.state_root.hex(),
        heads=len(cut.heads),
        signers=[crypto.account_id_text(key) for key, _ in bundle.precommits],
        quorum=genesis.quorum,
    )
    out.result(result, f"valid: height {bundle.height}, {len(bundle.precommits)} signatures")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace, out: Output) -> int:
    value = run_demo(seed=args.seed)
    out.result(value)
    return EXIT_OK


def register(add: Add) -> None:
    demo = add("demo", cmd_demo, "run an in-process ledger demo")
    demo.add_argument("--seed", type=int, default=1)

    checkpoint = add("checkpoint", cmd_checkpoint_verify, "checkpoint bundles (offline)")
    checkpoint.add_argument("action", choices=["verify"])
    checkpoint.add_argument("file", help="bundle file: raw bytes or hex")
    checkpoint.add_argument("--genesis", required=True, help="genesis file of the network")

    bench = add("bench", cmd_bench, "run a benchmark (see BENCHMARKS.md)")
    bench.add_argument("name", choices=BENCHMARKS)
    bench.add_argument("rest", nargs=argparse.REMAINDER, help="the benchmark's own options")
