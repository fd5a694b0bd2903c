"""The TURN relays a daemon offers in its signed address record (issue 16, mesh branch):
taken from `[network]` turn_urls and ice_servers, URIs only, never credentials, bounded."""

from __future__ import annotations

import time
from pathlib import Path

from swarmd.node.config import parse_config_text
from swarmd.node.runtime.exchange import offered_relays
from swarmd.protocol import limits
from swarmd.protocol.addresses import AddressRecord
from swarmd.protocol.crypto import KeyPair

CONFIG = """
[network]
turn_urls = ["turns:relay-b.example.net:5349", "turn:relay-a.example.net:3478"]
turn_secret = "s3cret"

[[network.ice_servers]]
urls = ["stun:stun.example.net:3478", "turn:relay-c.example.net:3478"]
username = "u"
credential = "p"
"""


def test_the_record_offers_the_configured_turn_relays_without_credentials(tmp_path: Path) -> None:
    network = parse_config_text(CONFIG, tmp_path).network
    relays = offered_relays(network)
    assert len(relays) == limits.ADDRESS_RELAYS_MAX
    assert relays == ("turn:relay-a.example.net:3478", "turn:relay-c.example.net:3478")
    assert all("s3cret" not in r and "stun:" not in r for r in relays)
    now = time.time()
    record = AddressRecord.sign(
        KeyPair.from_seed(bytes(32)), {"websocket": "http://127.0.0.1:7000"}, now, relays=relays
    )
    assert AddressRecord.decode(record.encode(), now).relays == relays


def test_no_turn_config_offers_no_relays(tmp_path: Path) -> None:
    assert offered_relays(parse_config_text("", tmp_path).network) == ()
