"""Signed signaling messages: WebRTC offer/answer and WebSocket hello/welcome/confirm.

Pure functions: time (`now`, unix seconds) and nonces are inputs, so the checks are testable
without a network. Every message is an envelope `{"body": bytes, "signature": bytes}` in
canonical msgpack; `body` is itself canonical msgpack of a map with a `kind`, the sender's node
id (`from`, its Ed25519 public key), the intended receiver (`to`, or None when the dialer does
not know it yet), the network id, a fresh random `nonce` and an `expires_at` unix time. The
signature covers `SIGNAL_DOMAIN_TAG + body`, so a signaling signature can never be confused with
a signature over an op or a consensus message. docs/parts/transport.md gives every field.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from swarmd.protocol import crypto, encoding, limits
from swarmd.protocol.crypto import KeyPair
from swarmd.protocol.errors import BadSignatureError, DecodeError, InvalidKeyError

from .errors import (
    SignalBadSignatureError,
    SignalBindingError,
    SignalBusyError,
    SignalExpiredError,
    SignalMalformedError,
    SignalReplayedError,
    SignalWrongNetworkError,
    SignalWrongPeerError,
)

#: Prefix of every signed signaling body (domain separation from ops and consensus messages).
SIGNAL_DOMAIN_TAG = b"swarmd/transport/signal/v1\x00"
SIGNAL_VERSION = 1

KIND_OFFER = "offer"
KIND_ANSWER = "answer"
KIND_HELLO = "hello"
KIND_WELCOME = "welcome"
KIND_CONFIRM = "confirm"

#: Random bytes per nonce: 128 bits never collide by chance.
NONCE_SIZE_BYTES = 16
#: How long a signed signaling message stays valid. Signaling is one HTTP round trip, so 30 s
#: is ample even on a slow link, and it bounds how long the replay cache must remember a nonce.
SIGNAL_TTL_S = 30
#: Clock difference between two nodes that we tolerate on top of the TTL when checking that an
#: expiry is not too far in the future (node clocks are NTP-synced but not perfectly).
SIGNAL_CLOCK_SKEW_S = 30
#: Largest accepted signaling envelope. An SDP with a few candidates is ~1-3 KiB; 64 KiB leaves
#: room for many interfaces while bounding what an unauthenticated client can make us parse.
SIGNAL_SIZE_BYTES_MAX = 64 * 1024
#: Nonces remembered against replay. A nonce is kept until its message expires (at most
#: TTL + skew = 60 s), so this allows ~68 signaling messages per second sustained; beyond it
#: new messages are refused (fail closed) rather than forgetting unexpired nonces.
REPLAY_CACHE_ENTRIES_MAX = 4096
#: DTLS fingerprints per SDP (aiortc lists 3 hash algorithms; browsers 1).
FINGERPRINTS_MAX = 8
#: Length bound of the optional advertised base URL.
URL_SIZE_BYTES_MAX = 512

_FINGERPRINT_LINE = re.compile(r"^a=fingerprint:(\S+) ([0-9A-Fa-f:]+)\s*$", re.MULTILINE)


@dataclass(frozen=True)
class SignedMessage:
    """A verified signaling message: its decoded body and the exact signed envelope bytes."""

    body: dict[str, Any]
    envelope: bytes

    @property
    def sender_id(self) -> bytes:
        sender: bytes = self.body["from"]
        return sender

    @property
    def digest(self) -> bytes:
        """Hash of the signed envelope; an answer names the offer it answers by this digest."""
        return crypto.sha256(self.envelope)


class ReplayCache:
    """Bounded set of seen nonces, each kept until its message's expiry."""

    def __init__(self, entries_max: int = REPLAY_CACHE_ENTRIES_MAX) -> None:
        self._entries_max = entries_max
        self._expiry_by_nonce: OrderedDict[bytes, int] = OrderedDict()

    def __len__(self) -> int:
        return len(self._expiry_by_nonce)

    def remember(self, nonce: bytes, expires_at: int, now: float) -> None:
        """Record `nonce` or raise SignalReplayedError; SignalBusyError when full of live ones."""
        self._forget_expired(now)
        if nonce in self._expiry_by_nonce:
            raise SignalReplayedError("nonce already seen: replayed signaling message")
        if len(self._expiry_by_nonce) >= self._entries_max:
            raise SignalBusyError("replay cache is full of unexpired nonces")
        self._expiry_by_nonce[nonce] = expires_at

    def _forget_expired(self, now: float) -> None:
        # Entries are inserted in arrival order and expiries are within TTL + skew of arrival,
        # so scanning from the oldest and stopping at the first live entry is nearly exact; a
        # few expired entries may linger one call longer, which is harmless.
        while self._expiry_by_nonce:
            nonce, expires_at = next(iter(self._expiry_by_nonce.items()))
            if expires_at >= now:
                return
            del self._expiry_by_nonce[nonce]


def parse_dtls_fingerprints(sdp: str) -> list[str]:
    """The DTLS fingerprints of an SDP as sorted, normalized "alg HEX:..." strings."""
    found = {
        f"{algorithm.lower()} {value.upper()}"
        for algorithm, value in _FINGERPRINT_LINE.findall(sdp)
    }
    return sorted(found)


def count_ice_candidates(sdp: str) -> int:
    return sum(1 for line in sdp.splitlines() if line.startswith("a=candidate:"))


def turn_rest_credentials(
    secret: str, node_id_text: str, now: float, ttl_s: int
) -> tuple[str, str]:
    """coturn `use-auth-secret` credentials: username "<expiry>:<node id>", password
    base64(HMAC-SHA1(secret, username)) (the TURN REST API draft that coturn implements)."""
    username = f"{int(now) + ttl_s}:{node_id_text}"
    mac = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(mac).decode()


def new_body(
    kind: str,
    *,
    keypair: KeyPair,
    network_id: bytes,
    to: bytes | None,
    nonce: bytes,
    now: float,
    ttl_s: int = SIGNAL_TTL_S,
    **fields: Any,
) -> dict[str, Any]:
    """The fields every signaling body carries, plus the kind-specific `fields`."""
    return {
        "v": SIGNAL_VERSION,
        "kind": kind,
        "from": keypair.public_key,
        "to": to,
        "network_id": network_id,
        "nonce": nonce,
        "expires_at": int(now) + ttl_s,
        **fields,
    }


def sign(keypair: KeyPair, body: dict[str, Any]) -> bytes:
    """Encode `body` canonically, sign it with the domain tag and wrap it in an envelope."""
    encoded_body = encoding.encode(body)
    signature = keypair.sign(SIGNAL_DOMAIN_TAG + encoded_body)
    return encoding.encode({"body": encoded_body, "signature": signature})


def open_signed(envelope: bytes, kind: str) -> SignedMessage:
    """Decode an envelope, check the body's shape and verify the sender's signature."""
    if len(envelope) > SIGNAL_SIZE_BYTES_MAX:
        raise SignalMalformedError(f"signaling message larger than {SIGNAL_SIZE_BYTES_MAX} bytes")
    try:
        outer = encoding.decode(envelope, size_max=SIGNAL_SIZE_BYTES_MAX)
        _require(isinstance(outer, dict) and set(outer) == {"body", "signature"}, "envelope")
        encoded_body, signature = outer["body"], outer["signature"]
        _require(isinstance(encoded_body, bytes) and isinstance(signature, bytes), "envelope")
        body = encoding.decode(encoded_body, size_max=SIGNAL_SIZE_BYTES_MAX)
    except DecodeError as exc:
        raise SignalMalformedError(f"signaling message does not decode: {exc.message}") from exc
    _check_common_fields(body, kind)
    try:
        crypto.check_public_key(body["from"])
        crypto.verify(body["from"], SIGNAL_DOMAIN_TAG + encoded_body, signature)
    except (InvalidKeyError, BadSignatureError) as exc:
        raise SignalBadSignatureError(f"signaling signature invalid: {exc.message}") from exc
    return SignedMessage(body=body, envelope=bytes(envelope))


def check_binding(
    message: SignedMessage,
    *,
    network_id: bytes,
    own_id: bytes,
    expected_sender: bytes | None,
    now: float,
    replay_cache: ReplayCache,
) -> None:
    """Check network, addressee, expected sender and expiry, then record the nonce."""
    body = message.body
    if body["network_id"] != network_id:
        raise SignalWrongNetworkError("signaling message is for another network")
    if body["to"] is not None and body["to"] != own_id:
        raise SignalWrongPeerError("signaling message is addressed to another node")
    if body["from"] == own_id:
        raise SignalWrongPeerError("signaling message comes from our own node id")
    if expected_sender is not None and body["from"] != expected_sender:
        raise SignalWrongPeerError("signaling message is signed by another node than expected")
    if body["expires_at"] < now:
        raise SignalExpiredError("signaling message has expired")
    if body["expires_at"] > now + SIGNAL_TTL_S + SIGNAL_CLOCK_SKEW_S:
        raise SignalExpiredError("signaling message expires too far in the future")
    replay_cache.remember(body["nonce"], body["expires_at"], now)


def check_sdp_fingerprints(message: SignedMessage) -> str:
    """Return the SDP after checking that its DTLS fingerprints equal the signed list."""
    sdp_bytes: bytes = message.body["sdp"]
    try:
        sdp = sdp_bytes.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SignalMalformedError("sdp is not UTF-8") from exc
    signed = message.body["fingerprints"]
    in_sdp = parse_dtls_fingerprints(sdp)
    if not in_sdp:
        raise SignalBindingError("sdp carries no DTLS fingerprint")
    if sorted(signed) != in_sdp:
        raise SignalBindingError("signed DTLS fingerprints differ from those in the sdp")
    return sdp


def check_echo(message: SignedMessage, request: SignedMessage) -> None:
    """An answer/welcome/confirm must echo the nonce and digest of the message it answers."""
    if message.body["echo_nonce"] != request.body["nonce"]:
        raise SignalBindingError("reply does not echo our nonce")
    if message.body["echo_digest"] != request.digest:
        raise SignalBindingError("reply names another request than ours")


def _require(condition: bool, what: str) -> None:
    if not condition:
        raise SignalMalformedError(f"malformed signaling {what}")


_KIND_FIELDS: dict[str, dict[str, type]] = {
    KIND_OFFER: {"sdp": bytes, "fingerprints": list},
    KIND_ANSWER: {"sdp": bytes, "fingerprints": list, "echo_nonce": bytes, "echo_digest": bytes},
    KIND_HELLO: {},
    KIND_WELCOME: {"echo_nonce": bytes, "echo_digest": bytes},
    KIND_CONFIRM: {"echo_nonce": bytes, "echo_digest": bytes},
}
_COMMON_FIELDS = {"v", "kind", "from", "to", "network_id", "nonce", "expires_at"}
_OPTIONAL_FIELDS = {"url"}


def _check_common_fields(body: Any, kind: str) -> None:
    _require(isinstance(body, dict), "body")
    _require(body.get("kind") == kind, f"kind (expected {kind!r})")
    kind_fields = _KIND_FIELDS[kind]
    keys = set(body)
    _require(_COMMON_FIELDS | set(kind_fields) <= keys, "body: missing fields")
    _require(keys <= _COMMON_FIELDS | set(kind_fields) | _OPTIONAL_FIELDS, "body: extra fields")
    _require(body["v"] == SIGNAL_VERSION, "version")
    _require(_is_bytes(body["from"], limits.PUBLIC_KEY_SIZE_BYTES), "from")
    _require(body["to"] is None or _is_bytes(body["to"], limits.PUBLIC_KEY_SIZE_BYTES), "to")
    _require(_is_bytes(body["network_id"], limits.HASH_SIZE_BYTES), "network_id")
    _require(_is_bytes(body["nonce"], NONCE_SIZE_BYTES), "nonce")
    _require(_is_int(body["expires_at"]), "expires_at")
    url = body.get("url")
    _require(url is None or (isinstance(url, str) and len(url) <= URL_SIZE_BYTES_MAX), "url")
    for field, field_type in kind_fields.items():
        _require(isinstance(body[field], field_type), field)
    if "echo_nonce" in kind_fields:
        _require(len(body["echo_nonce"]) == NONCE_SIZE_BYTES, "echo_nonce")
        _require(len(body["echo_digest"]) == limits.HASH_SIZE_BYTES, "echo_digest")
    if "fingerprints" in kind_fields:
        fingerprints = body["fingerprints"]
        _require(0 < len(fingerprints) <= FINGERPRINTS_MAX, "fingerprints")
        _require(all(isinstance(item, str) for item in fingerprints), "fingerprints")


def _is_bytes(value: Any, size: int) -> bool:
    return isinstance(value, bytes) and len(value) == size


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
