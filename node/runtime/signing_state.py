"""The validator's last sign state on disk (`PersistConsensusState`)."""

from __future__ import annotations

import os
from pathlib import Path

from swarmd.protocol import consensus

from .errors import DaemonError

#: The signing state file is named after the database file with this suffix, so that it
#: moves with the node's data directory.
SIGNING_STATE_FILE_SUFFIX = ".signing-state"


class SigningStateFile:
    """The validator's last sign state (`PersistConsensusState`), one file replaced atomically:
    written to a temporary file, fsynced, renamed over the old one and the directory fsynced,
    so after a kill -9 it holds either the previous state or the new one, never a mix. It is a
    file and not a database row because it may hold whole proposed values (up to
    consensus.SIGNING_STATE_SIZE_BYTES_MAX), far beyond what the store keeps in meta."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def beside(cls, data_file: Path) -> SigningStateFile:
        return cls(data_file.with_name(data_file.name + SIGNING_STATE_FILE_SUFFIX))

    def load(self) -> bytes | None:
        try:
            with self.path.open("rb") as file:
                data = file.read(consensus.SIGNING_STATE_SIZE_BYTES_MAX + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise DaemonError(f"cannot read the signing state {self.path}: {exc}") from None
        if len(data) > consensus.SIGNING_STATE_SIZE_BYTES_MAX:
            raise consensus.SigningStateError(f"{self.path} is larger than a signing state")
        return data

    def save(self, data: bytes) -> None:
        """Blocking (run it in a thread); durable when it returns."""
        temporary = self.path.with_name(self.path.name + ".tmp")
        with temporary.open("wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, self.path)
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
