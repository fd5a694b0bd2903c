"""Transports that carry swarmd frames between nodes.

`WebRtcTransport` (aiortc data channels, signed HTTP signaling) and `WebSocketTransport`
(aiohttp) implement `Transport`; both report through `TransportEvents`. aiortc and aiohttp
stay behind this package: nothing else in swarmd imports them for peer traffic.
"""

from .base import IceServerConfig, LinkTransport, Transport, TransportConfig, TransportEvents
from .errors import (
    ConnectTimeoutError,
    FrameTooLargeError,
    IceGatheringError,
    PeerUnreachableError,
    SignalingError,
    SignalingRejectedError,
)
from .ice import configure_ice_host_addresses
from .link import PeerInfo
from .webrtc import WebRtcTransport
from .websocket import WebSocketTransport

__all__ = [
    "ConnectTimeoutError",
    "FrameTooLargeError",
    "IceGatheringError",
    "IceServerConfig",
    "LinkTransport",
    "PeerInfo",
    "PeerUnreachableError",
    "SignalingError",
    "SignalingRejectedError",
    "Transport",
    "TransportConfig",
    "TransportEvents",
    "WebRtcTransport",
    "WebSocketTransport",
    "configure_ice_host_addresses",
]
