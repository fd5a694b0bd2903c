"""Offline commands: `swarmd checkpoint verify`, `swarmd demo`, `swarmd bench`."""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path
from typing import Any

from swarmd.protocol import consensus, crypto
from swarmd.protocol.checkpoint import Cut
from swarmd.protocol.errors import ProtocolError, RemoteProtocolError

from .common import EXIT_FAILED, EXIT_OK, Add, CliError, Output, load_genesis
from .demo import run_demo

BENCHMARKS = (
    "pipeline",
    "storage",
    "recovery",
    "sync",
    "framing",
    "state_tree",
    "scale",
    "swarm",
    "api",
    "onboarding",
)


def cmd_bench(args: argparse.Namespace, out: Output) -> int:
    module = importlib.import_module(f"swarmd.benchmarks.{args.name}")
    rest = list(args.rest)
    if out.as_json and "--json" not in rest:
        rest.append("--json")
    result: int = module.main(rest)
    return result


#: Fields of the API's checkpoint JSON (`GET /v1/checkpoints/{height}`) checked against the
#: bundle it carries: a file whose fields disagree with its own signed bundle is refused.
API_FIELDS_CHECKED = ("height", "round", "checkpoint_id", "parent_id", "state_root")


def read_bundle_file(path: Path) -> tuple[bytes, dict[str, Any]]:
    """The bundle in a file, and the claims made beside it. A file holds the raw bundle bytes,
    their hex, or the API's checkpoint JSON (`GET /v1/checkpoints/latest`, bundle under
    "bundle")."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc}", "bundle_unreadable") from exc
    text = data.strip()
    if text.startswith(b"{"):
        try:
            value = json.loads(text)
            return bytes.fromhex(value["bundle"]), value
        except (ValueError, KeyError, TypeError, RecursionError) as exc:
            raise CliError(
                f"{path} is JSON but not the API's checkpoint JSON: {exc!r}", "bad_bundle_file"
            ) from None
    try:
        return (bytes.fromhex(text.decode("ascii")) if text else data), {}
    except (UnicodeDecodeError, ValueError):
        return data, {}


def _check_claims(claims: dict[str, Any], found: dict[str, Any]) -> None:
    for name in API_FIELDS_CHECKED:
        if name in claims and claims[name] != found[name]:
            raise CheckpointJsonMismatchError(
                f"the file says {name} {claims[name]!r} but its signed bundle has {found[name]!r}"
            )


class CheckpointJsonMismatchError(RemoteProtocolError):
    code = "checkpoint_json_mismatch"


def cmd_checkpoint_verify(args: argparse.Namespace, out: Output) -> int:
    """Verify a checkpoint bundle offline with only the genesis keys."""
    genesis = load_genesis(Path(args.genesis))
    data, claims = read_bundle_file(Path(args.file))
    result: dict[str, Any] = {"file": args.file, "network_id": genesis.network_id.hex()}
    try:
        bundle = consensus.CheckpointBundle.decode(data)
        consensus.verify_bundle(bundle, genesis.network_id, list(genesis.council))
        cut = Cut.decode(bundle.value)
        found = {
            "height": bundle.height,
            "round": bundle.round,
            "checkpoint_id": cut.checkpoint_id.hex(),
            "parent_id": cut.parent_id.hex(),
            "state_root": cut.state_root.hex(),
        }
        _check_claims(claims, found)
    except ProtocolError as exc:
        result.update(valid=False, code=exc.code, error=exc.message)
        out.result(result, f"INVALID: {exc.message} [{exc.code}]")
        return EXIT_FAILED
    result.update(
        valid=True,
        **found,
        heads=len(cut.heads),
        signers=[crypto.account_id_text(key) for key, _ in bundle.precommits],
        quorum=genesis.quorum,
    )
    text = (
        f"valid: height {bundle.height}, {len(bundle.precommits)} signatures, "
        f"state root {found['state_root']}, checkpoint {found['checkpoint_id']}"
    )
    out.result(result, text)
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
    checkpoint.add_argument(
        "file", help="bundle file: raw bytes, hex, or the JSON of GET /v1/checkpoints/latest"
    )
    checkpoint.add_argument("--genesis", required=True, help="genesis file of the network")

    bench = add("bench", cmd_bench, "run a benchmark (see BENCHMARKS.md)")
    bench.add_argument("name", choices=BENCHMARKS)
    bench.add_argument("rest", nargs=argparse.REMAINDER, help="the benchmark's own options")
