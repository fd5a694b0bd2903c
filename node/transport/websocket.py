"""WebSocket transport (aiohttp) at GET /v1/ws, for peers that can reach each other directly.

Handshake, three signed messages in binary WebSocket frames before any link traffic:
  client -> server  hello    (client id, `to` = expected server id or None, nonce, expiry)
  server -> client  welcome  (server id, echoes the hello's nonce and digest, own nonce)
  client -> server  confirm  (echoes the welcome's nonce and digest)
Each side thus signs a fresh nonce chosen by the other, so both know which node holds the other
end at handshake time. Unlike WebRTC (DTLS bound to the signed fingerprints) a plain ws://
connection has no channel binding: run it over wss:// (TLS) or a trusted network; the frames
it carries (ops, consensus messages) are signed by their authors anyway.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import aiohttp
from aiohttp import web

from swarmd.protocol import limits
from swarmd.protocol.crypto import KeyPair

from . import signaling
from .base import LinkTransport, TransportConfig, TransportEvents
from .errors import (
    ConnectTimeoutError,
    PeerUnreachableError,
    SignalBusyError,
    SignalingError,
    SignalingRejectedError,
    SignalMalformedError,
)
from .link import LINK_MESSAGE_SIZE_BYTES_MAX, PeerLink

WS_PATH = "/v1/ws"
#: aiohttp 3.14 refuses a message whose size *equals* max_msg_size (its check is `>=`), so
#: the limit we hand it is one above the largest message we send.
WS_MESSAGE_SIZE_BYTES_MAX = LINK_MESSAGE_SIZE_BYTES_MAX + 1
#: WebSocket close code carrying a refused handshake (4000-4999 are for applications); the
#: close message is "<code>: <message>".
WS_CLOSE_HANDSHAKE_REFUSED = 4001
#: Inbound connections still in their handshake, so idle sockets cannot pile up; one source
#: address holds at most limits.HANDSHAKES_PER_SOURCE_MAX of them, and a socket that has not
#: sent its hello after limits.HELLO_TIMEOUT_S is closed.
PENDING_HANDSHAKES_MAX = 32


class WebSocketTransport(LinkTransport):
    name = "websocket"

    def __init__(
        self,
        keypair: KeyPair,
        network_id: bytes,
        config: TransportConfig,
        callbacks: TransportEvents,
    ) -> None:
        super().__init__(keypair, network_id, config, callbacks)
        self._session: aiohttp.ClientSession | None = None
        self._pending_handshakes = 0
        self._reader_tasks: set[asyncio.Task[None]] = set()

    @property
    def routes(self) -> Sequence[web.RouteDef]:
        return [web.get(WS_PATH, self._handle_ws)]

    async def start(self) -> None:
        await super().start()
        self._session = aiohttp.ClientSession()

    async def stop(self) -> None:
        await super().stop()
        for task in list(self._reader_tasks):
            task.cancel()
        await asyncio.gather(*self._reader_tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    # --- dialing ---------------------------------------------------------------------------

    async def _dial(self, peer_id: bytes | None, url: str) -> bytes:
        session = self._session
        if session is None:
            raise PeerUnreachableError("transport has no HTTP session")
        ws_url = url.rstrip("/") + WS_PATH
        try:
            async with asyncio.timeout(self.config.connect_timeout_s):
                ws = await session.ws_connect(
                    ws_url, max_msg_size=WS_MESSAGE_SIZE_BYTES_MAX, autoping=True, compress=0
                )
        except TimeoutError as exc:
            raise ConnectTimeoutError(f"websocket to {ws_url} did not open in time") from exc
        except aiohttp.ClientError as exc:
            raise PeerUnreachableError(f"cannot reach {ws_url}: {exc!r}") from exc
        try:
            async with asyncio.timeout(self.config.connect_timeout_s):
                remote_id = await self._client_handshake(ws, peer_id)
        except TimeoutError as exc:
            await ws.close()
            raise ConnectTimeoutError(f"handshake with {ws_url} timed out") from exc
        except BaseException:
            await ws.close()
            raise
        link = self._new_link(ws, remote_id, "outbound", url)
        task = asyncio.create_task(self._read_loop(ws, link))
        self._reader_tasks.add(task)
        task.add_done_callback(self._reader_tasks.discard)
        return remote_id

    async def _client_handshake(
        self, ws: aiohttp.ClientWebSocketResponse, peer_id: bytes | None
    ) -> bytes:
        hello_body = signaling.new_body(
            signaling.KIND_HELLO,
            keypair=self.keypair,
            network_id=self.network_id,
            to=peer_id,
            nonce=self._new_nonce(),
            now=time.time(),
            url=self.config.public_url,
        )
        hello_envelope = signaling.sign(self.keypair, hello_body)
        hello = signaling.SignedMessage(body=hello_body, envelope=hello_envelope)
        await ws.send_bytes(hello_envelope)
        welcome = signaling.open_signed(await _receive_handshake(ws), signaling.KIND_WELCOME)
        self._check(welcome, expected_sender=peer_id)
        signaling.check_echo(welcome, hello)
        confirm_body = signaling.new_body(
            signaling.KIND_CONFIRM,
            keypair=self.keypair,
            network_id=self.network_id,
            to=welcome.sender_id,
            nonce=self._new_nonce(),
            now=time.time(),
            echo_nonce=welcome.body["nonce"],
            echo_digest=welcome.digest,
        )
        await ws.send_bytes(signaling.sign(self.keypair, confirm_body))
        return welcome.sender_id

    # --- accepting -------------------------------------------------------------------------

    async def _handle_ws(self, request: web.Request) -> web.StreamResponse:
        # No permessage-deflate: frames are mostly signatures and hashes, and compression would
        # cost CPU on every frame for little gain.
        ws = web.WebSocketResponse(
            max_msg_size=WS_MESSAGE_SIZE_BYTES_MAX, autoping=True, compress=False
        )
        await ws.prepare(request)
        source = request.remote or ""
        if (
            not self._started
            or self._stopping
            or self._pending_handshakes >= PENDING_HANDSHAKES_MAX
        ):
            await _refuse(ws, SignalBusyError("not accepting connections now"))
            return ws
        if not self.handshake_slots.take(source):
            await _refuse(ws, SignalBusyError("too many handshakes from this address"))
            return ws
        self._pending_handshakes += 1
        try:
            async with asyncio.timeout(self.config.connect_timeout_s):
                hello = await self._server_handshake(ws, source)
        except SignalingError as exc:
            self._log.info("hello_refused", code=exc.code, reason=exc.message)
            await _refuse(ws, exc)
            return ws
        except (TimeoutError, ConnectionError, SignalingRejectedError):
            await ws.close()
            return ws
        finally:
            self._pending_handshakes -= 1
            self.handshake_slots.release(source)
        link = self._new_link(ws, hello.sender_id, "inbound", hello.body.get("url"), source)
        # aiohttp closes the socket when this handler returns, so the handler is the reader.
        await self._read_loop(ws, link)
        return ws

    async def _server_handshake(
        self, ws: web.WebSocketResponse, source: str
    ) -> signaling.SignedMessage:
        # An honest dialer sends its hello at once; an idle socket loses its slot early.
        async with asyncio.timeout(limits.HELLO_TIMEOUT_S):
            first = await _receive_handshake(ws)
        hello = signaling.open_signed(first, signaling.KIND_HELLO)
        self._check(hello, expected_sender=None)
        self._check_can_accept(hello.sender_id, source)
        welcome_body = signaling.new_body(
            signaling.KIND_WELCOME,
            keypair=self.keypair,
            network_id=self.network_id,
            to=hello.sender_id,
            nonce=self._new_nonce(),
            now=time.time(),
            url=self.config.public_url,
            echo_nonce=hello.body["nonce"],
            echo_digest=hello.digest,
        )
        welcome_envelope = signaling.sign(self.keypair, welcome_body)
        await ws.send_bytes(welcome_envelope)
        confirm = signaling.open_signed(await _receive_handshake(ws), signaling.KIND_CONFIRM)
        self._check(confirm, expected_sender=hello.sender_id)
        signaling.check_echo(confirm, signaling.SignedMessage(welcome_body, welcome_envelope))
        return hello

    def _check(self, message: signaling.SignedMessage, expected_sender: bytes | None) -> None:
        signaling.check_binding(
            message,
            network_id=self.network_id,
            own_id=self.own_id,
            expected_sender=expected_sender,
            now=time.time(),
            replay_cache=self.replay_cache,
        )

    # --- a live socket ---------------------------------------------------------------------

    def _new_link(
        self,
        ws: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
        peer_id: bytes,
        direction: str,
        url: str | None,
        source: str | None = None,
    ) -> PeerLink:
        async def close_channel() -> None:
            await ws.close()

        link = PeerLink(
            peer_id=peer_id,
            transport_name=self.name,
            direction=direction,
            remote_url=url,
            heartbeat_interval_s=self.config.heartbeat_interval_s,
            heartbeat_dead_after_s=self.config.heartbeat_dead_after_s,
            # send_bytes waits for the socket to drain: that is this channel's backpressure.
            write=ws.send_bytes,
            close_channel=close_channel,
            on_frame=self._on_frame,
            on_closed=self._on_link_closed,
            on_updated=self._notify_peers_changed,
        )
        self._register(link, source)
        return link

    async def _read_loop(
        self, ws: web.WebSocketResponse | aiohttp.ClientWebSocketResponse, link: PeerLink
    ) -> None:
        # Bounded by the socket's life: it ends when the peer or the link closes the socket.
        reason = "connection_closed"
        try:
            async for message in ws:
                if message.type == aiohttp.WSMsgType.BINARY:
                    link.receive(message.data)
                elif message.type == aiohttp.WSMsgType.ERROR:
                    reason = "connection_error"
                    self._log.info("websocket_error", error=repr(message.data))
                    break
                else:
                    reason = "protocol_error:text_message"
                    break
                if link.closed:
                    break
        finally:
            link.close(reason)
            if not ws.closed:
                await ws.close()


async def _receive_handshake(ws: web.WebSocketResponse | aiohttp.ClientWebSocketResponse) -> bytes:
    message = await ws.receive()
    if message.type == aiohttp.WSMsgType.BINARY:
        data: bytes = message.data
        return data
    if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
        code, _, text = str(message.extra or "").partition(": ")
        if ws.close_code == WS_CLOSE_HANDSHAKE_REFUSED and code:
            raise SignalingRejectedError(
                f"peer refused the handshake: {text}", code=code, http_status=0
            )
        raise ConnectionError("websocket closed during the handshake")
    raise SignalMalformedError(f"expected a binary handshake message, got {message.type!r}")


async def _refuse(ws: web.WebSocketResponse, error: SignalingError) -> None:
    reason = f"{error.code}: {error.message}"[:120]  # a close reason must fit 123 bytes
    await ws.close(code=WS_CLOSE_HANDSHAKE_REFUSED, message=reason.encode())
