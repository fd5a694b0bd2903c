"""The validator's last sign state on disk (`PersistConsensusState`) and its kept precommits'
records (`PersistPrecommit`)."""

from __future__ import annotations

import os
from pathlib import Path

from swarmd.protocol import consensus
from swarmd.storage.failpoints import failpoint

from .errors import DaemonError

#: The signing state file is named after the database file with this suffix, so that it
#: moves with the node's data directory.
SIGNING_STATE_FILE_SUFFIX = ".signing-state"
#: The kept precommits' records live in a directory named after the state file with this
#: suffix, one file per record named by the hex of its id.
PRECOMMITS_DIR_SUFFIX = ".precommits"
_TEMPORARY_SUFFIX = ".tmp"


class SigningStateFile:
    """The validator's last sign state (`PersistConsensusState`), one file replaced atomically:
    written to a temporary file, fsynced, renamed over the old one and the directory fsynced,
    so after a kill -9 it holds either the previous state or the new one, never a mix. It is a
    file and not a database row because it may hold whole proposed values (up to
    consensus.SIGNING_STATE_SIZE_BYTES_MAX), far beyond what the store keeps in meta.

    The state is compact: the kept precommits it names (by id) are records of their own in
    `precommits_dir`, each written once the same way before the first state naming it, and
    deleted once a durable state no longer names it (`prune_precommits`). A state of the
    format before (the kept precommits inside) is still read; its precommits become records
    the first time the core writes a state again."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.precommits_dir = path.with_name(path.name + PRECOMMITS_DIR_SUFFIX)

    @classmethod
    def beside(cls, data_file: Path) -> SigningStateFile:
        return cls(data_file.with_name(data_file.name + SIGNING_STATE_FILE_SUFFIX))

    def load(self) -> bytes | None:
        return _read(self.path, consensus.SIGNING_STATE_SIZE_BYTES_MAX, "signing state")

    def load_precommits(self, state: bytes | None) -> list[bytes]:
        """The records of the kept precommits `state` names (none for a state of an older
        format); a missing one is left out: the core refuses a state without all of them."""
        records = []
        for precommit_id in consensus.signing_state_precommit_ids(state or b""):
            data = _read(
                self.precommits_dir / precommit_id.hex(),
                consensus.KEPT_PRECOMMIT_SIZE_BYTES_MAX,
                "kept precommit record",
            )
            if data is not None:
                records.append(data)
        return records

    def save(self, data: bytes) -> None:
        """Blocking (run it in a thread); durable when it returns."""
        _replace(self.path, data)
        failpoint("signing_state.saved")

    def save_precommit(self, precommit_id: bytes, data: bytes) -> None:
        """Blocking (run it in a thread); the record is durable when it returns."""
        if not self.precommits_dir.is_dir():
            self.precommits_dir.mkdir(exist_ok=True)
            _fsync_directory(self.precommits_dir.parent)
        _replace(self.precommits_dir / precommit_id.hex(), data)
        failpoint("signing_state.precommit_saved")

    def prune_precommits(self, keep: set[bytes]) -> int:
        """Blocking: delete the records whose id is not in `keep` (and leftover temporary
        files); how many. Not fsynced: a record a crash brings back is one no durable state
        names, which the core ignores."""
        names = {precommit_id.hex() for precommit_id in keep}
        try:
            entries = sorted(os.listdir(self.precommits_dir))
        except FileNotFoundError:
            return 0
        removed = 0
        for name in entries:
            if name not in names:
                (self.precommits_dir / name).unlink(missing_ok=True)
                removed += 1
        return removed


def _read(path: Path, size_max: int, what: str) -> bytes | None:
    try:
        with path.open("rb") as file:
            data = file.read(size_max + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise DaemonError(f"cannot read the {what} {path}: {exc}") from None
    if len(data) > size_max:
        raise consensus.SigningStateError(f"{path} is larger than a {what}")
    return data


def _replace(path: Path, data: bytes) -> None:
    """Write `path` atomically and durably: temporary file, fsync, rename, directory fsync."""
    temporary = path.with_name(path.name + _TEMPORARY_SUFFIX)
    with temporary.open("wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
    _fsync_directory(path.parent)


def _fsync_directory(path: Path) -> None:
    directory = os.open(path, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
