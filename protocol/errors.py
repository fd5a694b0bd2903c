"""The error hierarchy of the protocol core (h11-style).

`RemoteProtocolError`: a peer or client sent something wrong (bad bytes, bad signature, an
illegal transition, over a limit). `LocalProtocolError`: our own caller misused the API.
Every concrete subclass carries a stable `code` string that the HTTP API, the metrics and the
logs reuse; codes never change meaning once published (docs/PROTOCOL.md lists them).
A remote error never escapes a `receive_*` method: it becomes an event instead.
"""

from __future__ import annotations

from .codes import RejectCode


class ProtocolError(Exception):
    """Base of every error the core raises on purpose."""

    code: str = str(RejectCode.PROTOCOL_ERROR)

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        cls.code = str(cls.code)  # a plain string (see `__init__`)

    def __init__(self, message: str = "", *, code: str | None = None) -> None:
        # Codes are named by `codes.RejectCode` but held as the plain strings they equal, so
        # every repr of an error or an event that carries its code (logs, the simulator's
        # trace) is the one it was before the enum.
        super().__init__(message or self.code)
        if code is not None:
            self.code = str(code)

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.code


class RemoteProtocolError(ProtocolError):
    """Input that came from outside (a peer, a client, a file) is wrong."""

    code: str = RejectCode.REMOTE_PROTOCOL_ERROR


class LocalProtocolError(ProtocolError):
    """Our own caller used the core wrongly; a bug in the caller."""

    code: str = RejectCode.LOCAL_PROTOCOL_ERROR


# --- decoding -------------------------------------------------------------------------------


class DecodeError(RemoteProtocolError):
    """Bytes that are not valid canonical msgpack within the limits."""

    code: str = RejectCode.DECODE_ERROR


class NonCanonicalEncodingError(DecodeError):
    code: str = RejectCode.NON_CANONICAL_ENCODING


class LimitExceededError(RemoteProtocolError):
    """A size, count, depth or rate limit was hit."""

    code: str = RejectCode.LIMIT_EXCEEDED


# --- identities and signatures --------------------------------------------------------------


class InvalidKeyError(RemoteProtocolError):
    """A public key that is malformed, non-canonical or of small order."""

    code: str = RejectCode.INVALID_KEY


class InvalidAccountIdError(RemoteProtocolError):
    """An account id text form with a bad prefix, length, alphabet or checksum."""

    code: str = RejectCode.INVALID_ACCOUNT_ID


class BadSignatureError(RemoteProtocolError):
    code: str = RejectCode.BAD_SIGNATURE


# --- operations -----------------------------------------------------------------------------


class OpRejectedError(RemoteProtocolError):
    """An operation failed validation; `code` is the stable rejection reason."""

    code: str = RejectCode.OP_REJECTED


class MalformedOpError(OpRejectedError):
    code: str = RejectCode.MALFORMED_OP


class WrongNetworkError(OpRejectedError):
    code: str = RejectCode.WRONG_NETWORK


class GenesisError(RemoteProtocolError):
    """A genesis file that is malformed or inconsistent."""

    code: str = RejectCode.INVALID_GENESIS
