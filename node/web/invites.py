"""One-time invite codes for onboarding (`swarmd council invite`, `[onboarding]`).

A council operator issues codes with `swarmd council invite --home DIR [--count N]`: each is 16
random bytes, shown once (base32); the node keeps only their SHA-256 hashes, one a line, in
`[onboarding].invite_codes_file`. A signup whose grant the ledger took appends the code's hash
to the same path plus ".used" (a refused grant leaves the code unspent); a code is valid while
its hash is in the first file and not in the second.
Both files are only ever appended to (short lines, O_APPEND), so the CLI adding codes and the
running node using them never overwrite each other.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from pathlib import Path

#: Random bytes per invite code (128 bits: not guessable, short enough to paste).
INVITE_CODE_BYTES = 16
#: Codes one `swarmd council invite` issues at most.
INVITES_PER_COMMAND_MAX = 10_000
#: Largest invite file read (64-character hash lines: about a million codes).
INVITE_FILE_SIZE_BYTES_MAX = 64 * 1024 * 1024


class InviteError(ValueError):
    """An invite code that is malformed, unknown or used."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


def used_path(path: Path) -> Path:
    return path.with_name(path.name + ".used")


def code_hash(code: str) -> str:
    return hashlib.sha256(code.strip().upper().encode()).hexdigest()


def new_codes(count: int) -> list[str]:
    return [
        base64.b32encode(secrets.token_bytes(INVITE_CODE_BYTES)).decode().rstrip("=")
        for _ in range(count)
    ]


def _append(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(descriptor, "".join(f"{line}\n" for line in lines).encode())
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _hashes(path: Path) -> set[str]:
    try:
        with path.open("rb") as file:
            data = file.read(INVITE_FILE_SIZE_BYTES_MAX + 1)
    except FileNotFoundError:
        return set()
    if len(data) > INVITE_FILE_SIZE_BYTES_MAX:
        raise InviteError(
            f"{path} is larger than {INVITE_FILE_SIZE_BYTES_MAX} bytes", "invites_unreadable"
        )
    return {line.strip() for line in data.decode(errors="replace").splitlines() if line.strip()}


def issue(path: Path, count: int) -> list[str]:
    """`count` new codes, their hashes appended to `path`."""
    codes = new_codes(count)
    _append(path, [code_hash(code) for code in codes])
    return codes


def check(path: Path, code: str) -> str:
    """The hash of `code` if it may be used now; raises InviteError (`bad_invite`,
    `invite_used`) when it cannot. Nothing is written: `mark_used` spends it."""
    if not code or len(code) > 64:
        raise InviteError("not an invite code", "bad_invite")
    digest = code_hash(code)
    if digest not in _hashes(path):
        raise InviteError("this invite code is unknown to this node", "bad_invite")
    if digest in _hashes(used_path(path)):
        raise InviteError("this invite code was used already", "invite_used")
    return digest


def mark_used(path: Path, digest: str) -> None:
    """Spend the code whose hash `check` returned (durable when this returns)."""
    _append(used_path(path), [digest])


def unused_count(path: Path) -> int:
    return len(_hashes(path) - _hashes(used_path(path)))
