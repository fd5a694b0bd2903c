"""Identities and signatures, including Project Wycheproof's Ed25519 vectors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from swarmd.protocol import crypto
from swarmd.protocol.errors import BadSignatureError, InvalidAccountIdError, InvalidKeyError

WYCHEPROOF = (
    Path(__file__).resolve().parents[2].parent / "shared/testdata/wycheproof/ed25519_test.json"
)

# The eight small-order points of edwards25519 (and a non-canonical encoding of the identity).
SMALL_ORDER_KEYS = [
    bytes.fromhex("0100000000000000000000000000000000000000000000000000000000000000"),
    bytes.fromhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    bytes.fromhex("0000000000000000000000000000000000000000000000000000000000000080"),
    bytes.fromhex("0000000000000000000000000000000000000000000000000000000000000000"),
    bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
    bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa"),
    bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),
    bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85"),
    bytes.fromhex("eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
]


def wycheproof_cases() -> list[tuple[int, bytes, bytes, bytes, str]]:
    if not WYCHEPROOF.exists():
        return []
    data = json.loads(WYCHEPROOF.read_text())
    cases = []
    for group in data["testGroups"]:
        key = bytes.fromhex(group["publicKey"]["pk"])
        for test in group["tests"]:
            cases.append(
                (
                    test["tcId"],
                    key,
                    bytes.fromhex(test["msg"]),
                    bytes.fromhex(test["sig"]),
                    test["result"],
                )
            )
    return cases


@pytest.mark.skipif(not WYCHEPROOF.exists(), reason=f"Wycheproof vectors absent at {WYCHEPROOF}")
def test_wycheproof_vectors_all_give_the_expected_result() -> None:
    cases = wycheproof_cases()
    assert len(cases) >= 150
    wrong = []
    for tc_id, key, message, signature, result in cases:
        valid = crypto.is_valid_signature(key, message, signature)
        if valid != (result == "valid"):
            wrong.append(tc_id)
    assert wrong == []


@pytest.mark.skipif(not WYCHEPROOF.exists(), reason=f"Wycheproof vectors absent at {WYCHEPROOF}")
def test_wycheproof_through_the_op_pipeline_entry_point() -> None:
    """`verify` is the entry point every op and consensus message uses; it raises typed."""
    for _tc_id, key, message, signature, result in wycheproof_cases():
        if result == "valid":
            crypto.verify(key, message, signature)
        else:
            with pytest.raises(BadSignatureError):
                crypto.verify(key, message, signature)


@pytest.mark.parametrize("key", SMALL_ORDER_KEYS)
def test_small_order_keys_are_rejected(key: bytes) -> None:
    with pytest.raises(InvalidKeyError):
        crypto.check_public_key(key)
    # A "signature" that verifies for any message under small-order keys in lax libraries.
    forged = SMALL_ORDER_KEYS[0] + bytes(32)
    assert not crypto.is_valid_signature(key, b"any message", forged)


def test_non_canonical_key_is_rejected() -> None:
    # y = p + 1 encodes the same point as y = 1 but is not canonical.
    key = bytes.fromhex("eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")
    with pytest.raises(InvalidKeyError):
        crypto.check_public_key(key)


def test_malleated_signature_s_plus_l_is_rejected() -> None:
    keypair = crypto.KeyPair.from_seed(b"\x07" * 32)
    signature = keypair.sign(b"pay 10")
    order = 2**252 + 27742317777372353535851937790883648493
    s = int.from_bytes(signature[32:], "little") + order
    malleated = signature[:32] + s.to_bytes(32, "little")
    assert crypto.is_valid_signature(keypair.public_key, b"pay 10", signature)
    assert not crypto.is_valid_signature(keypair.public_key, b"pay 10", malleated)


def test_account_id_round_trip_and_typos() -> None:
    keypair = crypto.KeyPair.from_seed(b"\x01" * 32)
    text = keypair.account_id
    assert text.startswith(crypto.ACCOUNT_ID_PREFIX)
    assert crypto.parse_account_id(text) == keypair.public_key
    for position in range(len(crypto.ACCOUNT_ID_PREFIX), len(text)):
        replacement = "a" if text[position] != "a" else "b"
        typo = text[:position] + replacement + text[position + 1 :]
        with pytest.raises(InvalidAccountIdError):
            crypto.parse_account_id(typo)


@pytest.mark.parametrize("text", ["", "sw1", "xx1" + "a" * 58, "sw1" + "!" * 58, "sw1" + "a" * 57])
def test_malformed_account_ids(text: str) -> None:
    with pytest.raises(InvalidAccountIdError):
        crypto.parse_account_id(text)


def test_account_id_of_small_order_key_is_rejected() -> None:
    text = crypto.account_id_text(SMALL_ORDER_KEYS[0])
    with pytest.raises(InvalidAccountIdError):
        crypto.parse_account_id(text)


def test_keypair_repr_hides_the_secret() -> None:
    keypair = crypto.KeyPair.from_seed(b"\x02" * 32)
    assert keypair.seed.hex() not in repr(keypair)
