"""Generate tests/vectors/canonical.json: the bytes the browser's encoder must reproduce.

Run `python tests/vectors/make_vectors.py` after any change to the canonical encoding, the op
envelope, the account id text form, the genesis hash or the bundle signatures; the Python test
(tests/vectors/test_vectors.py) fails while the file differs from what this script produces, and
the browser test (tests/web/) checks the JavaScript encoder against the same file.

Values are written in a tagged JSON form that keeps what JSON loses: ints as decimal strings
(64-bit values do not survive a JSON number), bytes as hex, and maps as [key, value] pairs in a
NON-sorted order, so that an encoder that forgets to sort by UTF-8 key bytes fails. Keys come
from fixed seeds, and Ed25519 signing is deterministic, so the file is the same on every run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from swarmd.protocol import consensus, crypto, encoding
from swarmd.protocol.genesis import Genesis
from swarmd.protocol.ops import Kind, build_op

VECTOR_FILE = Path(__file__).with_name("canonical.json")

Tagged = dict[str, Any]


def tag(value: Any) -> Tagged:
    """The tagged JSON form of a canonical-model value (maps keep their insertion order)."""
    if value is None:
        return {"nil": None}
    if isinstance(value, bool):
        return {"bool": value}
    if isinstance(value, int):
        return {"int": str(value)}
    if isinstance(value, bytes):
        return {"bytes": value.hex()}
    if isinstance(value, str):
        return {"str": value}
    if isinstance(value, list):
        return {"list": [tag(item) for item in value]}
    if isinstance(value, dict):
        return {"map": [[key, tag(item)] for key, item in value.items()]}
    raise TypeError(f"cannot tag {type(value).__name__}")


def untag(tagged: Tagged) -> Any:
    ((name, item),) = tagged.items()
    if name == "int":
        return int(item)
    if name == "bytes":
        return bytes.fromhex(item)
    if name == "list":
        return [untag(entry) for entry in item]
    if name == "map":
        return {key: untag(entry) for key, entry in item}
    return item


def seed(n: int) -> bytes:
    return bytes([n]) * 32


#: Values covering every canonical form boundary: each int width on both sides, str/bin/array/
#: map length classes, and maps whose insertion order differs from the UTF-8 byte order.
VALUES: list[Any] = [
    None,
    True,
    False,
    *[0, 1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**53 + 1, 2**64 - 1],
    *[-1, -32, -33, -128, -129, -32768, -32769, -(2**31), -(2**31) - 1, -(2**63)],
    "",
    "a",
    "x" * 31,
    "x" * 32,
    "y" * 255,
    "z" * 256,
    "héllo ☃ 😀",
    b"",
    b"\x00\xff",
    bytes(range(256)),
    bytes(300),
    [],
    list(range(15)),
    list(range(16)),
    list(range(70000 // 1000)),
    {},
    {"b": 1, "a": 2, "aa": 3, "B": 4},
    {"é": 1, "z": 2, "~": 3},
    {str(i): i for i in range(16)},
    {"nested": [{"y": b"\x01", "x": [None, True, -5]}], "list": [[[]]]},
]

#: Byte strings the decoder must refuse: a non-shortest int, unsorted map keys, a str in a
#: longer length form, a float, trailing bytes, a truncated value, an extension type, a
#: non-str map key.
NON_CANONICAL_HEX = [
    "cc05",
    "cd0001",
    "d0ff",
    "82a16201a16102",
    "da000161",
    "cb3ff0000000000000",
    "0000",
    "92",
    "d40100",
    "810102",
    "d9026161",
]

NETWORK_ID = crypto.sha256(b"vectors network")


def op_vectors() -> list[dict[str, Any]]:
    author = crypto.KeyPair.from_seed(seed(1))
    other = crypto.KeyPair.from_seed(seed(2))
    dep_a, dep_b = crypto.sha256(b"a"), crypto.sha256(b"b")
    cases: list[tuple[Kind, dict[str, Any]]] = [
        (Kind.GRANT, {"seq": 1, "to": other.public_key, "amount": 100}),
        (Kind.TRANSFER, {"seq": 2, "prev": dep_a, "to": other.public_key, "amount": 2**40}),
        (
            Kind.TRANSFER,
            {
                "seq": 3,
                "prev": dep_a,
                "deps": [dep_b],
                "to": other.public_key,
                "amount": 7,
                "basis": 12,
            },
        ),
        (Kind.BURN, {"seq": 4, "prev": dep_b, "amount": 5, "target": "rust ☃"}),
        (Kind.HANDLE_CLAIM, {"seq": 1, "handle": "alice_01"}),
        (Kind.HANDLE_ENDORSE, {"seq": 9, "prev": dep_a, "claim": dep_b, "deps": [dep_b]}),
        (Kind.HANDLE_REVOKE, {"seq": 2, "prev": dep_b, "handle": "bob"}),
        (Kind.COUNCIL_QUIESCE, {"seq": 300, "prev": dep_a, "reason": "drill"}),
    ]
    vectors = []
    for kind, fields in cases:
        op = build_op(author, NETWORK_ID, kind, **fields)
        view = dict(fields)
        view.setdefault("prev", b"")
        view.setdefault("deps", [])
        view.setdefault("basis", 0)
        vectors.append(
            {
                "seed": author.seed.hex(),
                "network_id": NETWORK_ID.hex(),
                "kind": int(kind),
                "label": kind.label,
                "fields": tag(view),
                "body": op.body.hex(),
                "signature": op.signature.hex(),
                "envelope": op.envelope.hex(),
                "op_id": op.op_id.hex(),
                "author": author.account_id,
            }
        )
    return vectors


def account_vectors() -> list[dict[str, str]]:
    return [
        {"seed": seed(n).hex(), "public_key": kp.public_key.hex(), "account_id": kp.account_id}
        for n in (1, 2, 3, 200)
        for kp in [crypto.KeyPair.from_seed(seed(n))]
    ]


def key_file_vectors() -> list[dict[str, str]]:
    # The CLI's key file (node/cli.py key_file_text): {"account_id": text, "seed": hex}.
    keypair = crypto.KeyPair.from_seed(seed(7))
    text = json.dumps({"account_id": keypair.account_id, "seed": keypair.seed.hex()}) + "\n"
    return [{"text": text, "account_id": keypair.account_id}]


def checkpoint_vector() -> dict[str, Any]:
    """A genesis of four members and a bundle precommitted by three of them (a quorum)."""
    members = [crypto.KeyPair.from_seed(seed(n)) for n in (11, 12, 13, 14)]
    genesis = Genesis.create("vectors", [member.public_key for member in members])
    value = encoding.encode({"height": 3, "vector": True})
    bundle_value = consensus.CheckpointBundle(height=3, round=1, value=value, precommits=())
    body = {
        "type": "precommit",
        "epoch": 0,
        "height": 3,
        "round": 1,
        "value_id": bundle_value.value_id,
    }
    message = consensus.signing_bytes(genesis.network_id, body)
    signers = sorted(members[:3], key=lambda member: member.public_key)
    precommits = tuple((member.public_key, member.sign(message)) for member in signers)
    bundle = consensus.CheckpointBundle(height=3, round=1, value=value, precommits=precommits)
    consensus.verify_bundle(bundle, genesis.network_id, list(genesis.council))
    forged = bytearray(bundle.encode())
    forged[-1] ^= 1  # flips a bit of the last signature
    return {
        "genesis_json": genesis.to_json(),
        "network_id": genesis.network_id.hex(),
        "quorum": genesis.quorum,
        "bundle": bundle.encode().hex(),
        "forged_bundle": bytes(forged).hex(),
    }


def build() -> dict[str, Any]:
    return {
        "comment": "Generated by tests/vectors/make_vectors.py; do not edit by hand.",
        "values": [{"value": tag(value), "hex": encoding.encode(value).hex()} for value in VALUES],
        "non_canonical": NON_CANONICAL_HEX,
        "ops": op_vectors(),
        "accounts": account_vectors(),
        "key_files": key_file_vectors(),
        "checkpoint": checkpoint_vector(),
    }


def render() -> str:
    return json.dumps(build(), indent=1, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    VECTOR_FILE.write_text(render())
    sys.stdout.write(f"wrote {VECTOR_FILE}\n")
