"""The error hierarchy of the protocol core (h11-style).

`RemoteProtocolError`: a peer or client sent something wrong (bad bytes, bad signature, an
illegal transition, over a limit). `LocalProtocolError`: our own caller misused the API.
Every concrete subclass carries a stable `code` string that the HTTP API, the metrics and the
logs reuse; codes never change meaning once published (docs/PROTOCOL.md lists them).
A remote error never escapes a `receive_*` method: it becomes an event instead.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """Base of every error the core raises on purpose."""

    code: str = "protocol_error"

    def __init__(self, message: str = "", *, code: str | None = None) -> None:
        super().__init__(message or self.code)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.code


class RemoteProtocolError(ProtocolError):
    """Input that came from outside (a peer, a client, a file) is wrong."""

    code = "remote_protocol_error"


class LocalProtocolError(ProtocolError):
    """Our own caller used the core wrongly; a bug in the caller."""

    code = "local_protocol_error"


# --- decoding -------------------------------------------------------------------------------


class DecodeError(RemoteProtocolError):
    """Bytes that are not valid canonical msgpack within the limits."""

    code = "decode_error"


class NonCanonicalEncodingError(DecodeError):
    code = "non_canonical_encoding"


class LimitExceededError(RemoteProtocolError):
    """A size, count, depth or rate limit was hit."""

    code = "limit_exceeded"


# --- identities and signatures --------------------------------------------------------------


class InvalidKeyError(RemoteProtocolError):
    """A public key that is malformed, non-canonical or of small order."""

    code = "invalid_key"


class InvalidAccountIdError(RemoteProtocolError):
    """An account id text form with a bad prefix, length, alphabet or checksum."""

    code = "invalid_account_id"


class BadSignatureError(RemoteProtocolError):
    code = "bad_signature"


# --- operations -----------------------------------------------------------------------------


class OpRejectedError(RemoteProtocolError):
    """An operation failed validation; `code` is the stable rejection reason."""

    code = "op_rejected"


class MalformedOpError(OpRejectedError):
    code = "malformed_op"


class WrongNetworkError(OpRejectedError):
    code = "wrong_network"


class GenesisError(RemoteProtocolError):
    """A genesis file that is malformed or inconsistent."""

    code = "invalid_genesis"
