"""Regression tests for what the live fuzzers of issue 14 found, each named after its finding.

- admin_council_deep_json: a council action body nested 2,000 deep (with the admin token)
  answered 500 with a RecursionError traceback (the council routes parsed JSON themselves).
- signal_error_shape: `/v1/signal` refusals were `{"code", "message"}`, not the API's one
  error shape `{"error", "code"}` that the OpenAPI document promises.
- hype_target_404: `GET /v1/hype/{target}` answers 404 `target_not_found`, which the OpenAPI
  document did not list.
- offer_without_data_section_or_candidates: a signed offer whose SDP has no `m=application`
  section, or no candidate of the dialer's that aiortc can use, answered 503
  `no_ice_candidates` ("no usable host address ... check the TURN server"), blaming the node
  instead of the offer.
"""

from __future__ import annotations

import asyncio
import os
import re

import pytest
import requests

from swarmd.node.http.openapi import document
from swarmd.node.transport import PeerInfo, TransportConfig, WebRtcTransport, signaling
from swarmd.node.transport.errors import SignalingRejectedError
from swarmd.protocol.crypto import KeyPair
from tests.live.conftest import LiveNode
from tests.live.test_live_fuzz_peer import (
    assert_clean,
    body_for,
    loop,  # noqa: F401 - the fixture offer_sdp needs
    offer_fields,
    offer_sdp,  # noqa: F401 - a real aiortc offer
    post_signal,
)

COUNCIL_ACTIONS = [
    "quiesce",
    "resume",
    "revoke",
    "endorse",
    "pause-claims",
    "resume-claims",
    "rollback",
]


@pytest.mark.parametrize("action", COUNCIL_ACTIONS)
def test_finding_admin_council_deep_json_is_a_typed_400(
    live_node: LiveNode, http: requests.Session, action: str
) -> None:
    deep = b"[" * 2000 + b"]" * 2000
    response = http.post(
        f"{live_node.admin_url}/v1/admin/council/{action}",
        data=deep,
        headers={"Authorization": f"Bearer {live_node.admin_token()}"},
    )
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "json_too_deep"
    assert_clean(live_node)


def test_finding_admin_council_body_over_the_admin_bound_is_413(
    live_node: LiveNode, http: requests.Session
) -> None:
    response = http.post(
        f"{live_node.admin_url}/v1/admin/council/quiesce",
        data=b'{"reason": "' + b"x" * 6000 + b'"}',
        headers={"Authorization": f"Bearer {live_node.admin_token()}"},
    )
    assert (response.status_code, response.json()["code"]) == (413, "request_too_large")
    assert_clean(live_node)


def test_finding_signal_error_shape_is_the_api_error_shape(
    live_node: LiveNode, http: requests.Session
) -> None:
    response = http.post(live_node.url + "/v1/signal", data=b"\xc1not msgpack")
    body = response.json()
    assert response.status_code == 400
    assert body["code"] == "signal_malformed"
    assert body["error"] and body["message"] == body["error"]  # "message": older peers
    assert_clean(live_node)


def test_finding_hype_target_404_is_documented(live_node: LiveNode, http: requests.Session) -> None:
    response = http.get(live_node.url + "/v1/hype/nothing-burned-here")
    assert (response.status_code, response.json()["code"]) == (404, "target_not_found")
    assert "404" in document()["paths"]["/v1/hype/{target}"]["get"]["responses"]


_CANDIDATE = re.compile(r"a=candidate:[^\r\n]*\r\n")
#: A candidate line aiortc cannot parse (type "0"; the fuzz garbled "host" so).
_UNUSABLE = "a=candidate:1 1 udp 1 127.0.0.1 9 typ 0\r\n"

#: Offers a real dialer never sends, that made aiortc answer without candidates of ours.
OFFER_DAMAGE = {
    "no_data_section": lambda sdp: re.sub(r"m=application [^\r\n]*\r\n", "", sdp),
    "no_candidates": lambda sdp: _CANDIDATE.sub("", sdp),
    "no_usable_candidate": lambda sdp: _CANDIDATE.sub("", sdp).replace(
        "a=end-of-candidates", _UNUSABLE + "a=end-of-candidates"
    ),
}


@pytest.mark.parametrize("damage", sorted(OFFER_DAMAGE))
def test_finding_offer_without_data_section_or_candidates_is_signal_malformed(
    live_node: LiveNode,
    http: requests.Session,
    offer_sdp: str,  # noqa: F811 - the fixture
    damage: str,
) -> None:
    damaged = OFFER_DAMAGE[damage](offer_sdp)
    assert damaged != offer_sdp
    dialer = KeyPair.from_seed(os.urandom(32))
    envelope = signaling.sign(dialer, body_for("offer", live_node, dialer, **offer_fields(damaged)))
    assert post_signal(live_node, http, envelope) == (400, "signal_malformed")
    valid = body_for("offer", live_node, dialer, **offer_fields(offer_sdp))
    assert post_signal(live_node, http, signaling.sign(dialer, valid))[0] == 200
    assert_clean(live_node)


class _Ignore:
    """Transport callbacks a dialer that is refused never gets."""

    def on_peer_connected(self, peer_id: bytes, info: PeerInfo) -> None:
        raise AssertionError("a refused dial connected")

    def on_frame(self, peer_id: bytes, frame: bytes) -> None:
        raise AssertionError("a refused dial got a frame")

    def on_peer_disconnected(self, peer_id: bytes, reason: str) -> None:
        pass


async def _dial_from_another_network(node: LiveNode) -> SignalingRejectedError:
    config = TransportConfig(ice_host_addresses=("127.0.0.1",))
    dialer = WebRtcTransport(KeyPair.from_seed(os.urandom(32)), os.urandom(32), config, _Ignore())
    await dialer.start()
    try:
        with pytest.raises(SignalingRejectedError) as refused:
            await dialer.connect(node.keypair.public_key, node.url)
        return refused.value
    finally:
        await dialer.stop()


def test_finding_signal_error_shape_dialers_read_the_refusal(live_node: LiveNode) -> None:
    """A dialer reads the code and the text of the new shape (`error`) from a refusal."""
    refusal = asyncio.run(_dial_from_another_network(live_node))
    assert (refusal.code, refusal.http_status) == ("wrong_network", 403)
    assert str(refusal).endswith("wrong_network: signaling message is for another network")
    assert_clean(live_node)
