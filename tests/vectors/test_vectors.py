"""The shared vector file matches the Python encoder, so the browser tests that check the
JavaScript encoder against it check it against Python (the file cannot drift)."""

from __future__ import annotations

import json

import pytest

from swarmd.protocol import consensus, crypto, encoding
from swarmd.protocol.errors import DecodeError
from swarmd.protocol.genesis import Genesis
from swarmd.protocol.ops import decode_op, verify_op

from .make_vectors import VECTOR_FILE, render, untag

VECTORS = json.loads(VECTOR_FILE.read_text())


def test_vector_file_is_what_the_generator_writes() -> None:
    assert VECTOR_FILE.read_text() == render(), "run tests/vectors/make_vectors.py"


@pytest.mark.parametrize("case", VECTORS["values"], ids=lambda case: case["hex"][:16])
def test_values_encode_and_decode(case: dict[str, object]) -> None:
    value = untag(case["value"])  # type: ignore[arg-type]
    assert encoding.encode(value).hex() == case["hex"]
    assert encoding.encode(encoding.decode(bytes.fromhex(case["hex"]))) == encoding.encode(value)


@pytest.mark.parametrize("data", VECTORS["non_canonical"])
def test_non_canonical_bytes_are_refused(data: str) -> None:
    with pytest.raises(DecodeError):
        encoding.decode(bytes.fromhex(data))


@pytest.mark.parametrize("case", VECTORS["ops"], ids=lambda case: case["label"])
def test_ops_decode_and_verify(case: dict[str, str]) -> None:
    op = decode_op(bytes.fromhex(case["envelope"]))
    network_id = bytes.fromhex(case["network_id"])
    verify_op(op, network_id)
    assert op.op_id.hex() == case["op_id"]
    assert op.body.hex() == case["body"]
    assert crypto.account_id_text(op.author) == case["author"]
    keypair = crypto.KeyPair.from_seed(bytes.fromhex(case["seed"]))
    assert keypair.sign(op.signed_message(network_id)).hex() == case["signature"]


def test_accounts_and_key_files() -> None:
    for case in VECTORS["accounts"]:
        keypair = crypto.KeyPair.from_seed(bytes.fromhex(case["seed"]))
        assert keypair.account_id == case["account_id"]
        assert crypto.parse_account_id(case["account_id"]).hex() == case["public_key"]
    for case in VECTORS["key_files"]:
        seed = bytes.fromhex(json.loads(case["text"])["seed"])
        assert crypto.KeyPair.from_seed(seed).account_id == case["account_id"]


def test_checkpoint_bundle_verifies_and_the_forgery_does_not() -> None:
    case = VECTORS["checkpoint"]
    genesis = Genesis.from_json(case["genesis_json"])
    assert genesis.network_id.hex() == case["network_id"]
    bundle = consensus.CheckpointBundle.decode(bytes.fromhex(case["bundle"]))
    consensus.verify_bundle(bundle, genesis.network_id, list(genesis.council))
    forged = consensus.CheckpointBundle.decode(bytes.fromhex(case["forged_bundle"]))
    with pytest.raises(consensus.BundleSignatureError):
        consensus.verify_bundle(forged, genesis.network_id, list(genesis.council))
