"""The TOML config: defaults, the generated file, every class of bad input, the transport map."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swarmd.node import config as config_module
from swarmd.node.config import (
    ConfigError,
    NodeConfig,
    all_key_paths,
    default_config_text,
    load_config,
    parse_config_text,
    reference_markdown,
    to_toml,
    transport_config,
)
from swarmd.node.transport import TransportConfig
from swarmd.protocol import limits
from swarmd.protocol.crypto import KeyPair
from swarmd.protocol.node_core import BUNDLES_KEPT_MAX
from swarmd.storage.api import SNAPSHOTS_KEPT_MAX

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "deploy" / "node.example.toml"
DOCS = REPO / "docs" / "parts" / "config.md"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    return caught.value


# --- defaults and the generated file -------------------------------------------------------


def test_empty_file_gives_documented_defaults_with_paths_under_the_config_dir(tmp_path):
    config = load_config(write(tmp_path, ""))
    assert config.node.home == tmp_path.absolute()
    assert config.node.genesis_file == tmp_path.absolute() / "genesis.json"
    assert config.node.key_file == tmp_path.absolute() / "node.key"
    assert config.node.data_file == tmp_path.absolute() / "swarmd.sqlite3"
    assert config.admin.cookie_file == tmp_path.absolute() / "admin.cookie"
    assert config.admin.unix_socket is None
    assert config.node.synchronous == "FULL"
    assert (config.api.host, config.api.port) == ("127.0.0.1", 7000)
    assert config.api.request_size_bytes_max == 65536
    assert (config.api.rate_limit_per_s, config.api.rate_limit_burst) == (200.0, 400)
    assert config.admin.port == 7100
    assert config.network.transport == "webrtc"
    assert config.network.ice_host_addresses == ("127.0.0.1",)
    assert config.sync.delta_sync_interval_s == limits.DELTA_SYNC_INTERVAL_S
    assert config.sync.peers_max == limits.PEERS_MAX
    assert config.consensus.timeout_propose_s == limits.CONSENSUS_TIMEOUT_PROPOSE_S
    assert config.consensus.checkpoint_ops_trigger == limits.CHECKPOINT_OPS_TRIGGER
    assert config.limits.pending_ops_max == limits.PENDING_OPS_MAX
    assert config.limits.pending_ops_per_author_max == limits.PENDING_OPS_PER_AUTHOR_MAX
    assert (config.log.level, config.log.format) == ("info", "json")
    assert (config.metrics.enabled, config.metrics.path) == (True, "/metrics")


def test_default_text_is_valid_toml_listing_every_key_with_a_comment():
    text = default_config_text()
    document = tomllib.loads(text)
    assert set(document) == set(config_module.SECTION_NAMES)
    lines = text.splitlines()
    for key_path in all_key_paths():
        section, key = re.fullmatch(r"\[(\w+)\]\.(\w+)", key_path).groups()
        # Each key is either set or shown commented out (optional keys), after a comment.
        index = next(
            i
            for i, line in enumerate(lines)
            if re.match(rf"(# )?{key} = ", line) and i > 0 and _section_at(lines, i) == section
        )
        assert lines[index - 1].startswith("#"), key_path
        if key in document[section]:
            continue
        assert lines[index].startswith(f"# {key} = "), key_path


def _section_at(lines: list[str], index: int) -> str:
    for line in reversed(lines[:index]):
        if line.startswith("["):
            return line.strip("[]")
    return ""


def test_default_text_loads_to_the_default_config(tmp_path):
    loaded = load_config(write(tmp_path, default_config_text()))
    empty = load_config(write(tmp_path, ""))
    assert loaded == empty


def test_committed_example_equals_generated_default():
    assert EXAMPLE.read_text() == default_config_text()


def test_docs_list_every_key_and_the_generated_reference():
    docs = DOCS.read_text()
    for key_path in all_key_paths():
        assert f"`{key_path}`" in docs, key_path
    assert reference_markdown() in docs


def test_overrides_flat_and_by_section(tmp_path):
    peer = KeyPair.from_seed(bytes(range(32)))
    text = default_config_text(
        api_port=7001,
        node_home="/var/lib/swarmd",
        network={
            "transport": "websocket",
            "peers": [{"url": "http://127.0.0.1:7002", "node_id": peer.public_key}],
        },
        log={"format": "console"},
    )
    config = load_config(write(tmp_path, text))
    assert config.api.port == 7001
    assert config.node.home == Path("/var/lib/swarmd")
    assert config.node.key_file == Path("/var/lib/swarmd/node.key")
    assert config.network.transport == "websocket"
    assert config.network.peers[0].url == "http://127.0.0.1:7002"
    assert config.network.peers[0].node_id == peer.public_key
    assert config.log.format == "console"


@pytest.mark.parametrize(
    ("overrides", "code", "key_path"),
    [
        ({"api_port": 70000}, "config_out_of_range", "[api].port"),
        ({"api_colour": 1}, "config_unknown_key", "[api].colour"),
        ({"bogus_key": 1}, "config_unknown_key", "[bogus].key"),
        ({"log": {"level": 3}}, "config_wrong_type", "[log].level"),
    ],
)
def test_bad_override_raises_config_error(overrides, code, key_path):
    with pytest.raises(ConfigError) as caught:
        default_config_text(**overrides)
    assert caught.value.code == code
    assert caught.value.key_path == key_path


def test_paths_with_quotes_backslashes_and_non_ascii_round_trip(tmp_path):
    odd = 'a "quoted" \\ path ✓ \U0001f600'
    text = default_config_text(node_genesis_file=odd)
    assert load_config(write(tmp_path, text)).node.genesis_file == tmp_path.absolute() / odd


def test_control_characters_in_strings_are_refused(tmp_path):
    error = error_of(tmp_path, '[node]\nkey_file = "a\\tb"\n')
    assert error.code == "config_out_of_range"
    assert error.key_path == "[node].key_file"


@given(st.text(max_size=40))
def test_to_toml_string_round_trips_any_text(value):
    assert tomllib.loads(f"x = {to_toml(value)}") == {"x": value}


@given(
    st.recursive(
        st.booleans()
        | st.integers(-(2**63), 2**63 - 1)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=10),
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
        ),
        max_leaves=12,
    )
)
def test_to_toml_round_trips_toml_shaped_values(value):
    shaped = config_module.shape_for_toml(value)
    assert tomllib.loads(f"x = {to_toml(shaped)}") == {"x": shaped}


# --- paths ---------------------------------------------------------------------------------


def test_relative_home_resolves_against_config_dir_and_paths_against_home(tmp_path):
    config = load_config(
        write(
            tmp_path,
            '[node]\nhome = "state"\nkey_file = "keys/a.key"\ngenesis_file = "/etc/g.json"\n'
            '[admin]\nunix_socket = "run/admin.sock"\n',
        )
    )
    home = tmp_path.absolute() / "state"
    assert config.node.home == home
    assert config.node.key_file == home / "keys" / "a.key"
    assert config.node.genesis_file == Path("/etc/g.json")
    assert config.admin.unix_socket == home / "run" / "admin.sock"


# --- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "code", "message"),
    [
        ("[api]\nport = 0\n", "config_out_of_range", "[api].port: must be 1..65535"),
        ("[api]\nport = 65536\n", "config_out_of_range", "[api].port: must be 1..65535"),
        ('[api]\nport = "7000"\n', "config_wrong_type", "[api].port: must be an integer"),
        ("[api]\nport = true\n", "config_wrong_type", "[api].port: must be an integer"),
        ("[api]\nport = 7000.0\n", "config_wrong_type", "[api].port: must be an integer"),
        ("[api]\nportt = 1\n", "config_unknown_key", "[api].portt: unknown key"),
        ("[apis]\nport = 1\n", "config_unknown_key", "[apis]: unknown section"),
        ("api = 3\n", "config_wrong_type", "[api]: must be a table"),
        ("[api]\nrate_limit_per_s = nan\n", "config_out_of_range", "[api].rate_limit_per_s"),
        ("[api]\nrate_limit_per_s = inf\n", "config_out_of_range", "[api].rate_limit_per_s"),
        ("[api]\nrequest_size_bytes_max = 100\n", "config_out_of_range", "[api].request_size"),
        ('[api]\nhost = "bad host!"\n', "config_out_of_range", "[api].host"),
        ('[node]\nsynchronous = "OFF"\n', "config_out_of_range", '"FULL", "NORMAL"'),
        ('[node]\nkey_file = ""\n', "config_out_of_range", "[node].key_file: must be non-empty"),
        ('[log]\nlevel = "loud"\n', "config_out_of_range", "[log].level: must be one of"),
        ('[log]\nformat = "xml"\n', "config_out_of_range", "[log].format"),
        ('[metrics]\npath = "metrics"\n', "config_out_of_range", "[metrics].path"),
        ('[metrics]\nenabled = "yes"\n', "config_wrong_type", "[metrics].enabled: must be true"),
        ('[admin]\nhost = "0.0.0.0"\n', "config_out_of_range", "[admin].host: must be a loopback"),
        ("[admin]\nport = 7000\n", "config_out_of_range", "[admin].port: must differ"),
        ('[network]\ntransport = "tcp"\n', "config_out_of_range", "[network].transport"),
        ('[network]\npeers = ["http://x"]\n', "config_wrong_type", "[network].peers[0]: must be"),
        (
            '[network]\npeers = [{ url = "ftp://x" }]\n',
            "config_out_of_range",
            "[network].peers[0].url: must be a URL",
        ),
        (
            '[network]\npeers = [{ node_id = "sw1abc" }]\n',
            "config_missing_key",
            "[network].peers[0].url: is required",
        ),
        (
            '[network]\npeers = [{ url = "http://127.0.0.1:1", node_id = "sw1abc" }]\n',
            "config_out_of_range",
            "[network].peers[0].node_id: not a node id",
        ),
        (
            '[network]\npeers = [{ url = "http://127.0.0.1:1", weight = 2 }]\n',
            "config_unknown_key",
            "[network].peers[0].weight",
        ),
        ('[network]\nice_host_addresses = ["eth0"]\n', "config_out_of_range", "ice_host_addr"),
        (
            '[network]\nice_servers = [{ urls = "stun.example:3478" }]\n',
            "config_out_of_range",
            "[network].ice_servers[0].urls: must be a URL starting with stun:, turn:, turns:",
        ),
        (
            '[network]\nice_servers = [{ urls = "turn:r:3478", username = "u" }]\n',
            "config_missing_key",
            "[network].ice_servers[0].credential: username and credential go together",
        ),
        (
            '[network]\nturn_urls = ["turn:r:3478"]\n',
            "config_missing_key",
            "needs [network].turn_s",
        ),
        ('[network]\nturn_secret = "s"\n', "config_missing_key", "[network].turn_secret: needs"),
        (
            '[network]\nice_transport_policy = "relay"\n',
            "config_out_of_range",
            "[network].ice_transport_policy",
        ),
        (
            "[network]\nheartbeat_interval_s = 1.0\nheartbeat_dead_after_s = 2.0\n",
            "config_out_of_range",
            "[network].heartbeat_dead_after_s: must be at least 3 x",
        ),
        (
            "[sync]\npeers_max = 4\ngossip_fanout = 8\n",
            "config_out_of_range",
            "[sync].gossip_fanout: must not exceed [sync].peers_max",
        ),
        (
            "[limits]\npending_ops_max = 10\npending_ops_per_author_max = 11\n",
            "config_out_of_range",
            "[limits].pending_ops_per_author_max",
        ),
        ("[consensus]\ntimeout_prevote_s = 0\n", "config_out_of_range", "timeout_prevote_s"),
        ("[consensus]\ncheckpoint_ops_trigger = -1\n", "config_out_of_range", "checkpoint_ops"),
        ("[api\nport = 1\n", "config_syntax", "is not valid TOML"),
        ("[api]\nport = 1\nport = 2\n", "config_syntax", "is not valid TOML"),
    ],
)
def test_bad_values_raise_typed_errors_naming_the_key(tmp_path, text, code, message):
    error = error_of(tmp_path, text)
    assert error.code == code
    assert message in str(error)


def test_every_config_error_is_a_config_error_with_a_code(tmp_path):
    error = error_of(tmp_path, "[api]\nport = 0\n")
    assert isinstance(error, ConfigError)
    assert isinstance(error, Exception)
    assert error.key_path == "[api].port"
    assert str(error) == "[api].port: must be 1..65535"


def test_missing_file_is_unreadable(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "absent.toml")
    assert caught.value.code == "config_unreadable"
    assert "absent.toml" in str(caught.value)


def test_directory_is_unreadable(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path)
    assert caught.value.code == "config_unreadable"


#: Root reads files whatever their mode (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH): as root (CI),
#: the load runs without those two capabilities (util-linux's setpriv, present on every
#: Debian), so the file's mode stands in its way as for any operator's user.
WITHOUT_DAC_OVERRIDE = ("setpriv", "--bounding-set=-dac_override,-dac_read_search")

UNREADABLE_CHILD = """
import sys
from swarmd.node.config import ConfigError, load_config
try:
    load_config(sys.argv[1])
except ConfigError as error:
    print(error.code)
"""


def test_file_without_read_permission_is_unreadable(tmp_path):
    path = write(tmp_path, "")
    path.chmod(0)
    as_root = os.geteuid() == 0
    if as_root:
        assert path.read_bytes() == b""  # (root itself still reads it)
    result = subprocess.run(
        [*(WITHOUT_DAC_OVERRIDE if as_root else ()), sys.executable, "-c", UNREADABLE_CHILD, path],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stdout.strip()) == (0, "config_unreadable"), result.stderr


def test_non_utf8_file_is_a_syntax_error(tmp_path):
    path = tmp_path / "node.toml"
    path.write_bytes(b'[node]\nhome = "\xff"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.code == "config_syntax"


def test_oversized_file_is_refused_before_parsing(tmp_path):
    path = tmp_path / "node.toml"
    path.write_bytes(b"#" * (config_module.CONFIG_FILE_SIZE_BYTES_MAX + 1))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.code == "config_unreadable"
    assert "larger than" in str(caught.value)


def test_too_many_peers_is_refused(tmp_path):
    peers = ", ".join('{ url = "http://127.0.0.1:1" }' for _ in range(1025))
    error = error_of(tmp_path, f"[network]\npeers = [{peers}]\n")
    assert error.code == "config_out_of_range"
    assert error.key_path == "[network].peers"


def test_config_from_python_value_is_frozen():
    config = NodeConfig()
    with pytest.raises(AttributeError):
        config.api.port = 1  # type: ignore[misc]


# --- mapping onto the transport ------------------------------------------------------------


def test_transport_config_from_defaults_matches_transport_defaults_on_shared_keys(tmp_path):
    mapped = transport_config(load_config(write(tmp_path, "")))
    defaults = TransportConfig()
    assert isinstance(mapped, TransportConfig)
    assert mapped.ice_servers == ()
    assert mapped.ice_host_addresses == ("127.0.0.1",)
    assert mapped.public_url == "http://127.0.0.1:7000"
    for name in (
        "heartbeat_interval_s",
        "heartbeat_dead_after_s",
        "connect_timeout_s",
        "reconnect_backoff_initial_s",
        "reconnect_backoff_max_s",
        "reconnect_attempts_max",
        "turn_credential_ttl_s",
        "ice_transport_policy",
        "peers_max",
    ):
        assert getattr(mapped, name) == getattr(defaults, name), name


def test_transport_config_carries_turn_relay_and_servers(tmp_path):
    config = load_config(
        write(
            tmp_path,
            """
[api]
host = "::1"
port = 7005
[network]
ice_host_addresses = []
turn_secret = "s3cret"
turn_urls = ["turn:127.0.0.1:3478?transport=udp"]
ice_transport_policy = "relay"
ice_servers = [
    { urls = ["stun:127.0.0.1:3478"] },
    { urls = "turns:127.0.0.1:5349", username = "u", credential = "p" },
]
heartbeat_interval_s = 1.0
heartbeat_dead_after_s = 5.0
[sync]
peers_max = 12
gossip_fanout = 3
""",
        )
    )
    mapped = transport_config(config)
    assert mapped.turn_secret == "s3cret"
    assert mapped.turn_urls == ("turn:127.0.0.1:3478?transport=udp",)
    assert mapped.ice_transport_policy == "relay"
    assert mapped.ice_host_addresses is None
    assert [server.urls for server in mapped.ice_servers] == [
        ("stun:127.0.0.1:3478",),
        ("turns:127.0.0.1:5349",),
    ]
    assert (mapped.ice_servers[1].username, mapped.ice_servers[1].credential) == ("u", "p")
    assert (mapped.heartbeat_interval_s, mapped.heartbeat_dead_after_s) == (1.0, 5.0)
    assert mapped.peers_max == 12
    assert mapped.public_url == "http://[::1]:7005"


def test_public_url_explicit_or_absent_for_wildcard_host(tmp_path):
    wildcard = parse_config_text('[api]\nhost = "0.0.0.0"\n', tmp_path)
    assert transport_config(wildcard).public_url is None
    explicit = parse_config_text(
        '[api]\nhost = "0.0.0.0"\n[network]\npublic_url = "https://node.example:443"\n', tmp_path
    )
    assert transport_config(explicit).public_url == "https://node.example:443"


# --- the systemd unit ----------------------------------------------------------------------


def test_systemd_unit_runs_hardened_as_the_swarmd_user():
    lines = (REPO / "deploy" / "swarmd.service").read_text().splitlines()
    directives = {}
    for line in lines:
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            directives.setdefault(key, []).append(value)
    assert directives["User"] == ["swarmd"]
    assert directives["ExecStart"] == ["/usr/local/bin/swarmd run --home /var/lib/swarmd"]
    assert directives["Restart"] == ["on-failure"]
    assert directives["ReadWritePaths"] == ["/var/lib/swarmd"]
    for key, expected in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "CapabilityBoundingSet": "",
    }.items():
        assert directives[key] == [expected], key
    assert int(directives["LimitNOFILE"][0]) >= 4 * limits.PEERS_MAX


def test_eager_relay_fanout_above_gossip_fanout_is_refused(tmp_path):
    text = "[sync]\ngossip_fanout = 2\neager_relay_fanout = 3\n"
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    assert caught.value.key_path == "[sync].eager_relay_fanout"


# --- snapshots, bundles kept, state sync -------------------------------------------------------


def test_snapshot_keys_default_to_the_core_and_store_defaults_and_reach_the_core(tmp_path):
    from swarmd.node.runtime.restore import core_config
    from swarmd.protocol.node_core import SNAPSHOT_INTERVAL_CHECKPOINTS_DEFAULT, NodeCoreConfig
    from swarmd.storage.api import SNAPSHOTS_KEPT_DEFAULT

    defaults = load_config(write(tmp_path, ""))
    assert defaults.consensus.snapshot_interval == SNAPSHOT_INTERVAL_CHECKPOINTS_DEFAULT
    assert defaults.sync.bundles_kept == BUNDLES_KEPT_MAX == NodeCoreConfig().bundles_kept
    assert defaults.storage.snapshots_kept == SNAPSHOTS_KEPT_DEFAULT == 2
    text = "[consensus]\nsnapshot_interval = 3\n[sync]\nbundles_kept = 5\n[storage]\n"
    config = load_config(write(tmp_path, text + "snapshots_kept = 4\n"))
    core = core_config(config)
    assert (core.snapshot_interval, core.bundles_kept) == (3, 5)
    assert config.storage.snapshots_kept == 4
    # 0 turns snapshots off, and then any bundles_kept goes.
    off = load_config(
        write(tmp_path, "[consensus]\nsnapshot_interval = 0\n[sync]\nbundles_kept = 1\n")
    )
    assert core_config(off).snapshot_interval == 0


@pytest.mark.parametrize(
    ("text", "code", "key_path"),
    [
        (
            "[consensus]\nsnapshot_interval = -1\n",
            "config_out_of_range",
            "[consensus].snapshot_interval",
        ),
        (
            f"[consensus]\nsnapshot_interval = {config_module.SNAPSHOT_INTERVAL_MAX + 1}\n",
            "config_out_of_range",
            "[consensus].snapshot_interval",
        ),
        (
            '[consensus]\nsnapshot_interval = "64"\n',
            "config_wrong_type",
            "[consensus].snapshot_interval",
        ),
        ("[storage]\nsnapshots_kept = 0\n", "config_out_of_range", "[storage].snapshots_kept"),
        (
            f"[storage]\nsnapshots_kept = {SNAPSHOTS_KEPT_MAX + 1}\n",
            "config_out_of_range",
            "[storage].snapshots_kept",
        ),
        ("[storage]\nsnapshots_kept = 2.5\n", "config_wrong_type", "[storage].snapshots_kept"),
        ("[storage]\nkept = 2\n", "config_unknown_key", "[storage].kept"),
        ("[sync]\nbundles_kept = 0\n", "config_out_of_range", "[sync].bundles_kept"),
        (
            f"[sync]\nbundles_kept = {BUNDLES_KEPT_MAX + 1}\n",
            "config_out_of_range",
            "[sync].bundles_kept",
        ),
        # The bundles after the newest snapshot must still be served to a peer restored from it.
        (
            "[consensus]\nsnapshot_interval = 8\n[sync]\nbundles_kept = 7\n",
            "config_out_of_range",
            "[sync].bundles_kept",
        ),
    ],
)
def test_bad_snapshot_keys_raise_typed_errors_naming_the_key(tmp_path, text, code, key_path):
    error = error_of(tmp_path, text)
    assert error.code == code
    assert error.key_path == key_path
    assert key_path in str(error)
