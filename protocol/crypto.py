"""Ed25519 identities and hashing.

Signing and verification use libsodium through PyNaCl, chosen deliberately over
`cryptography`: it verified 1.6x faster on this machine kind (verification dominates the
pipeline), and libsodium's verification itself rejects small-order and non-canonical
public keys, non-canonical R and s >= L, so a forged signature for a small-order key (which
`cryptography`/OpenSSL accepts for any message) cannot verify. Every key that enters the system
without a signature (a grant recipient, a genesis member) is checked with
`crypto_core_ed25519_is_valid_point`, which demands a canonical point in the prime-order
subgroup.

Account ids have a text form: "sw1" + base32 (lowercase, no padding) of key || checksum, where
checksum = the first 4 bytes of sha256("swarmd-account-id" || key). A typo in any character
changes the decoded key or checksum and is rejected.
"""

from __future__ import annotations

import base64
import contextvars
import functools
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import nacl.bindings as sodium
import nacl.exceptions

from . import limits
from .errors import BadSignatureError, InvalidAccountIdError, InvalidKeyError, LocalProtocolError

ACCOUNT_ID_PREFIX = "sw1"
_CHECKSUM_TAG = b"swarmd-account-id"
_CHECKSUM_SIZE_BYTES = 4
_ACCOUNT_ID_TEXT_LENGTH = len(ACCOUNT_ID_PREFIX) + 58  # base32 of 36 bytes, unpadded


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


VALID_KEY_CACHE_ENTRIES_MAX = limits.VALID_KEY_CACHE_ENTRIES_MAX  # why: see limits.py


@functools.lru_cache(maxsize=VALID_KEY_CACHE_ENTRIES_MAX)
def _is_valid_point(key: bytes) -> bool:
    return bool(sodium.crypto_core_ed25519_is_valid_point(key))


#: Whether a 32-byte key is a canonical Ed25519 point of prime order (memoized). For hot paths
#: that check the type and length themselves; `check_public_key` is the raising form.
is_valid_public_key = _is_valid_point


def check_public_key(key: bytes) -> bytes:
    """Return `key` if it is a canonical Ed25519 point of prime order, else raise."""
    if not isinstance(key, bytes) or len(key) != limits.PUBLIC_KEY_SIZE_BYTES:
        raise InvalidKeyError("public key must be 32 bytes")
    if not _is_valid_point(key):
        raise InvalidKeyError("public key is not a canonical point of prime order")
    return key


def verify(public_key: bytes, message: bytes, signature: bytes) -> None:
    """Raise BadSignatureError unless `signature` is a valid strict signature of `message`."""
    if len(signature) != limits.SIGNATURE_SIZE_BYTES:
        raise BadSignatureError("signature or key has the wrong length")
    verify_signed(public_key, signature + message)


def verify_signed(public_key: bytes, signed: bytes) -> None:
    """`verify` for a caller that already holds signature || message in one byte string (the
    form libsodium takes), so it is not built twice; `signed` must be at least 64 bytes."""
    if len(public_key) != limits.PUBLIC_KEY_SIZE_BYTES or len(signed) < limits.SIGNATURE_SIZE_BYTES:
        raise BadSignatureError("signature or key has the wrong length")
    cache = _verified_cache.get()
    if cache is not None:
        digest = hashlib.sha256(public_key + signed).digest()
        if digest in cache.digests:
            cache.hits += 1
            return
    try:
        # PyNaCl exposes only the combined form; crypto_sign_open runs libsodium's strict
        # crypto_sign_verify_detached on signature || message.
        sodium.crypto_sign_open(signed, public_key)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError) as exc:
        raise BadSignatureError("signature does not verify") from exc
    if cache is not None:
        cache.add(digest)


class VerifiedCache:
    """Verifications that succeeded, remembered by sha256(public_key || signed) (the key has a
    fixed size, so the concatenation is unambiguous): a pure speed-up for a process that
    verifies the same bytes many times, the simulator, where every simulated node verifies
    every vote and bundle (tests/sim: 90% of its verifications repeat one already made). A
    failed verification is never remembered, so `verify_signed` returns or raises exactly as
    without the cache. Used only inside `remembering_verifications`: the daemon and the
    benchmarks never install one (a benchmark that verifies the same ops again must pay
    again). Full at `entries_max` digests, it starts over."""

    def __init__(self, entries_max: int) -> None:
        if entries_max < 1:
            raise LocalProtocolError("a verification cache holds at least one entry")
        self.entries_max = entries_max
        self.digests: set[bytes] = set()
        #: Verifications answered from the cache.
        self.hits = 0

    def add(self, digest: bytes) -> None:
        if len(self.digests) >= self.entries_max:
            self.digests.clear()
        self.digests.add(digest)


_verified_cache: contextvars.ContextVar[VerifiedCache | None] = contextvars.ContextVar(
    "swarmd_verified_cache", default=None
)


@contextmanager
def remembering_verifications(cache: VerifiedCache) -> Iterator[None]:
    """Within this block (this thread and context only), `verify_signed` and `verify` skip
    libsodium for bytes `cache` saw verify already."""
    token = _verified_cache.set(cache)
    try:
        yield
    finally:
        _verified_cache.reset(token)


def is_valid_signature(public_key: bytes, message: bytes, signature: bytes) -> bool:
    try:
        verify(public_key, message, signature)
    except BadSignatureError:
        return False
    return True


@dataclass(frozen=True)
class KeyPair:
    """An Ed25519 key pair. `seed` is the 32-byte secret from which everything derives."""

    seed: bytes
    public_key: bytes
    _secret: bytes

    @classmethod
    def from_seed(cls, seed: bytes) -> KeyPair:
        if len(seed) != 32:
            raise LocalProtocolError("seed must be 32 bytes")
        public_key, secret = sodium.crypto_sign_seed_keypair(seed)
        return cls(seed=seed, public_key=public_key, _secret=secret)

    def sign(self, message: bytes) -> bytes:
        signed: bytes = sodium.crypto_sign(message, self._secret)
        return signed[:64]

    @property
    def account_id(self) -> str:
        return account_id_text(self.public_key)

    def __repr__(self) -> str:  # never print the secret
        return f"KeyPair({self.account_id})"


def _checksum(key: bytes) -> bytes:
    return sha256(_CHECKSUM_TAG + key)[:_CHECKSUM_SIZE_BYTES]


@functools.lru_cache(maxsize=VALID_KEY_CACHE_ENTRIES_MAX)
def account_id_text(key: bytes) -> str:
    encoded = base64.b32encode(key + _checksum(key)).decode().rstrip("=").lower()
    return ACCOUNT_ID_PREFIX + encoded


def parse_account_id(text: str) -> bytes:
    """Parse the text form back to the 32-byte key; typos and bad keys raise typed errors."""
    if not isinstance(text, str) or not text.startswith(ACCOUNT_ID_PREFIX):
        raise InvalidAccountIdError(f"account id must start with {ACCOUNT_ID_PREFIX!r}")
    if len(text) != _ACCOUNT_ID_TEXT_LENGTH:
        raise InvalidAccountIdError("account id has the wrong length")
    body = text[len(ACCOUNT_ID_PREFIX) :].upper()
    try:
        raw = base64.b32decode(body + "=" * (-len(body) % 8))
    except ValueError as exc:
        raise InvalidAccountIdError("account id has characters outside base32") from exc
    key, checksum = raw[:32], raw[32:]
    if _checksum(key) != checksum:
        raise InvalidAccountIdError("account id checksum does not match (typo?)")
    try:
        return check_public_key(key)
    except InvalidKeyError as exc:
        raise InvalidAccountIdError(f"account id names an invalid key: {exc}") from exc
