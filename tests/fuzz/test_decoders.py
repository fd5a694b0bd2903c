"""Issue 14: every decoder of untrusted bytes, driven by Hypothesis with random and
structured-malformed input (valid canonical msgpack of the wrong shape, and valid encodings
with bytes flipped, cut or appended). Each either decodes or raises a typed ProtocolError:
never another exception, never a hang. Bounded: FUZZ_EXAMPLES examples per decoder, so CI
time stays fixed (the hypothesis profile in tests/conftest.py still applies its deadline).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from swarmd.node.config import parse_config_text
from swarmd.node.transport import signaling
from swarmd.protocol import consensus, crypto, encoding, messages, ops, snapshot
from swarmd.protocol.addresses import AddressRecord
from swarmd.protocol.checkpoint import VIRTUAL_EPOCH_MS, Cut
from swarmd.protocol.errors import ProtocolError
from swarmd.protocol.framing import FrameDecoder
from swarmd.protocol.rollback import RollbackCertificate, RollbackVote
from swarmd.protocol.wallet import Author

#: Examples per decoder and input kind per CI run.
FUZZ_EXAMPLES = 300

#: Canonical-msgpack values of any shape (what a peer can send that passes the first decoder).
values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.binary(max_size=64)
    | st.text(max_size=32),
    lambda children: (
        st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=8), children, max_size=6)
    ),
    max_leaves=24,
)


def _mutated(data: bytes) -> st.SearchStrategy[bytes]:
    """`data` with a byte flipped, cut short, or with bytes appended."""
    if not data:
        return st.binary(max_size=64)
    flip = st.tuples(st.integers(0, len(data) - 1), st.integers(1, 255)).map(
        lambda pair: data[: pair[0]] + bytes([data[pair[0]] ^ pair[1]]) + data[pair[0] + 1 :]
    )
    cut = st.integers(0, len(data) - 1).map(lambda n: data[:n])
    grow = st.binary(min_size=1, max_size=16).map(lambda tail: data + tail)
    return flip | cut | grow


def untrusted(seed_encodings: list[bytes]) -> st.SearchStrategy[bytes]:
    strategies = [st.binary(max_size=512), values.map(encoding.encode)]
    strategies += [_mutated(data) for data in seed_encodings]
    return st.one_of(*strategies)


def only_typed_errors(decode: Callable[[bytes], Any], data: bytes) -> None:
    try:
        decode(data)
    except ProtocolError as exc:
        assert exc.code, exc


def _frames(data: bytes) -> None:
    FrameDecoder().receive_frame(data, 0.0)


def _signal(data: bytes) -> None:
    for kind in (signaling.KIND_OFFER, signaling.KIND_HELLO):
        with contextlib.suppress(ProtocolError):
            signaling.open_signed(data, kind)


DECODERS: dict[str, Callable[[bytes], Any]] = {
    "encoding": encoding.decode,
    "op": ops.decode_op,
    "message": messages.decode_message,
    "consensus_message": consensus.decode_message,
    "bundle": consensus.CheckpointBundle.decode,
    "evidence": consensus.Evidence.decode,
    "snapshot_manifest": snapshot.decode_manifest,
    "snapshot_blob": snapshot.decode_blob,
    "frame": _frames,
    "signalling": _signal,
    # Added this wave: what peers send in rollback votes/certificates and peer exchange.
    "rollback_vote": RollbackVote.decode,
    "rollback_certificate": RollbackCertificate.decode,
    "address_record": lambda data: AddressRecord.decode(data, 0.0),
    # The cut (version 2 carries the council-agreed time_ms; branch telemetry).
    "cut": Cut.decode,
}


#: Valid encodings whose mutations are fed to every decoder (a signed op envelope).
_AUTHOR = Author(crypto.KeyPair.from_seed(bytes(32)), bytes(32))
_OTHER = crypto.KeyPair.from_seed(bytes([1]) * 32).public_key
SEEDS = [
    _AUTHOR.grant(_OTHER, 5).envelope,
    _AUTHOR.transfer(_OTHER, 1).envelope,
    Cut(bytes(32), 2, ((_OTHER, 1, bytes(32)),), bytes(32), VIRTUAL_EPOCH_MS).encode(),
]


def _fuzz(name: str) -> Callable[[], None]:
    @settings(max_examples=FUZZ_EXAMPLES)
    @given(data=untrusted(SEEDS))
    def run(data: bytes) -> None:
        only_typed_errors(DECODERS[name], data)

    return run


test_encoding_decoder = _fuzz("encoding")
test_op_decoder = _fuzz("op")
test_message_decoder = _fuzz("message")
test_consensus_message_decoder = _fuzz("consensus_message")
test_bundle_decoder = _fuzz("bundle")
test_evidence_decoder = _fuzz("evidence")
test_snapshot_manifest_decoder = _fuzz("snapshot_manifest")
test_snapshot_blob_decoder = _fuzz("snapshot_blob")
test_frame_decoder = _fuzz("frame")
test_signalling_decoder = _fuzz("signalling")
test_rollback_vote_decoder = _fuzz("rollback_vote")
test_rollback_certificate_decoder = _fuzz("rollback_certificate")
test_address_record_decoder = _fuzz("address_record")
test_cut_decoder = _fuzz("cut")

# --- address records with TURN relays (mesh branch) -------------------------------------------

_RECORD_KEY = crypto.KeyPair.from_seed(bytes([2]) * 32)
_RECORDS = [
    AddressRecord.sign(_RECORD_KEY, {"websocket": "http://127.0.0.1:7000"}, 0.0).encode(),
    AddressRecord.sign(
        _RECORD_KEY,
        {"websocket": "http://127.0.0.1:7000"},
        0.0,
        relays=("turn:relay.example.net:3478", "turns:relay.example.net:5349?transport=tcp"),
    ).encode(),
]
#: A well-formed record body whose fourth field (the relays) is any value.
_RELAY_BODIES = values.map(
    lambda relays: encoding.encode(
        [
            encoding.encode(
                [_RECORD_KEY.public_key, [["websocket", "http://127.0.0.1:1"]], 100, relays]
            ),
            bytes(64),
        ]
    )
)


@settings(max_examples=FUZZ_EXAMPLES)
@given(data=untrusted(_RECORDS) | _RELAY_BODIES)
def test_address_record_with_relays_decoder(data: bytes) -> None:
    only_typed_errors(DECODERS["address_record"], data)


@settings(max_examples=FUZZ_EXAMPLES)
@given(text=st.text(max_size=400) | values.map(lambda v: f"[node]\nkey = {v!r}\n"))
def test_config_parser(text: str) -> None:
    try:
        parse_config_text(text, "/nonexistent-base", "fuzz")
    except ProtocolError as exc:
        assert exc.code
