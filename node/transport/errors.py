"""Typed errors of the transports; each has a stable `code` (docs/parts/transport.md lists them).

Errors a peer causes (a bad signaling message, a refused offer, a silent peer) are
`RemoteProtocolError`s; errors our own configuration or caller causes (no ICE candidates, an
oversized frame) are `LocalProtocolError`s. Signaling errors carry the HTTP status the
`/v1/signal` and `/v1/ws` endpoints answer with, so the refusing side and the refused side
agree on the code.
"""

from __future__ import annotations

from swarmd.protocol.errors import BadSignatureError, LocalProtocolError, RemoteProtocolError


class SignalingError(RemoteProtocolError):
    """A signaling message (offer, answer, hello) that we refuse."""

    code = "signal_invalid"
    http_status = 400


class SignalMalformedError(SignalingError):
    """Not a well-formed signed envelope, or a field is missing or of the wrong type."""

    code = "signal_malformed"


class SignalBadSignatureError(SignalingError, BadSignatureError):
    code = "bad_signature"
    http_status = 401


class SignalWrongNetworkError(SignalingError):
    code = "wrong_network"
    http_status = 403


class SignalWrongPeerError(SignalingError):
    """The message names another node than the one we expected (or is not meant for us)."""

    code = "wrong_peer"
    http_status = 403


class SignalExpiredError(SignalingError):
    """The expiry timestamp is in the past, or further in the future than allowed."""

    code = "signal_expired"


class SignalReplayedError(SignalingError):
    """The nonce was seen before: a replayed message."""

    code = "signal_replayed"
    http_status = 409


class SignalBindingError(SignalingError):
    """The signed message does not match the session it belongs to: a DTLS fingerprint that
    differs from the SDP, an answer that does not echo our nonce or digest."""

    code = "signal_binding_mismatch"


class SignalBusyError(SignalingError):
    """We cannot take this offer now (peer limit, replay cache full, pending limit)."""

    code = "signal_busy"
    http_status = 503


class SignalGlareError(SignalingError):
    """Both nodes dialed each other at once; the node with the lower id keeps its own dial."""

    code = "glare"
    http_status = 409


class SignalingRejectedError(RemoteProtocolError):
    """The peer refused our offer or hello; `code` is the code the peer answered with."""

    code = "signal_rejected"

    def __init__(self, message: str, *, code: str, http_status: int) -> None:
        super().__init__(message, code=code)
        self.http_status = http_status


class PeerUnreachableError(RemoteProtocolError):
    """The peer's HTTP endpoint could not be reached or answered garbage."""

    code = "peer_unreachable"


class ConnectTimeoutError(RemoteProtocolError):
    """Signaling succeeded but the channel did not open in time (ICE or DTLS failed)."""

    code = "connect_timeout"


class IceGatheringError(LocalProtocolError):
    """ICE gathering produced no candidate at all; aiortc itself reports nothing, so without
    this check a misconfigured TURN server looks like a silent connect timeout."""

    code = "no_ice_candidates"


class TransportConfigError(LocalProtocolError):
    """An invalid transport setting (an ICE server URL with an unknown scheme, ...)."""

    code = "invalid_transport_config"


class FrameTooLargeError(LocalProtocolError):
    """A frame above the transport's frame size limit was handed to `send`."""

    code = "frame_too_large"


class TransportNotStartedError(LocalProtocolError):
    code = "transport_not_started"


# --- netguard: admission refusals (issue 16) ---------------------------------------------------


class SignalBannedError(SignalingError):
    """The dialing node id is banned here for misbehaviour (until its ban ends)."""

    code = "peer_banned"
    http_status = 403


class SignalNotAllowedError(SignalingError):
    """This node is a sentry and the dialing node id is not among its configured peers."""

    code = "peer_not_allowed"
    http_status = 403
