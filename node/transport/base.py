"""The transport interface and what both real transports share: config, peer table, reconnect.

A transport carries opaque frames (at most `limits.FRAME_SIZE_BYTES_MAX` bytes) between nodes
named by their Ed25519 public key, over reliable ordered channels. The node shell owns the
aiohttp application and mounts `transport.routes` on it; the transport reports through three
callbacks (`TransportEvents`), which must not block.
"""

from __future__ import annotations

import abc
import asyncio
import random
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import structlog
from aiohttp import web

from swarmd.protocol import limits
from swarmd.protocol.crypto import KeyPair, account_id_text
from swarmd.protocol.errors import LocalProtocolError, RemoteProtocolError

from .errors import (
    FrameTooLargeError,
    SignalBusyError,
    SignalGlareError,
    SignalingRejectedError,
    TransportNotStartedError,
)
from .link import PeerInfo, PeerLink
from .signaling import NONCE_SIZE_BYTES, ReplayCache

log = structlog.get_logger("swarmd.transport")

#: How long `stop` waits for links to close. Closing a relayed connection deletes the TURN
#: allocation, which aioice retries for ~63 s when the relay is gone; we do not hold shutdown
#: for that (the close goes on in the background and the relay expires the allocation).
STOP_CLOSE_WAIT_S = 3.0

#: Disconnect reasons after which we do not re-dial: we closed it, or a newer link replaced it.
LOCAL_CLOSE_REASONS = frozenset({"transport_stopped", "local_disconnect", "replaced"})


class TransportEvents(Protocol):
    """What a transport reports. Called on the event loop; must not block."""

    def on_peer_connected(self, peer_id: bytes, info: PeerInfo) -> None: ...

    def on_frame(self, peer_id: bytes, frame: bytes) -> None: ...

    def on_peer_disconnected(self, peer_id: bytes, reason: str) -> None: ...


@dataclass(frozen=True)
class IceServerConfig:
    """One STUN/TURN server, as RTCIceServer takes it (e.g. "turn:relay.example:3478")."""

    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = None


@dataclass(frozen=True)
class TransportConfig:
    """Transport settings; defaults come from protocol/limits.py or are explained here."""

    #: Static STUN/TURN servers. Empty by default: swarmd never contacts a public STUN server.
    ice_servers: tuple[IceServerConfig, ...] = ()
    #: coturn `use-auth-secret`: with a secret and TURN URLs, each connection derives fresh
    #: REST credentials (username "<expiry>:<node id>", HMAC-SHA1 password).
    turn_secret: str | None = None
    turn_urls: tuple[str, ...] = ()
    #: Validity of derived TURN credentials; an allocation outliving it is refreshed by coturn
    #: only while the credentials are valid, so one day covers long-lived peer links.
    turn_credential_ttl_s: int = 24 * 3600
    #: "relay" gathers only TURN relay candidates (traffic always goes through the relay).
    ice_transport_policy: Literal["all", "relay"] = "all"
    #: Addresses for ICE host candidates; None = aioice's default (every interface except
    #: loopback). Tests and single-host devnets use ("127.0.0.1",).
    ice_host_addresses: tuple[str, ...] | None = None
    #: Our base HTTP URL, advertised to peers in signaling so they can dial us back.
    public_url: str | None = None
    heartbeat_interval_s: float = limits.HEARTBEAT_INTERVAL_S
    heartbeat_dead_after_s: float = limits.HEARTBEAT_DEAD_AFTER_S
    #: Whole connect (signaling + ICE + DTLS + SCTP); loopback takes ~0.1 s, relays ~1 s.
    connect_timeout_s: float = 10.0
    #: Reconnect backoff for peers we dialed: initial delay, doubled up to the max, with jitter.
    reconnect_backoff_initial_s: float = 0.25
    reconnect_backoff_max_s: float = 10.0
    #: After this many failed attempts (~4 min at the max delay) we stop; the node may re-dial.
    reconnect_attempts_max: int = 30
    peers_max: int = limits.PEERS_MAX

    def __post_init__(self) -> None:
        if self.ice_transport_policy not in ("all", "relay"):
            raise LocalProtocolError(f"ice_transport_policy {self.ice_transport_policy!r}")
        if self.heartbeat_interval_s * 3 > self.heartbeat_dead_after_s:
            raise LocalProtocolError("heartbeat_dead_after_s must be >= 3 heartbeat intervals")


class SourceSlots:
    """Handshake slots per source address: at most `per_source_max` handshakes in progress
    from one address, so idle or slow sockets from one source cannot take every slot."""

    def __init__(self, per_source_max: int = limits.HANDSHAKES_PER_SOURCE_MAX) -> None:
        self.per_source_max = per_source_max
        self._taken: dict[str, int] = {}

    def take(self, source: str) -> bool:
        """Take a slot for `source`; False (nothing taken) when its slots are all in use."""
        taken = self._taken.get(source, 0)
        if taken >= self.per_source_max:
            return False
        self._taken[source] = taken + 1
        return True

    def release(self, source: str) -> None:
        taken = self._taken.get(source, 0) - 1
        if taken > 0:
            self._taken[source] = taken
        else:
            self._taken.pop(source, None)

    def in_use(self, source: str) -> int:
        return self._taken.get(source, 0)


class Transport(abc.ABC):
    """Carries frames between nodes; see the module docstring."""

    name: str

    @abc.abstractmethod
    async def start(self) -> None: ...

    @abc.abstractmethod
    async def stop(self) -> None: ...

    @abc.abstractmethod
    async def connect(self, peer_id: bytes | None, url: str) -> bytes:
        """Dial the node at base URL `url`; returns its verified node id. Raises a typed error."""

    @abc.abstractmethod
    def send(self, peer_id: bytes, frame: bytes, control: bool = False) -> bool:
        """Queue `frame`; False when the peer is unknown or its bounded send queue is full."""

    @abc.abstractmethod
    def peers(self) -> dict[bytes, PeerInfo]: ...

    @property
    @abc.abstractmethod
    def routes(self) -> Sequence[web.RouteDef]:
        """aiohttp routes the node must mount on its HTTP server."""


class LinkTransport(Transport):
    """Peer table, callbacks, glare handling and reconnection shared by the real transports."""

    def __init__(
        self,
        keypair: KeyPair,
        network_id: bytes,
        config: TransportConfig,
        callbacks: TransportEvents,
    ) -> None:
        self.keypair = keypair
        self.network_id = network_id
        self.config = config
        self.callbacks = callbacks
        self.own_id = keypair.public_key
        self.replay_cache = ReplayCache()
        self._links: dict[bytes, PeerLink] = {}
        self._dial_urls: dict[bytes, str] = {}
        self._dialing: set[bytes] = set()
        self._reconnect_tasks: dict[bytes, asyncio.Task[None]] = {}
        self._peers_changed: asyncio.Condition | None = None
        self._random = random.Random()
        self._started = False
        self._stopping = False
        self._log = log.bind(node=account_id_text(self.own_id), transport=self.name)
        #: Set by the node: raises a SignalingError when a node id may not connect now (banned,
        #: not listed on a sentry, no free slot of its kind); checked on every inbound handshake.
        self.admission: Callable[[bytes], None] | None = None
        #: Inbound handshakes in progress per source address (limits.HANDSHAKES_PER_SOURCE_MAX).
        self.handshake_slots = SourceSlots()
        #: The source address of each inbound link (limits.INBOUND_LINKS_PER_SOURCE_MAX).
        self._link_sources: dict[bytes, str] = {}

    # --- the public interface ------------------------------------------------------------

    async def start(self) -> None:
        self._peers_changed = asyncio.Condition()
        self._started = True
        self._stopping = False

    async def stop(self) -> None:
        self._stopping = True
        for task in list(self._reconnect_tasks.values()):
            task.cancel()
        self._reconnect_tasks.clear()
        links = list(self._links.values())
        for link in links:
            link.close("transport_stopped")
        await wait_bounded([link.wait_closed() for link in links], STOP_CLOSE_WAIT_S)
        self._started = False

    async def connect(self, peer_id: bytes | None, url: str) -> bytes:
        self._require_started()
        if peer_id is not None and peer_id in self._links:
            self._dial_urls[peer_id] = url
            return peer_id
        if peer_id is not None:
            self._dialing.add(peer_id)
        try:
            connected_id = await self._dial(peer_id, url)
        except SignalingRejectedError as exc:
            if exc.code != SignalGlareError.code or peer_id is None:
                raise
            # The peer dials us at the same time and has the lower id: its dial wins.
            await self.wait_for_peer(peer_id, self.config.connect_timeout_s)
            connected_id = peer_id
        finally:
            if peer_id is not None:
                self._dialing.discard(peer_id)
        self._dial_urls[connected_id] = url
        return connected_id

    async def disconnect(self, peer_id: bytes) -> None:
        """Close the link to `peer_id` and stop re-dialing it."""
        self._dial_urls.pop(peer_id, None)
        task = self._reconnect_tasks.pop(peer_id, None)
        if task is not None:
            task.cancel()
        link = self._links.get(peer_id)
        if link is not None:
            link.close("local_disconnect")
            await link.wait_closed()

    def send(self, peer_id: bytes, frame: bytes, control: bool = False) -> bool:
        if len(frame) > limits.FRAME_SIZE_BYTES_MAX:
            raise FrameTooLargeError(
                f"frame of {len(frame)} bytes exceeds {limits.FRAME_SIZE_BYTES_MAX}"
            )
        link = self._links.get(peer_id)
        return link is not None and link.enqueue(frame, control)

    def peers(self) -> dict[bytes, PeerInfo]:
        return {peer_id: link.info() for peer_id, link in self._links.items()}

    async def wait_for_peer(self, peer_id: bytes, timeout_s: float) -> None:
        """Wait until `peer_id` is connected (raises TimeoutError after `timeout_s`)."""
        await self.wait_for_peers(lambda peers: peer_id in peers, timeout_s)

    async def wait_for_peers(
        self, predicate: Callable[[dict[bytes, PeerInfo]], bool], timeout_s: float
    ) -> None:
        """Wait until `predicate(self.peers())` holds; re-checked whenever a peer connects,
        disconnects or gets a new RTT. Raises TimeoutError after `timeout_s`."""
        condition = self._require_started()
        async with condition:
            await asyncio.wait_for(condition.wait_for(lambda: predicate(self.peers())), timeout_s)

    # --- for the concrete transports -------------------------------------------------------

    @abc.abstractmethod
    async def _dial(self, peer_id: bytes | None, url: str) -> bytes:
        """Establish a link (registered through `_register`); return the peer's id."""

    def _new_nonce(self) -> bytes:
        return secrets.token_bytes(NONCE_SIZE_BYTES)

    def _require_started(self) -> asyncio.Condition:
        if not self._started or self._stopping or self._peers_changed is None:
            raise TransportNotStartedError(f"{self.name} transport is not running")
        return self._peers_changed

    def _check_can_accept(self, remote_id: bytes, source: str | None = None) -> None:
        """Refuse an inbound offer/hello on glare, when the node does not admit `remote_id`,
        when `source` has its share of inbound links already, or when the table is full."""
        if remote_id in self._dialing and self.own_id < remote_id:
            raise SignalGlareError("we are dialing this peer and our id is lower: our dial wins")
        if self.admission is not None:
            self.admission(remote_id)
        if source is not None and remote_id not in self._links:
            from_source = sum(1 for s in self._link_sources.values() if s == source)
            if from_source >= limits.INBOUND_LINKS_PER_SOURCE_MAX:
                raise SignalBusyError(
                    f"{limits.INBOUND_LINKS_PER_SOURCE_MAX} inbound links from this address"
                )
        if remote_id not in self._links and len(self._links) >= self.config.peers_max:
            raise SignalBusyError(f"peer limit of {self.config.peers_max} reached")

    def _register(self, link: PeerLink, source: str | None = None) -> None:
        """Make `link` the peer's link (replacing an older one) and report the connection;
        `source` is the remote address of an inbound link."""
        previous = self._links.get(link.peer_id)
        if previous is not None:
            previous.close("replaced")
        self._links[link.peer_id] = link
        if source is not None:
            self._link_sources[link.peer_id] = source
        else:
            self._link_sources.pop(link.peer_id, None)
        link.start()
        self._log.info("peer_connected", peer=account_id_text(link.peer_id), dir=link.direction)
        self._notify_peers_changed()
        try:
            self.callbacks.on_peer_connected(link.peer_id, link.info())
        except Exception:
            self._log.exception("on_peer_connected_failed")

    def _on_link_closed(self, link: PeerLink, reason: str) -> None:
        if self._links.get(link.peer_id) is link:
            del self._links[link.peer_id]
            self._link_sources.pop(link.peer_id, None)
        self._log.info("peer_disconnected", peer=account_id_text(link.peer_id), reason=reason)
        self._notify_peers_changed()
        try:
            self.callbacks.on_peer_disconnected(link.peer_id, reason)
        except Exception:
            self._log.exception("on_peer_disconnected_failed")
        if (
            reason not in LOCAL_CLOSE_REASONS
            and not self._stopping
            and link.peer_id in self._dial_urls
            and link.peer_id not in self._reconnect_tasks
        ):
            task = asyncio.create_task(self._reconnect(link.peer_id))
            self._reconnect_tasks[link.peer_id] = task

    def _on_frame(self, peer_id: bytes, frame: bytes) -> None:
        self.callbacks.on_frame(peer_id, frame)

    def _notify_peers_changed(self) -> None:
        condition = self._peers_changed
        if condition is None:
            return

        async def notify() -> None:
            async with condition:
                condition.notify_all()

        asyncio.get_running_loop().create_task(notify())

    async def _reconnect(self, peer_id: bytes) -> None:
        """Re-dial a peer we dialed before, with bounded exponential backoff and jitter."""
        delay_s = self.config.reconnect_backoff_initial_s
        try:
            for attempt in range(1, self.config.reconnect_attempts_max + 1):
                await asyncio.sleep(delay_s * self._random.uniform(0.5, 1.0))
                url = self._dial_urls.get(peer_id)
                if url is None or self._stopping or peer_id in self._links:
                    return
                try:
                    await self.connect(peer_id, url)
                    return
                except (RemoteProtocolError, LocalProtocolError, OSError, TimeoutError) as exc:
                    # Debug: the node's dialer logs its own failed dials of configured peers,
                    # one line each; a second line per round would only repeat it.
                    code = getattr(exc, "code", type(exc).__name__)
                    self._log.debug("reconnect_failed", attempt=attempt, error=code)
                delay_s = min(delay_s * 2, self.config.reconnect_backoff_max_s)
            # Only this transport-level retry stops; the dialer goes on (not a give-up).
            self._log.debug("reconnect_attempts_exhausted", peer=account_id_text(peer_id))
        finally:
            if self._reconnect_tasks.get(peer_id) is asyncio.current_task():
                del self._reconnect_tasks[peer_id]


async def wait_bounded(awaitables: Sequence[Awaitable[object]], timeout_s: float) -> None:
    """Await all of `awaitables` for at most `timeout_s`; the rest go on in the background."""
    if not awaitables:
        return
    tasks = [asyncio.ensure_future(awaitable) for awaitable in awaitables]
    await asyncio.wait(tasks, timeout=timeout_s)
