"""`swarmd version`: the installed package's version (and what it speaks), from its metadata."""

from __future__ import annotations

import argparse
import platform

from swarmd.protocol.reconcile import PROTOCOL_VERSION
from swarmd.storage.schema import SCHEMA_VERSION

from ..runtime.driver import version
from .common import EXIT_OK, Add, Output


def version_text() -> str:
    """What `swarmd --version` prints."""
    return f"swarmd {version()}"


def cmd_version(args: argparse.Namespace, out: Output) -> int:
    value = {
        "version": version(),
        "sync_protocol_version": PROTOCOL_VERSION,
        "storage_schema_version": SCHEMA_VERSION,
        "python": platform.python_version(),
    }
    out.result(value, version_text())
    return EXIT_OK


def register(add: Add) -> None:
    add("version", cmd_version, "print the installed swarmd version")
