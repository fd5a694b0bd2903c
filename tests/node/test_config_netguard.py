"""The [network] keys of netguard and the peer cap: the file accepts what the node runs with."""

from __future__ import annotations

from pathlib import Path

import pytest

from swarmd.node.config import ConfigError, NodeConfig, allowed_peers, load_config
from swarmd.node.runtime.restore import core_config
from swarmd.protocol import limits
from swarmd.protocol.crypto import KeyPair, account_id_text


def load(tmp_path: Path, text: str) -> NodeConfig:
    path = tmp_path / "node.toml"
    path.write_text(text)
    return load_config(path)


def test_peers_max_is_bounded_by_what_the_core_enforces(tmp_path: Path) -> None:
    config = load(tmp_path, f"[sync]\npeers_max = {limits.PEERS_MAX}\n")
    assert core_config(config).peers_max == limits.PEERS_MAX  # the node starts with it
    with pytest.raises(ConfigError) as refused:
        load(tmp_path, f"[sync]\npeers_max = {limits.PEERS_MAX + 1}\n")
    assert refused.value.code == "config_out_of_range"
    assert "[sync].peers_max" in str(refused.value)


def test_a_sentry_accepts_exactly_its_listed_peers(tmp_path: Path) -> None:
    ids = [KeyPair.from_seed(bytes([i]) * 32).public_key for i in (1, 2)]
    peers = ", ".join(
        f'{{ url = "http://127.0.0.{i + 2}:7000", node_id = "{account_id_text(node_id)}" }}'
        for i, node_id in enumerate(ids)
    )
    config = load(tmp_path, f"[network]\nsentry = true\npeers = [{peers}]\n")
    assert allowed_peers(config) == frozenset(ids)
    assert core_config(config).allowed_peers == frozenset(ids)
    assert allowed_peers(load(tmp_path, f"[network]\npeers = [{peers}]\n")) is None


def test_a_sentry_needs_every_peer_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        load(tmp_path, '[network]\nsentry = true\npeers = [{ url = "http://127.0.0.2:7000" }]\n')
    assert refused.value.code == "config_out_of_range"
    assert "[network].sentry" in str(refused.value)
