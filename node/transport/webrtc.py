"""WebRTC data-channel transport (aiortc), with signed HTTP signaling at POST /v1/signal.

Dialing: create a peer connection and one reliable ordered data channel, gather every ICE
candidate (no trickle: aiortc finishes gathering inside setLocalDescription), refuse to go on
with zero candidates, then POST a signed offer to the peer. The peer verifies it, answers with a
signed answer that echoes our nonce and the digest of our offer, and both sides check that the
DTLS fingerprints in the signed messages are those of the SDPs they use. DTLS then proves that
the other end holds the key of that fingerprint, so each side knows which node it talks to.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Sequence

import aiohttp
from aiohttp import web
from aiortc import RTCDataChannel, RTCPeerConnection, RTCSessionDescription

from swarmd.protocol.crypto import KeyPair

from . import signaling
from .base import STOP_CLOSE_WAIT_S, LinkTransport, TransportConfig, TransportEvents, wait_bounded
from .errors import (
    ConnectTimeoutError,
    IceGatheringError,
    PeerUnreachableError,
    SignalBusyError,
    SignalingError,
    SignalingRejectedError,
    SignalMalformedError,
)
from .ice import (
    build_rtc_configuration,
    check_gathered_candidates,
    configure_ice_host_addresses,
    selected_candidate_pair,
)
from .link import PeerLink

SIGNAL_PATH = "/v1/signal"
DATA_CHANNEL_LABEL = "swarmd"
#: Hand the data channel the next message only once it has taken every earlier one into
#: SCTP (bufferedAmount at or below this): until then the link's queued frames accumulate and
#: go out as one batch (`PeerLink(coalesce=True)`), so aiortc pays its per-message and
#: per-packet costs once per batch. aiortc moves a message into SCTP chunks as soon as its
#: previous chunks left, so one batch waiting there keeps the pipe full; a heartbeat waits
#: behind at most that batch (64 KiB), not behind a deep channel buffer.
BUFFERED_AMOUNT_LOW_BYTES = 0
#: How long a link holds a few bulk frames (op gossip, announcements, sync) for company when
#: no control frame waits (`PeerLink(bulk_linger_s=...)`). Each data channel message costs
#: aiortc ~150-200 us of CPU per SCTP packet (sender, receiver and SACK; measured on loopback)
#: and a message's last packet is seldom full; 10 ms of latency on gossip took the data
#: channel messages per op from ~0.26 to ~0.19 per node in the 4-node swarm benchmark.
BULK_LINGER_S = 0.010
#: Answered offers whose data channel has not opened yet. Each holds sockets and a DTLS
#: context, so a burst of offers from many keys cannot exhaust them.
PENDING_ANSWERS_MAX = 32
#: The media section a peer's offer must carry (see `_build_answer`).
_DATA_SECTION = re.compile(r"^m=application [^\r\n]*webrtc-datachannel", re.MULTILINE)


class WebRtcTransport(LinkTransport):
    name = "webrtc"

    def __init__(
        self,
        keypair: KeyPair,
        network_id: bytes,
        config: TransportConfig,
        callbacks: TransportEvents,
    ) -> None:
        super().__init__(keypair, network_id, config, callbacks)
        self._session: aiohttp.ClientSession | None = None
        self._pending_answers: set[RTCPeerConnection] = set()
        #: The source address of each pending answer (its handshake slot, `handshake_slots`).
        self._answer_sources: dict[RTCPeerConnection, str] = {}

    @property
    def routes(self) -> Sequence[web.RouteDef]:
        return [web.post(SIGNAL_PATH, self._handle_signal)]

    async def start(self) -> None:
        hosts = self.config.ice_host_addresses
        configure_ice_host_addresses(None if hosts is None else list(hosts))
        await super().start()
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.config.connect_timeout_s)
        )

    async def stop(self) -> None:
        await super().stop()
        pending = list(self._pending_answers)
        for pc in pending:
            self._forget_answer(pc)
        await wait_bounded([pc.close() for pc in pending], STOP_CLOSE_WAIT_S)
        if self._session is not None:
            await self._session.close()
            self._session = None

    # --- dialing ---------------------------------------------------------------------------

    async def _dial(self, peer_id: bytes | None, url: str) -> bytes:
        pc = RTCPeerConnection(build_rtc_configuration(self.config, self.keypair))
        try:
            async with asyncio.timeout(self.config.connect_timeout_s):
                channel = pc.createDataChannel(DATA_CHANNEL_LABEL, ordered=True)
                opened = asyncio.Event()
                channel.on("open", opened.set)
                answer = await self._negotiate(pc, peer_id, url)
                await opened.wait()
        except TimeoutError as exc:
            await pc.close()
            raise ConnectTimeoutError(f"channel to {url} did not open in time") from exc
        except BaseException:
            await pc.close()
            raise
        self._attach(pc, channel, answer.sender_id, "outbound", url)
        return answer.sender_id

    async def _negotiate(
        self, pc: RTCPeerConnection, peer_id: bytes | None, url: str
    ) -> signaling.SignedMessage:
        await pc.setLocalDescription(await pc.createOffer())
        local_sdp = pc.localDescription.sdp
        check_gathered_candidates(local_sdp, self.config)
        body = signaling.new_body(
            signaling.KIND_OFFER,
            keypair=self.keypair,
            network_id=self.network_id,
            to=peer_id,
            nonce=self._new_nonce(),
            now=time.time(),
            url=self.config.public_url,
            sdp=local_sdp.encode(),
            fingerprints=signaling.parse_dtls_fingerprints(local_sdp),
        )
        offer_envelope = signaling.sign(self.keypair, body)
        offer = signaling.SignedMessage(body=body, envelope=offer_envelope)
        answer = signaling.open_signed(
            await self._post_offer(url, offer_envelope), signaling.KIND_ANSWER
        )
        signaling.check_binding(
            answer,
            network_id=self.network_id,
            own_id=self.own_id,
            expected_sender=peer_id,
            now=time.time(),
            replay_cache=self.replay_cache,
        )
        signaling.check_echo(answer, offer)
        remote_sdp = signaling.check_sdp_fingerprints(answer)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=remote_sdp, type="answer"))
        return answer

    async def _post_offer(self, url: str, envelope: bytes) -> bytes:
        session = self._session
        if session is None:
            raise PeerUnreachableError("transport has no HTTP session")
        try:
            async with session.post(
                url.rstrip("/") + SIGNAL_PATH,
                data=envelope,
                headers={"Content-Type": "application/octet-stream"},
            ) as response:
                length = response.content_length
                if length is None or length > signaling.SIGNAL_SIZE_BYTES_MAX:
                    raise PeerUnreachableError(f"{url} answered without a bounded body")
                payload = await response.read()
                status = response.status
        except aiohttp.ClientError as exc:
            raise PeerUnreachableError(f"cannot reach {url}: {exc!r}") from exc
        if status == 200:
            return payload
        raise _rejection(url, status, payload)

    # --- answering -------------------------------------------------------------------------

    async def _handle_signal(self, request: web.Request) -> web.Response:
        try:
            answer = await self._answer_offer(request)
        except (SignalingError, IceGatheringError) as exc:
            status = exc.http_status if isinstance(exc, SignalingError) else 503
            self._log.info("offer_refused", code=exc.code, reason=exc.message)
            # The API's one error shape; "message" repeats the text for peers that read it.
            body = {"error": exc.message, "code": exc.code, "message": exc.message}
            return web.json_response(body, status=status)
        return web.Response(body=answer, content_type="application/octet-stream")

    async def _answer_offer(self, request: web.Request) -> bytes:
        if not self._started or self._stopping:
            raise SignalBusyError("transport is not running")
        length = request.content_length
        if length is None or length > signaling.SIGNAL_SIZE_BYTES_MAX:
            raise SignalMalformedError("offer needs a Content-Length within the size limit")
        offer = signaling.open_signed(await request.read(), signaling.KIND_OFFER)
        signaling.check_binding(
            offer,
            network_id=self.network_id,
            own_id=self.own_id,
            expected_sender=None,
            now=time.time(),
            replay_cache=self.replay_cache,
        )
        remote_sdp = signaling.check_sdp_fingerprints(offer)
        source = request.remote or ""
        self._check_can_accept(offer.sender_id, source)
        if len(self._pending_answers) >= PENDING_ANSWERS_MAX:
            raise SignalBusyError("too many offers are being answered")
        if not self.handshake_slots.take(source):
            raise SignalBusyError("too many offers from this address are being answered")
        pc = RTCPeerConnection(build_rtc_configuration(self.config, self.keypair))
        self._pending_answers.add(pc)
        self._answer_sources[pc] = source
        pc.on("datachannel", lambda channel: self._on_inbound_channel(pc, channel, offer))
        try:
            async with asyncio.timeout(self.config.connect_timeout_s):
                return await self._build_answer(pc, offer, remote_sdp)
        except BaseException:
            self._forget_answer(pc)
            await pc.close()
            raise
        finally:
            loop = asyncio.get_running_loop()
            loop.call_later(self.config.connect_timeout_s, self._drop_pending_answer, pc)

    async def _build_answer(
        self, pc: RTCPeerConnection, offer: signaling.SignedMessage, remote_sdp: str
    ) -> bytes:
        # Without a data section, or without one candidate aiortc can use (signalling is not
        # trickled: our dialer sends all of its candidates, having checked its gathering),
        # aiortc answers with no candidates of ours either, which would read as our own ICE
        # failure (503 no_ice_candidates) instead of a bad offer.
        if _DATA_SECTION.search(remote_sdp) is None:
            raise SignalMalformedError("offer sdp has no data channel (m=application) section")
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=remote_sdp, type="offer"))
            answer = await pc.createAnswer()
        except Exception as exc:
            # aiortc parses the untrusted SDP with asserts and attribute accesses as well as
            # ValueError: whatever it raises here means the offer is malformed, not a bug.
            raise SignalMalformedError(f"offer sdp rejected: {exc!r}") from exc
        if pc.sctp is None or not pc.sctp.transport.transport.getRemoteCandidates():
            raise SignalMalformedError("offer sdp carries no usable ICE candidate")
        await pc.setLocalDescription(answer)
        local_sdp = pc.localDescription.sdp
        check_gathered_candidates(local_sdp, self.config)
        body = signaling.new_body(
            signaling.KIND_ANSWER,
            keypair=self.keypair,
            network_id=self.network_id,
            to=offer.sender_id,
            nonce=self._new_nonce(),
            now=time.time(),
            url=self.config.public_url,
            sdp=local_sdp.encode(),
            fingerprints=signaling.parse_dtls_fingerprints(local_sdp),
            echo_nonce=offer.body["nonce"],
            echo_digest=offer.digest,
        )
        return signaling.sign(self.keypair, body)

    def _on_inbound_channel(
        self, pc: RTCPeerConnection, channel: RTCDataChannel, offer: signaling.SignedMessage
    ) -> None:
        if pc not in self._pending_answers or channel.label != DATA_CHANNEL_LABEL:
            return
        source = self._forget_answer(pc)
        if self._stopping:
            asyncio.get_running_loop().create_task(pc.close())
            return
        self._attach(pc, channel, offer.sender_id, "inbound", offer.body.get("url"), source)

    def _drop_pending_answer(self, pc: RTCPeerConnection) -> None:
        if pc in self._pending_answers:
            self._forget_answer(pc)
            asyncio.get_running_loop().create_task(pc.close())

    def _forget_answer(self, pc: RTCPeerConnection) -> str | None:
        """No longer pending: free its handshake slot; returns its source address."""
        self._pending_answers.discard(pc)
        source = self._answer_sources.pop(pc, None)
        if source is not None:
            self.handshake_slots.release(source)
        return source

    # --- a live channel --------------------------------------------------------------------

    def _attach(
        self,
        pc: RTCPeerConnection,
        channel: RTCDataChannel,
        peer_id: bytes,
        direction: str,
        url: str | None,
        source: str | None = None,
    ) -> None:
        channel.bufferedAmountLowThreshold = BUFFERED_AMOUNT_LOW_BYTES
        drained = asyncio.Event()
        channel.on("bufferedamountlow", drained.set)

        async def write(message: bytes) -> None:
            # Bounded by the link: a channel that never drains stops answering heartbeats,
            # and closing the link cancels this wait.
            while channel.bufferedAmount > BUFFERED_AMOUNT_LOW_BYTES:
                drained.clear()
                await drained.wait()
            channel.send(message)

        link = PeerLink(
            peer_id=peer_id,
            transport_name=self.name,
            direction=direction,
            remote_url=url,
            heartbeat_interval_s=self.config.heartbeat_interval_s,
            heartbeat_dead_after_s=self.config.heartbeat_dead_after_s,
            write=write,
            close_channel=pc.close,
            on_frame=self._on_frame,
            on_closed=self._on_link_closed,
            on_updated=self._notify_peers_changed,
            candidate_pair=lambda: selected_candidate_pair(pc),
            coalesce=True,
            bulk_linger_s=BULK_LINGER_S,
        )

        def on_message(message: bytes | str) -> None:
            if isinstance(message, bytes):
                link.receive(message)
            else:
                link.close("protocol_error:text_message")

        def on_state_change() -> None:
            if pc.connectionState in ("failed", "closed"):
                link.close(f"connection_{pc.connectionState}")

        channel.on("message", on_message)
        channel.on("close", lambda: link.close("channel_closed"))
        pc.on("connectionstatechange", on_state_change)
        self._register(link, source)


def _rejection(url: str, status: int, payload: bytes) -> Exception:
    """The typed error for a non-200 signaling answer (the peer's code when it gave one)."""
    try:
        error = json.loads(payload)
        code, message = str(error["code"]), str(error.get("error", error.get("message", "")))
    except (ValueError, KeyError, TypeError):
        return PeerUnreachableError(f"{url} answered HTTP {status} without an error code")
    return SignalingRejectedError(
        f"{url} refused the offer: {code}: {message}", code=code, http_status=status
    )
