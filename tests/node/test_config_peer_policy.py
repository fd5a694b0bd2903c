"""The [network] peer targets and the [sync] bulk send rates (issue 16, peers2): what the file
says is what the exchange and the core run with; the deprecated `peers_target` still loads;
bad values are refused with typed errors naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from swarmd.node.config import ConfigError, NodeConfig, load_config, mesh_targets
from swarmd.node.runtime.restore import core_config
from swarmd.protocol import limits
from swarmd.protocol.peering import MeshTargets


def load(tmp_path: Path, text: str) -> NodeConfig:
    path = tmp_path / "node.toml"
    path.write_text(text)
    return load_config(path)


def refused(tmp_path: Path, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as error:
        load(tmp_path, text)
    return error.value


def test_the_default_targets_are_the_protocol_s(tmp_path: Path) -> None:
    targets = mesh_targets(load(tmp_path, "").network)
    assert targets == MeshTargets()
    assert (targets.outbound, targets.inbound_max) == (
        limits.MESH_OUTBOUND_TARGET,
        limits.MESH_INBOUND_MAX,
    )


def test_outbound_target_and_inbound_max_reach_the_targets(tmp_path: Path) -> None:
    config = load(tmp_path, "[network]\noutbound_target = 3\ninbound_max = 5\n")
    assert mesh_targets(config.network) == MeshTargets(outbound=3, inbound_max=5)
    assert mesh_targets(load(tmp_path, "[network]\ninbound_max = 0\n").network).inbound_max == 0


def test_peers_target_is_a_deprecated_alias_of_outbound_target(tmp_path: Path) -> None:
    # A file written before outbound_target (`swarmd init` wrote peers_target = 8) loads.
    assert mesh_targets(load(tmp_path, "[network]\npeers_target = 4\n").network).outbound == 4
    both = "[network]\npeers_target = 4\noutbound_target = 4\n"
    assert mesh_targets(load(tmp_path, both).network).outbound == 4
    error = refused(tmp_path, "[network]\npeers_target = 4\noutbound_target = 6\n")
    assert error.code == "config_out_of_range" and error.key_path == "[network].peers_target"


@pytest.mark.parametrize(
    ("text", "key_path", "code"),
    [
        (
            f"[network]\noutbound_target = {limits.PEERS_MAX + 1}\n",
            "[network].outbound_target",
            "config_out_of_range",
        ),
        ("[network]\ninbound_max = -1\n", "[network].inbound_max", "config_out_of_range"),
        ('[network]\ninbound_max = "many"\n', "[network].inbound_max", "config_wrong_type"),
    ],
)
def test_bad_targets_are_refused(tmp_path: Path, text: str, key_path: str, code: str) -> None:
    error = refused(tmp_path, text)
    assert (error.code, error.key_path) == (code, key_path)


def test_serve_rates_reach_the_core(tmp_path: Path) -> None:
    default = core_config(load(tmp_path, ""))
    assert (default.serve_bytes_per_s_peer, default.serve_burst_bytes_total) == (
        limits.SERVE_BYTES_PER_S_PEER,
        limits.SERVE_BURST_BYTES_TOTAL,
    )
    config = load(
        tmp_path,
        "[sync]\nserve_bytes_per_s_peer = 100000\nserve_burst_bytes_peer = 200000\n"
        "serve_bytes_per_s_total = 300000\nserve_burst_bytes_total = 400000\n",
    )
    core = core_config(config)
    assert (
        core.serve_bytes_per_s_peer,
        core.serve_burst_bytes_peer,
        core.serve_bytes_per_s_total,
        core.serve_burst_bytes_total,
    ) == (100_000, 200_000, 300_000, 400_000)


@pytest.mark.parametrize(
    ("text", "key_path"),
    [
        (
            f"[sync]\nserve_bytes_per_s_peer = {limits.SERVE_RATE_BYTES_CONFIG_MIN - 1}\n",
            "[sync].serve_bytes_per_s_peer",
        ),
        (
            f"[sync]\nserve_burst_bytes_total = {limits.SERVE_RATE_BYTES_CONFIG_MAX + 1}\n",
            "[sync].serve_burst_bytes_total",
        ),
        (
            "[sync]\nserve_bytes_per_s_peer = 2000000\nserve_bytes_per_s_total = 1000000\n",
            "[sync].serve_bytes_per_s_total",
        ),
        (
            "[sync]\nserve_burst_bytes_peer = 3000000\nserve_burst_bytes_total = 2000000\n",
            "[sync].serve_burst_bytes_total",
        ),
    ],
    ids=["rate-below-min", "burst-above-max", "total-rate-below-peer", "total-burst-below-peer"],
)
def test_bad_serve_rates_are_refused(tmp_path: Path, text: str, key_path: str) -> None:
    error = refused(tmp_path, text)
    assert (error.code, error.key_path) == ("config_out_of_range", key_path)
