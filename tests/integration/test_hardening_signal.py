"""Issue 14, F2: a correctly signed WebRTC offer whose SDP aiortc cannot parse is a typed 400
(`signal_malformed`), not a 500; any fresh key can send one."""

from __future__ import annotations

import os
import re

import pytest

from swarmd.protocol.crypto import KeyPair
from tests.integration import test_transport
from tests.integration.conftest import NodeFactory
from tests.integration.test_transport import post_signal, signed_offer

offer_sdp = test_transport.offer_sdp  # the fixture: a real aiortc offer

MANGLE = {
    "port_not_a_number": lambda sdp: sdp.replace("m=application ", "m=application x", 1),
    "no_setup_line": lambda sdp: re.sub(r"a=setup:.*\r\n", "", sdp),
    "bad_setup": lambda sdp: re.sub(r"a=setup:.*\r\n", "a=setup:bogus\r\n", sdp),
    "sctp_port_not_a_number": lambda sdp: re.sub(r"a=sctp-port:.*\r\n", "a=sctp-port:abc\r\n", sdp),
}


@pytest.mark.parametrize("mangle", sorted(MANGLE))
async def test_f2_a_signed_offer_with_unparseable_sdp_is_a_typed_400(
    make_node: NodeFactory, network_id: bytes, offer_sdp: str, mangle: str
) -> None:
    node = await make_node()
    dialer = KeyPair.from_seed(os.urandom(32))

    status, code = await post_signal(
        node.url, signed_offer(dialer, network_id, MANGLE[mangle](offer_sdp))
    )

    assert (status, code) == (400, "signal_malformed")
    assert node.transport.peers() == {}
    good = signed_offer(dialer, network_id, offer_sdp)
    assert (await post_signal(node.url, good))[0] == 200  # still answering
