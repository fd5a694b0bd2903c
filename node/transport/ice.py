"""The one place where swarmd adjusts aioice/aiortc ICE behaviour.

- Host addresses: aioice gathers host candidates on every interface except loopback (its
  module function `aioice.ice.get_host_addresses`). `configure_ice_host_addresses` replaces
  that function, process-wide, with the configured list (tests and devnets: ["127.0.0.1"]).
- mDNS: a remote `*.local` candidate would make aioice multicast a query on the LAN; swarmd
  refuses to resolve them (such candidates are ignored), since traffic must stay where the
  configuration says.
- UDP receive buffer: aioice asks for 256 KiB; a burst of 64 KiB frames overflows that on
  loopback, and each lost packet stalls the SCTP stream for its 1 s retransmission timeout.
  We ask for `UDP_RECEIVE_BUFFER_SIZE_BYTES` (the kernel caps it at net.core.rmem_max).
- RTCConfiguration is always built here with an explicit server list (possibly empty): with
  `iceServers=None` aiortc silently adds a public Google STUN server.

aiortc has no public accessor for the selected candidate pair; `selected_candidate_pair`
reads it (read-only) from aioice's connection and returns None if that ever changes.
"""

from __future__ import annotations

import time
from typing import Any

import aioice.ice
import aioice.turn
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection
from aiortc.rtcconfiguration import RTCIceTransportPolicy

from swarmd.protocol.crypto import KeyPair

from .base import TransportConfig
from .errors import IceGatheringError, TransportConfigError
from .signaling import count_ice_candidates, turn_rest_credentials

#: Requested SO_RCVBUF of every ICE/TURN UDP socket (see the module docstring).
UDP_RECEIVE_BUFFER_SIZE_BYTES = 4 * 1024 * 1024

_ICE_URL_SCHEMES = ("stun:", "turn:", "turns:")


class _RefusingMdnsProtocol:
    """Stands in for aioice's mDNS responder: resolves nothing, sends nothing."""

    async def resolve(self, hostname: str, timeout: float = 1.0) -> str | None:
        return None

    async def close(self) -> None:
        return None


async def _refuse_mdns(subscriber: object) -> _RefusingMdnsProtocol:
    return _RefusingMdnsProtocol()


def configure_ice_host_addresses(addresses: list[str] | None) -> None:
    """Pin ICE host candidates to `addresses` (None keeps aioice's interface scan).

    Also refuses mDNS resolution and raises the UDP receive buffer. Process-wide: every
    transport in the process shares aioice, so every transport must pass the same list.
    """
    aioice.turn.UDP_SOCKET_BUFFER_SIZE = UDP_RECEIVE_BUFFER_SIZE_BYTES
    # A stand-in with the two methods aioice calls (resolve, close), not an MDnsProtocol.
    aioice.ice.get_or_create_mdns_protocol = _refuse_mdns  # type: ignore[assignment]
    if addresses is None:
        return
    pinned = list(addresses)

    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [
            address
            for address in pinned
            if (use_ipv4 and ":" not in address) or (use_ipv6 and ":" in address)
        ]

    aioice.ice.get_host_addresses = get_host_addresses


def turn_server_urls(config: TransportConfig) -> list[str]:
    urls = [url for server in config.ice_servers for url in server.urls if url.startswith("turn")]
    return urls + list(config.turn_urls)


def build_rtc_configuration(config: TransportConfig, keypair: KeyPair) -> RTCConfiguration:
    """RTCConfiguration with an explicit (possibly empty) server list and the ICE policy."""
    servers: list[RTCIceServer] = []
    for server in config.ice_servers:
        _check_urls(server.urls)
        servers.append(
            RTCIceServer(
                urls=list(server.urls), username=server.username, credential=server.credential
            )
        )
    if config.turn_urls:
        _check_urls(config.turn_urls)
        if config.turn_secret is None:
            raise TransportConfigError("turn_urls needs turn_secret (use-auth-secret scheme)")
        username, credential = turn_rest_credentials(
            config.turn_secret, keypair.account_id, time.time(), config.turn_credential_ttl_s
        )
        servers.append(
            RTCIceServer(urls=list(config.turn_urls), username=username, credential=credential)
        )
    policy = (
        RTCIceTransportPolicy.RELAY
        if config.ice_transport_policy == "relay"
        else RTCIceTransportPolicy.ALL
    )
    return RTCConfiguration(iceServers=servers, iceTransportPolicy=policy)


def check_gathered_candidates(sdp: str, config: TransportConfig) -> None:
    """Raise IceGatheringError naming the likely cause when gathering produced nothing."""
    if count_ice_candidates(sdp) > 0:
        return
    turn_urls = turn_server_urls(config)
    if config.ice_transport_policy == "relay":
        if turn_urls:
            cause = (
                f"relay-only with TURN server {', '.join(turn_urls)} — check the TURN "
                "credentials/secret and that the server is reachable"
            )
        else:
            cause = "relay-only policy but no TURN server is configured"
    else:
        cause = (
            f"no usable host address (ice_host_addresses={config.ice_host_addresses!r}) "
            "and no STUN/TURN candidate"
        )
    raise IceGatheringError(f"no ICE candidates gathered: {cause}")


def selected_candidate_pair(pc: RTCPeerConnection) -> str | None:
    """ "<local type>/<remote type>" of the nominated ICE pair, or None if unknown."""
    if pc.sctp is None:
        return None
    try:
        ice_transport: Any = pc.sctp.transport.transport
        nominated = ice_transport._connection._nominated
        pair = nominated.get(1)
        if pair is None:
            return None
        return f"{pair.local_candidate.type}/{pair.remote_candidate.type}"
    except AttributeError:
        return None


def _check_urls(urls: tuple[str, ...]) -> None:
    for url in urls:
        if not url.startswith(_ICE_URL_SCHEMES):
            raise TransportConfigError(f"ICE server URL {url!r} must start with stun:/turn:")
