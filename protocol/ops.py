"""Operations: signed envelopes in canonical msgpack.

Wire form (the envelope) is the canonical msgpack array ``[1, kind, body, signature]``:
``kind`` a small int (see `Kind`), ``body`` the bytes of a canonical msgpack map, ``signature``
64 bytes. The signature covers ``OP_DOMAIN_TAG || network_id || kind (1 byte) || body``; since
the body is signed as the exact bytes that travel, nothing is re-encoded on verify. The op id is
``sha256(envelope)``.

Every body holds ``author`` (32-byte key), ``seq`` (from 1), ``prev`` (id of the author's
previous op, empty at seq 1), ``deps`` (strictly ascending op ids this op relies on) and
``basis`` (a final checkpoint height whose state counts as causal past, 0 = genesis), plus the
fields of its kind. No other keys are allowed. docs/PROTOCOL.md states every rule.
"""

from __future__ import annotations

import re
import threading
from enum import IntEnum
from typing import Any

import msgpack

from . import crypto, encoding, limits
from .codes import RejectCode
from .errors import (
    BadSignatureError,
    DecodeError,
    LocalProtocolError,
    MalformedOpError,
    OpRejectedError,
    RemoteProtocolError,
)

OP_DOMAIN_TAG = b"swarmd/op/v1\x00"
ENVELOPE_VERSION = 1
_HANDLE_RE = re.compile(r"[a-z0-9_-]+")


class Kind(IntEnum):
    GRANT = 1
    TRANSFER = 2
    BURN = 3
    HANDLE_CLAIM = 4
    HANDLE_ENDORSE = 5
    HANDLE_REVOKE = 6
    COUNCIL_QUIESCE = 7
    COUNCIL_RESUME = 8
    COUNCIL_PAUSE_CLAIMS = 9
    COUNCIL_RESUME_CLAIMS = 10

    @property
    def label(self) -> str:
        return _KIND_LABELS[self]

    @classmethod
    def from_label(cls, label: str) -> Kind:
        for kind, text in _KIND_LABELS.items():
            if text == label:
                return kind
        raise LocalProtocolError(f"unknown op kind {label!r}")


_KIND_LABELS = {
    Kind.GRANT: "grant",
    Kind.TRANSFER: "transfer",
    Kind.BURN: "burn",
    Kind.HANDLE_CLAIM: "handle.claim",
    Kind.HANDLE_ENDORSE: "handle.endorse",
    Kind.HANDLE_REVOKE: "handle.revoke",
    Kind.COUNCIL_QUIESCE: "council.quiesce",
    Kind.COUNCIL_RESUME: "council.resume",
    Kind.COUNCIL_PAUSE_CLAIMS: "council.pause_claims",
    Kind.COUNCIL_RESUME_CLAIMS: "council.resume_claims",
}

#: The council control plane: the kinds a node still admits, gossips and finalizes while the
#: council has quiesced the network (docs/PROTOCOL.md, "Council control plane"). Handle
#: endorsements and grants are not among them: they create client state.
COUNCIL_KINDS = frozenset(
    {
        Kind.COUNCIL_QUIESCE,
        Kind.COUNCIL_RESUME,
        Kind.HANDLE_REVOKE,
        Kind.COUNCIL_PAUSE_CLAIMS,
        Kind.COUNCIL_RESUME_CLAIMS,
    }
)

COMMON_FIELDS = ("author", "seq", "prev", "deps", "basis")
#: The fields each kind carries besides the common ones.
KIND_FIELDS: dict[Kind, tuple[str, ...]] = {
    Kind.GRANT: ("to", "amount"),
    Kind.TRANSFER: ("to", "amount"),
    Kind.BURN: ("amount", "target"),
    Kind.HANDLE_CLAIM: ("handle",),
    Kind.HANDLE_ENDORSE: ("claim",),
    Kind.HANDLE_REVOKE: ("handle",),
    Kind.COUNCIL_QUIESCE: ("reason",),
    Kind.COUNCIL_RESUME: ("reason",),
    Kind.COUNCIL_PAUSE_CLAIMS: ("reason",),
    Kind.COUNCIL_RESUME_CLAIMS: ("reason",),
}
#: The exact keys of each kind's body in canonical (byte-sorted) order.
_SORTED_KEYS = {
    kind: tuple(sorted(COMMON_FIELDS + fields, key=str.encode))
    for kind, fields in KIND_FIELDS.items()
}
_KINDS_BY_NUMBER = {int(kind): kind for kind in Kind}
#: The one-byte kind that `signed_message` puts before the body.
_KIND_BYTES = {kind: bytes((kind,)) for kind in Kind}


class Op:
    """A decoded, shape-checked operation (its signature is checked separately).

    Treated as immutable. A plain slotted class rather than a frozen dataclass: a frozen
    dataclass sets each of its 14 fields through object.__setattr__, which made building an
    Op a fifth of the decode cost on the pipeline's hot path (`decode_op` also passes the
    arguments by position, in the order of `__init__`). Equality and hashing go by the op id
    (a hash of the exact envelope bytes).
    """

    __slots__ = (
        "amount",
        "author",
        "basis",
        "body",
        "deps",
        "envelope",
        "fields",
        "kind",
        "op_id",
        "parents",
        "prev",
        "seq",
        "signature",
        "to",
    )

    def __init__(
        self,
        op_id: bytes,
        kind: Kind,
        author: bytes,
        seq: int,
        prev: bytes,
        deps: tuple[bytes, ...],
        basis: int,
        fields: dict[str, Any],
        body: bytes,
        signature: bytes,
        envelope: bytes,
        amount: int = 0,
        to: bytes = b"",
        parents: tuple[bytes, ...] = (),
    ) -> None:
        self.op_id = op_id
        self.kind = kind
        self.author = author
        self.seq = seq
        self.prev = prev
        self.deps = deps
        self.basis = basis
        self.fields = fields
        self.body = body
        self.signature = signature
        self.envelope = envelope
        #: Copies of the hot fields (0 / empty where the kind has none), read on every apply.
        self.amount = amount
        self.to = to
        #: prev (when present) followed by deps: every op this one needs applied first.
        self.parents = parents

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Op) and other.envelope == self.envelope

    def __hash__(self) -> int:
        return hash(self.op_id)

    def __repr__(self) -> str:
        return f"Op({self.kind.label} {self.op_id.hex()[:12]} seq={self.seq})"

    def signed_message(self, network_id: bytes) -> bytes:
        return signed_message(network_id, self.kind, self.body)

    def describe(self) -> dict[str, Any]:
        """A JSON-friendly view for the API and the CLI."""
        view: dict[str, Any] = {
            "op_id": self.op_id.hex(),
            "kind": self.kind.label,
            "author": crypto.account_id_text(self.author),
            "seq": self.seq,
            "prev": self.prev.hex(),
            "deps": [dep.hex() for dep in self.deps],
            "basis": self.basis,
        }
        for name, value in self.fields.items():
            if name == "to":
                view[name] = crypto.account_id_text(value)
            elif isinstance(value, bytes):
                view[name] = value.hex()
            else:
                view[name] = value
        return view


def signed_message(network_id: bytes, kind: int, body: bytes) -> bytes:
    """What the author signs (`verify_op` builds the same bytes behind the signature)."""
    return b"".join((OP_DOMAIN_TAG, network_id, bytes((kind,)), body))


def op_id_of(envelope: bytes) -> bytes:
    return crypto.sha256(envelope)


# --- building ----------------------------------------------------------------------------------


def build_op(
    keypair: crypto.KeyPair,
    network_id: bytes,
    kind: Kind,
    *,
    seq: int,
    prev: bytes = b"",
    deps: tuple[bytes, ...] | list[bytes] = (),
    basis: int = 0,
    **fields: Any,
) -> Op:
    """Sign a new op. Raises LocalProtocolError if the result would not pass `decode_op`."""
    body_value = {
        "author": keypair.public_key,
        "seq": seq,
        "prev": prev,
        "deps": sorted(set(deps)),
        "basis": basis,
        **fields,
    }
    body = encoding.encode(body_value)
    signature = keypair.sign(signed_message(network_id, kind, body))
    envelope = encoding.encode([ENVELOPE_VERSION, int(kind), body, signature])
    try:
        return decode_op(envelope)
    except OpRejectedError as exc:
        raise LocalProtocolError(f"built an invalid op: {exc.code}: {exc}") from exc


# --- decoding and shape ------------------------------------------------------------------------


def decode_op(envelope: bytes, op_id: bytes | None = None) -> Op:
    """Decode and shape-check an envelope. Raises MalformedOpError / DecodeError subclasses.

    The signature is not checked here (see `verify_op`), so that verification, which dominates
    the cost, can run on worker threads. `op_id`, when given, must be `op_id_of(envelope)`
    (the ledger hashes the envelope first to answer duplicates without decoding them).

    This is the hot path of the pipeline: instead of the generic canonical decoder it checks
    the exact expected shape and then compares a re-encoding with the input, which proves
    canonical form for this fixed shape at a third of the cost. Grants and transfers (nearly
    all traffic) first try `_credit_op`, a lean copy of the same checks that gives up (returns
    None) on anything unusual, so every error still comes from the one general path below.
    """
    if not isinstance(envelope, bytes) or len(envelope) > limits.OP_ENVELOPE_SIZE_BYTES_MAX:
        raise MalformedOpError(
            f"envelope must be at most {limits.OP_ENVELOPE_SIZE_BYTES_MAX} bytes"
        )
    split = _split_canonical_envelope(envelope)
    if split is None:
        kind_number, body, signature = _decode_envelope_slow(envelope)
    else:
        kind_number, body, signature = split
    kind = _KINDS_BY_NUMBER.get(kind_number)
    if kind is None:
        raise MalformedOpError(f"unknown op kind {kind_number}", code=RejectCode.UNKNOWN_KIND)
    fields = _unpack(body, "body")
    if op_id is None:
        op_id = op_id_of(envelope)
    if kind is Kind.TRANSFER or kind is Kind.GRANT:
        op = _credit_op(op_id, kind, fields, body, signature, envelope)
        if op is not None:
            return op
    return _checked_op(op_id, kind, fields, body, signature, envelope)


def _checked_op(
    op_id: bytes, kind: Kind, fields: Any, body: bytes, signature: bytes, envelope: bytes
) -> Op:
    """The general shape checks of every kind; raises the precise MalformedOpError."""
    if type(fields) is not dict or tuple(fields) != _SORTED_KEYS[kind]:
        raise MalformedOpError(f"{kind.label} body must have exactly {_SORTED_KEYS[kind]}")
    author, seq, prev, deps, basis = (fields[name] for name in COMMON_FIELDS)
    _check_common(author, seq, prev, deps, basis)
    _check_kind_fields(kind, fields)
    # Every value now has a known scalar type (or is the list of 32-byte deps), so this
    # re-encoding is canonical; equality proves the body was too.
    if encoding.pack(fields) != body:
        raise MalformedOpError(
            "body is not canonical msgpack", code=RejectCode.NON_CANONICAL_ENCODING
        )
    for name in COMMON_FIELDS:
        del fields[name]
    deps_tuple = tuple(deps)
    return Op(
        op_id,
        kind,
        author,
        seq,
        prev,
        deps_tuple,
        basis,
        fields,
        body,
        signature,
        envelope,
        fields.get("amount", 0),
        fields.get("to", b""),
        (prev, *deps_tuple) if prev else deps_tuple,
    )


#: The body keys of a grant or a transfer, in canonical order (the order `_credit_op` reads).
_CREDIT_KEYS = ("amount", "author", "basis", "deps", "prev", "seq", "to")
assert _CREDIT_KEYS == _SORTED_KEYS[Kind.GRANT] == _SORTED_KEYS[Kind.TRANSFER]
_is_valid_key = crypto.is_valid_public_key
_HASH_SIZE = limits.HASH_SIZE_BYTES
_PUBLIC_KEY_SIZE = limits.PUBLIC_KEY_SIZE_BYTES


def _credit_op(
    op_id: bytes, kind: Kind, fields: Any, body: bytes, signature: bytes, envelope: bytes
) -> Op | None:
    """The Op of a well-formed grant or transfer body, or None to let the general path decide.

    Accepts exactly what the general path accepts (the same checks as `_check_common`,
    `_check_kind_fields` and the canonical re-encoding, written out for this one shape), so
    the two give the same Op; tests/protocol/test_pipeline_paths.py holds them to that.
    """
    if type(fields) is not dict or tuple(fields) != _CREDIT_KEYS:
        return None
    amount, author, basis, deps, prev, seq, to = fields.values()
    if (
        type(author) is not bytes
        or len(author) != _PUBLIC_KEY_SIZE
        or type(to) is not bytes
        or len(to) != _PUBLIC_KEY_SIZE
        or type(seq) is not int
        or not 1 <= seq <= limits.SEQ_MAX
        or type(basis) is not int
        or not 0 <= basis <= limits.SEQ_MAX
        or type(amount) is not int
        or not 1 <= amount <= limits.AMOUNT_MAX
        or type(prev) is not bytes
        or len(prev) != (0 if seq == 1 else _HASH_SIZE)
        or type(deps) is not list
        or len(deps) > limits.OP_DEPS_MAX
    ):
        return None
    previous = b""
    for dep in deps:
        if type(dep) is not bytes or len(dep) != _HASH_SIZE or dep <= previous:
            return None
        previous = dep
    if (prev and prev in deps) or not (_is_valid_key(author) and _is_valid_key(to)):
        return None
    if _packer().pack(fields) != body:
        return None
    deps_tuple = tuple(deps)
    return Op(
        op_id,
        kind,
        author,
        seq,
        prev,
        deps_tuple,
        basis,
        {"amount": amount, "to": to},
        body,
        signature,
        envelope,
        amount,
        to,
        (prev, *deps_tuple) if prev else deps_tuple,
    )


_thread_state = threading.local()


def _packer() -> msgpack.Packer:
    """This thread's reusable canonical packer (building one per call costs more than packing a
    body; one per thread because worker threads decode concurrently)."""
    try:
        packer: msgpack.Packer = _thread_state.packer
    except AttributeError:
        packer = _thread_state.packer = msgpack.Packer(use_bin_type=True)
    return packer


_SIGNATURE_HEADER = b"\xc4\x40"  # bin8 of length 64


def _split_canonical_envelope(envelope: bytes) -> tuple[int, bytes, bytes] | None:
    """The fast path: slice an envelope that is byte-for-byte in canonical form.

    A canonical envelope is exactly: 0x94 (array of 4), 0x01 (version), the kind as a positive
    fixint, the body as bin8 (length < 256) or bin16 (length >= 256), then 0xc4 0x40 and the
    64 signature bytes, and nothing after. Anything else (including every non-canonical
    encoding of the same value) returns None and takes the general path, which explains it.
    """
    if len(envelope) < 72 or envelope[0] != 0x94 or envelope[1] != ENVELOPE_VERSION:
        return None
    kind_number = envelope[2]
    if kind_number > 0x7F:
        return None
    marker = envelope[3]
    if marker == 0xC4:
        start, length = 5, envelope[4]
    elif marker == 0xC5:
        start, length = 6, int.from_bytes(envelope[4:6], "big")
        if length < 256:
            return None
    else:
        return None
    end = start + length
    if len(envelope) != end + 66 or envelope[end : end + 2] != _SIGNATURE_HEADER:
        return None
    return kind_number, envelope[start:end], envelope[end + 2 :]


def envelope_kind_number(envelope: bytes) -> int | None:
    """The kind number of an envelope in canonical form, read from its fixed layout without
    decoding; None for anything else (which `decode_op` would explain or refuse)."""
    split = _split_canonical_envelope(envelope)
    return None if split is None else split[0]


def envelope_metadata(envelope: bytes) -> tuple[bytes, bytes, int]:
    """(op id, author, seq) of an envelope this node already admitted (the op log's columns).

    Cheaper than `decode_op` because it re-checks nothing; for anything not already validated
    use `decode_op`.
    """
    split = _split_canonical_envelope(envelope)
    if split is None:
        op = decode_op(envelope)
        return op.op_id, op.author, op.seq
    body = encoding.unpack(split[1], size_max=limits.OP_ENVELOPE_SIZE_BYTES_MAX)
    return op_id_of(envelope), body["author"], body["seq"]


def _decode_envelope_slow(envelope: bytes) -> tuple[int, bytes, bytes]:
    """The general path: decode any msgpack and say precisely what is wrong with it."""
    outer = _unpack(envelope, "envelope")
    if type(outer) is not list or len(outer) != 4:
        raise MalformedOpError("envelope must be [version, kind, body, signature]")
    version, kind_number, body, signature = outer
    if type(version) is not int or version != ENVELOPE_VERSION:
        raise MalformedOpError(
            f"unknown envelope version {version!r}", code=RejectCode.UNKNOWN_VERSION
        )
    if type(kind_number) is not int:
        raise MalformedOpError("kind must be an int")
    if kind_number not in _KINDS_BY_NUMBER:
        raise MalformedOpError(f"unknown op kind {kind_number}", code=RejectCode.UNKNOWN_KIND)
    if type(body) is not bytes or type(signature) is not bytes:
        raise MalformedOpError("body and signature must be bytes")
    if len(signature) != limits.SIGNATURE_SIZE_BYTES:
        raise MalformedOpError("signature must be 64 bytes")
    if encoding.pack(outer) != envelope:
        raise MalformedOpError(
            "envelope is not canonical msgpack", code=RejectCode.NON_CANONICAL_ENCODING
        )
    return kind_number, body, signature


def _unpack(data: bytes, what: str) -> Any:
    try:
        return encoding.unpack(data, size_max=limits.OP_ENVELOPE_SIZE_BYTES_MAX)
    except DecodeError as exc:
        raise MalformedOpError(f"{what}: {exc.message}") from exc


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_hash(value: object) -> bool:
    return isinstance(value, bytes) and len(value) == limits.HASH_SIZE_BYTES


def _check_common(author: object, seq: object, prev: object, deps: object, basis: object) -> None:
    if not isinstance(author, bytes):
        raise MalformedOpError("author must be bytes")
    crypto.check_public_key(author)
    if not _is_int(seq) or not 1 <= seq <= limits.SEQ_MAX:  # type: ignore[operator]
        raise MalformedOpError("seq must be an int from 1")
    if seq == 1 and prev != b"":
        raise MalformedOpError("prev must be empty at seq 1", code=RejectCode.BAD_PREV)
    if seq != 1 and not _is_hash(prev):
        raise MalformedOpError("prev must be a 32-byte op id after seq 1", code=RejectCode.BAD_PREV)
    if not isinstance(deps, list) or len(deps) > limits.OP_DEPS_MAX:
        raise MalformedOpError(f"deps must be a list of at most {limits.OP_DEPS_MAX} ids")
    if not all(_is_hash(dep) for dep in deps):
        raise MalformedOpError("deps must be 32-byte op ids")
    if any(deps[i] >= deps[i + 1] for i in range(len(deps) - 1)):
        raise MalformedOpError("deps must be strictly ascending (sorted, no duplicates)")
    if prev and prev in deps:
        raise MalformedOpError("prev must not be repeated in deps")
    if not _is_int(basis) or not 0 <= basis <= limits.SEQ_MAX:  # type: ignore[operator]
        raise MalformedOpError("basis must be a non-negative int")


def _check_amount(value: object) -> None:
    if not _is_int(value) or not 1 <= value <= limits.AMOUNT_MAX:  # type: ignore[operator]
        raise MalformedOpError("amount must be a positive int", code=RejectCode.BAD_AMOUNT)


def check_handle(value: object) -> str:
    if (
        not isinstance(value, str)
        or not limits.HANDLE_LENGTH_MIN <= len(value) <= limits.HANDLE_LENGTH_MAX
        or not _HANDLE_RE.fullmatch(value)
    ):
        raise MalformedOpError(
            f"handle must be {limits.HANDLE_LENGTH_MIN}-{limits.HANDLE_LENGTH_MAX} chars of "
            "[a-z0-9_-]",
            code=RejectCode.BAD_HANDLE,
        )
    return value


def _check_text(value: object, size_max: int, name: str) -> None:
    if not isinstance(value, str) or len(value.encode()) > size_max:
        raise MalformedOpError(f"{name} must be a str of at most {size_max} bytes")


def _check_kind_fields(kind: Kind, fields: dict[str, Any]) -> None:
    if kind in (Kind.GRANT, Kind.TRANSFER):
        if not isinstance(fields["to"], bytes):
            raise MalformedOpError("to must be bytes")
        crypto.check_public_key(fields["to"])
        _check_amount(fields["amount"])
    elif kind is Kind.BURN:
        _check_amount(fields["amount"])
        _check_text(fields["target"], limits.BURN_TARGET_SIZE_BYTES_MAX, "target")
        if not fields["target"]:
            raise MalformedOpError("burn target must not be empty")
    elif kind in (Kind.HANDLE_CLAIM, Kind.HANDLE_REVOKE):
        check_handle(fields["handle"])
    elif kind is Kind.HANDLE_ENDORSE:
        if not _is_hash(fields["claim"]):
            raise MalformedOpError("claim must be a 32-byte op id")
    else:
        _check_text(fields["reason"], limits.REASON_SIZE_BYTES_MAX, "reason")


def check_envelopes(envelopes: list[bytes], network_id: bytes) -> list[Op | bytes]:
    """Decode and verify a batch (the costly, GIL-releasing part of the pipeline, for worker
    threads): each item is the verified Op, or the envelope itself when it fails, so that the
    caller's ledger gives the typed rejection."""
    checked: list[Op | bytes] = []
    for envelope in envelopes:
        try:
            op = decode_op(envelope)
            verify_op(op, network_id)
        except RemoteProtocolError:
            checked.append(envelope)
        else:
            checked.append(op)
    return checked


def verify_op(op: Op, network_id: bytes) -> None:
    """Raise BadSignatureError unless the author signed this body for this network."""
    if len(op.signature) != limits.SIGNATURE_SIZE_BYTES:
        raise BadSignatureError("signature or key has the wrong length")
    # signature || signed message in one join: the form libsodium verifies.
    signed = b"".join((op.signature, OP_DOMAIN_TAG, network_id, _KIND_BYTES[op.kind], op.body))
    crypto.verify_signed(op.author, signed)
