"""The runtime's own errors (typed, with a stable code)."""

from __future__ import annotations

from swarmd.protocol.errors import LocalProtocolError


class DaemonError(LocalProtocolError):
    code = "daemon_error"


class KeyFileError(LocalProtocolError):
    code = "bad_key_file"


class ListenError(LocalProtocolError):
    """The API or admin address cannot be listened on (in use, not ours, not permitted)."""

    code = "listen_failed"
