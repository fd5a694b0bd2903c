"""The daemon's configuration: a TOML file parsed into a frozen `NodeConfig` tree.

One schema drives everything: each section is a frozen dataclass whose fields carry their
default, their documentation and their parser (`setting(...)`). `load_config` parses and
validates a file; `default_config_text` writes a complete, commented file with every key (what
`swarmd init` writes and what `deploy/node.example.toml` is); `transport_config` maps the
`[network]` and `[sync]` sections onto `node/transport`'s `TransportConfig`.

Bad input never gets half-applied: unknown keys, wrong types, out-of-range values and
unreadable or invalid TOML raise a `ConfigError` subclass with a stable `code` and a message
that names the key path, e.g. ``[api].port: must be 1..65535``.

Relative paths resolve against `[node].home`; a relative home resolves against the directory
of the config file, and the default home is that directory.

Why this file is over 800 lines: it is the schema itself, one declaration per setting with its
default, documentation, bound and parser (about 100 settings in 12 sections), and the writer of
the commented example file reads that same schema. Splitting the sections across modules would
scatter one table without making any function longer or shorter.
"""

# `setting(...)` returns a `dataclasses.field`, which ruff cannot see through (RUF009).
# ruff: noqa: RUF009

from __future__ import annotations

import dataclasses
import ipaddress
import math
import re
import textwrap
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from swarmd.protocol import limits
from swarmd.protocol.crypto import account_id_text, parse_account_id
from swarmd.protocol.errors import InvalidAccountIdError, RemoteProtocolError
from swarmd.protocol.node_core import BUNDLES_KEPT_MAX, SNAPSHOT_INTERVAL_CHECKPOINTS_DEFAULT
from swarmd.protocol.peering import MeshTargets
from swarmd.storage.api import SNAPSHOTS_KEPT_DEFAULT, SNAPSHOTS_KEPT_MAX

from ..transport.base import IceServerConfig, TransportConfig

# --- bounds of the config file itself ------------------------------------------------------

#: A config file is a few KiB; refusing anything above 1 MiB means a path that points at a
#: log or a database by mistake is reported instead of read into memory.
CONFIG_FILE_SIZE_BYTES_MAX = 1024 * 1024
#: Static peers and ICE servers listed in the file; far above any real swarm's bootstrap list
#: and small enough that validation stays instant.
PEERS_CONFIGURED_MAX = 1024
ICE_SERVERS_MAX = 32
#: Host addresses for ICE host candidates (one per interface at most).
ICE_HOST_ADDRESSES_MAX = 64

# --- bounds of individual settings ---------------------------------------------------------

#: A submit body carries one op envelope (at most OP_ENVELOPE_SIZE_BYTES_MAX bytes) encoded as
#: base64 or hex inside JSON, so the request limit must leave room for twice that plus fields.
REQUEST_SIZE_BYTES_MIN = 2 * limits.OP_ENVELOPE_SIZE_BYTES_MAX + 1024
#: Bodies above 16 MiB are never legitimate and would let one client hold that much memory.
REQUEST_SIZE_BYTES_MAX = 16 * 1024 * 1024
#: Rate limits: at most a million requests/s per client, far above what one process serves.
RATE_LIMIT_PER_S_MAX = 1_000_000.0
RATE_LIMIT_BURST_MAX = 10_000_000
#: Each WebSocket client holds a file descriptor and a bounded send queue.
WEBSOCKET_CLIENTS_MAX = 65_536
#: Peer slots: the node core enforces limits.PEERS_MAX (its own cap, council slots included),
#: so the file accepts exactly what the node can run with (it used to accept up to 1024, and
#: the node then refused to start above 64).
#: Durations: below 10 ms a timer fires faster than a loopback round trip; above a day nothing
#: in the daemon should wait.
DURATION_S_MIN = 0.01
DURATION_S_MAX = 86_400.0
#: Pending pool: up to 20x the protocol default (50k ops at ~1 KiB each is ~50 MiB).
PENDING_OPS_CEILING = 20 * limits.PENDING_OPS_MAX
#: A checkpoint is cut after at most this many unfinalized ops (a cut's heads are bounded
#: separately by limits.CUT_HEADS_MAX: the proposer truncates them).
CHECKPOINT_OPS_TRIGGER_MAX = limits.CHECKPOINT_OPS_TRIGGER_MAX
#: TURN REST credentials valid at least a minute (clock skew) and at most a week.
TURN_CREDENTIAL_TTL_S_MIN = 60
TURN_CREDENTIAL_TTL_S_MAX = 7 * 86_400
RECONNECT_ATTEMPTS_MAX = 100_000
#: A snapshot at most every million final heights (at one checkpoint a second, ~11 days);
#: a larger interval would make restart replay and state sync fall back to the whole log.
SNAPSHOT_INTERVAL_MAX = 1_000_000

SECTION_NAMES = (
    "node",
    "api",
    "admin",
    "network",
    "sync",
    "consensus",
    "storage",
    "limits",
    "log",
    "metrics",
    "onboarding",
)
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
LOG_FORMATS = ("json", "console")
TRANSPORT_NAMES = ("webrtc", "websocket")
SYNCHRONOUS_MODES = ("FULL", "NORMAL")
PEER_URL_SCHEMES = ("http://", "https://")
ICE_URL_SCHEMES = ("stun:", "turn:", "turns:")

_TRANSPORT_DEFAULTS = TransportConfig()


# --- errors --------------------------------------------------------------------------------


class ConfigError(RemoteProtocolError):
    """A config file (or `default_config_text` override) that cannot be used as it is.

    `key_path` names the offending key (``[api].port``) or is empty when the whole file is bad.
    """

    code = "config_invalid"

    def __init__(self, message: str, *, key_path: str = "", code: str | None = None) -> None:
        super().__init__(f"{key_path}: {message}" if key_path else message, code=code)
        self.key_path = key_path


class ConfigUnreadableError(ConfigError):
    code = "config_unreadable"


class ConfigSyntaxError(ConfigError):
    code = "config_syntax"


class ConfigUnknownKeyError(ConfigError):
    code = "config_unknown_key"


class ConfigMissingKeyError(ConfigError):
    code = "config_missing_key"


class ConfigTypeError(ConfigError):
    code = "config_wrong_type"


class ConfigRangeError(ConfigError):
    code = "config_out_of_range"


# --- value parsers -------------------------------------------------------------------------

Parser = Callable[[object, str], Any]


def _type_name(value: object) -> str:
    names = {bool: "boolean", int: "integer", float: "float", str: "string", list: "array"}
    return "table" if isinstance(value, dict) else names.get(type(value), type(value).__name__)


def integer(low: int, high: int) -> Parser:
    def parse(value: object, key_path: str) -> int:
        # bool is a subclass of int in Python; `port = true` is a type error, not port 1.
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigTypeError(f"must be an integer, not {_type_name(value)}", key_path=key_path)
        if not low <= value <= high:
            raise ConfigRangeError(f"must be {low}..{high}", key_path=key_path)
        return value

    return parse


def number(low: float, high: float) -> Parser:
    def parse(value: object, key_path: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigTypeError(f"must be a number, not {_type_name(value)}", key_path=key_path)
        if not math.isfinite(value) or not low <= value <= high:
            raise ConfigRangeError(f"must be {low:g}..{high:g}", key_path=key_path)
        return float(value)

    return parse


def boolean() -> Parser:
    def parse(value: object, key_path: str) -> bool:
        if not isinstance(value, bool):
            raise ConfigTypeError(
                f"must be true or false, not {_type_name(value)}", key_path=key_path
            )
        return value

    return parse


def text(pattern: str | None = None, description: str = "") -> Parser:
    """A non-empty string without control characters, optionally matching `pattern`."""

    def parse(value: object, key_path: str) -> str:
        if not isinstance(value, str):
            raise ConfigTypeError(f"must be a string, not {_type_name(value)}", key_path=key_path)
        if not value or any(ord(char) < 0x20 or ord(char) == 0x7F for char in value):
            raise ConfigRangeError(
                "must be non-empty, without control characters", key_path=key_path
            )
        if pattern is not None and re.fullmatch(pattern, value) is None:
            raise ConfigRangeError(f"must be {description}", key_path=key_path)
        return value

    return parse


def choice(*options: str) -> Parser:
    def parse(value: object, key_path: str) -> str:
        if not isinstance(value, str):
            raise ConfigTypeError(f"must be a string, not {_type_name(value)}", key_path=key_path)
        if value not in options:
            listed = ", ".join(f'"{option}"' for option in options)
            raise ConfigRangeError(f"must be one of {listed}", key_path=key_path)
        return value

    return parse


class _PathParser:
    """Marks path settings, which resolve against `[node].home` after parsing."""

    def __call__(self, value: object, key_path: str) -> Path:
        return Path(text()(value, key_path))


def path() -> Parser:
    return _PathParser()


def url(schemes: tuple[str, ...]) -> Parser:
    def parse(value: object, key_path: str) -> str:
        checked: str = text()(value, key_path)
        if not checked.startswith(schemes) or " " in checked:
            listed = ", ".join(schemes)
            raise ConfigRangeError(f"must be a URL starting with {listed}", key_path=key_path)
        return checked

    return parse


def ip_address() -> Parser:
    def parse(value: object, key_path: str) -> str:
        checked: str = text()(value, key_path)
        try:
            ipaddress.ip_address(checked)
        except ValueError:
            raise ConfigRangeError("must be an IP address", key_path=key_path) from None
        return checked

    return parse


def host() -> Parser:
    """An IP address or a DNS name (the address a server binds)."""
    label = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    name = rf"{label}(\.{label})*"

    def parse(value: object, key_path: str) -> str:
        checked: str = text()(value, key_path)
        try:
            ipaddress.ip_address(checked)
        except ValueError:
            if re.fullmatch(name, checked) is None or len(checked) > 253:
                raise ConfigRangeError(
                    "must be an IP address or host name", key_path=key_path
                ) from None
        return checked

    return parse


def optional(parser: Parser) -> Parser:
    """A key that may be absent (None); TOML has no null, so absent is the only way."""

    def parse(value: object, key_path: str) -> Any:
        return None if value is None else parser(value, key_path)

    parse.inner = parser  # type: ignore[attr-defined]
    return parse


def array(parser: Parser, items_max: int) -> Parser:
    def parse(value: object, key_path: str) -> tuple[Any, ...]:
        if not isinstance(value, list):
            raise ConfigTypeError(f"must be an array, not {_type_name(value)}", key_path=key_path)
        if len(value) > items_max:
            raise ConfigRangeError(f"must have at most {items_max} entries", key_path=key_path)
        return tuple(parser(item, f"{key_path}[{index}]") for index, item in enumerate(value))

    return parse


def url_list(schemes: tuple[str, ...], items_max: int) -> Parser:
    """One URL or an array of URLs (as RTCIceServer takes them)."""

    def parse(value: object, key_path: str) -> tuple[str, ...]:
        if isinstance(value, str):
            return (url(schemes)(value, key_path),)
        urls: tuple[str, ...] = array(url(schemes), items_max)(value, key_path)
        return urls

    return parse


def _table(value: object, key_path: str, allowed: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigTypeError(f"must be a table, not {_type_name(value)}", key_path=key_path)
    for key in value:
        if key not in allowed:
            raise ConfigUnknownKeyError(
                f"unknown key (known: {', '.join(allowed)})", key_path=f"{key_path}.{key}"
            )
    return value


# --- list entries --------------------------------------------------------------------------


@dataclass(frozen=True)
class PeerEntry:
    """A peer to dial at start: its base HTTP URL, optionally its node id and transport."""

    url: str
    #: The expected 32-byte node key; None accepts whichever node answers at `url`.
    node_id: bytes | None = None
    #: None uses `[network].transport`.
    transport: str | None = None


def _parse_node_id(value: object, key_path: str) -> bytes:
    try:
        return parse_account_id(text()(value, key_path))
    except InvalidAccountIdError as exc:
        raise ConfigRangeError(f"not a node id: {exc.message}", key_path=key_path) from None


def peer_entry(value: object, key_path: str) -> PeerEntry:
    table = _table(value, key_path, ("url", "node_id", "transport"))
    if "url" not in table:
        raise ConfigMissingKeyError("is required", key_path=f"{key_path}.url")
    node_id = table.get("node_id")
    transport = table.get("transport")
    return PeerEntry(
        url=url(PEER_URL_SCHEMES)(table["url"], f"{key_path}.url"),
        node_id=None if node_id is None else _parse_node_id(node_id, f"{key_path}.node_id"),
        transport=None
        if transport is None
        else choice(*TRANSPORT_NAMES)(transport, f"{key_path}.transport"),
    )


def ice_server_entry(value: object, key_path: str) -> IceServerConfig:
    table = _table(value, key_path, ("urls", "username", "credential"))
    if "urls" not in table:
        raise ConfigMissingKeyError("is required", key_path=f"{key_path}.urls")
    username = optional(text())(table.get("username"), f"{key_path}.username")
    credential = optional(text())(table.get("credential"), f"{key_path}.credential")
    if (username is None) != (credential is None):
        raise ConfigMissingKeyError(
            "username and credential go together", key_path=f"{key_path}.credential"
        )
    return IceServerConfig(
        urls=url_list(ICE_URL_SCHEMES, ICE_SERVERS_MAX)(table["urls"], f"{key_path}.urls"),
        username=username,
        credential=credential,
    )


# --- the schema ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """What the schema knows about one key besides its default."""

    doc: str
    parser: Parser
    #: Shown as a commented-out line when the key is absent by default (optional keys) or as an
    #: extra example line for arrays of tables.
    example: object = None


def setting(default: object, doc: str, parser: Parser, example: object = None) -> Any:
    """A dataclass field carrying its documentation and parser (see `Setting`)."""
    metadata = {"setting": Setting(" ".join(doc.split()), parser, example)}
    if isinstance(default, list | dict):
        raise TypeError("use a tuple for array defaults (frozen config)")
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class NodeSection:
    home: Path = setting(
        Path("."),
        """Directory of the node's files. Other relative paths in this file resolve against it;
        a relative home resolves against the directory of this config file.""",
        path(),
    )
    genesis_file: Path = setting(
        Path("genesis.json"), "The network's genesis file (council keys, network id).", path()
    )
    key_file: Path = setting(
        Path("node.key"), "This node's Ed25519 private key (mode 0600).", path()
    )
    data_file: Path = setting(
        Path("swarmd.sqlite3"),
        "The SQLite database (WAL mode; the -wal and -shm files sit beside it).",
        path(),
    )
    synchronous: str = setting(
        "FULL",
        """SQLite synchronous setting. "FULL" fsyncs every commit, so an acknowledged op
        survives power loss; "NORMAL" survives a process crash (kill -9) but may lose the last
        commits on power loss.""",
        choice(*SYNCHRONOUS_MODES),
    )


@dataclass(frozen=True)
class ApiSection:
    host: str = setting(
        "127.0.0.1",
        """Address the public HTTP API (and peer signaling) listens on; "0.0.0.0" or "::" for
        every interface.""",
        host(),
    )
    port: int = setting(7000, "TCP port of the public HTTP API.", integer(1, 65535))
    request_size_bytes_max: int = setting(
        65536,
        "Largest accepted HTTP request body; larger ones get 413.",
        integer(REQUEST_SIZE_BYTES_MIN, REQUEST_SIZE_BYTES_MAX),
    )
    rate_limit_per_s: float = setting(
        200.0,
        "Requests per second allowed per client IP address (token bucket refill rate).",
        number(0.1, RATE_LIMIT_PER_S_MAX),
    )
    rate_limit_burst: int = setting(
        400,
        "Requests a client IP may send at once above the rate (token bucket size).",
        integer(1, RATE_LIMIT_BURST_MAX),
    )
    websocket_clients_max: int = setting(
        256,
        "Concurrent WebSocket event-stream clients; more are refused with 503.",
        integer(1, WEBSOCKET_CLIENTS_MAX),
    )


@dataclass(frozen=True)
class AdminSection:
    unix_socket: Path | None = setting(
        None,
        """Unix socket of the admin interface (mode changes, checkpoints, rollback). Absent by
        default; when set, the admin interface listens there too.""",
        optional(path()),
        example="admin.sock",
    )
    host: str = setting(
        "127.0.0.1",
        "Loopback address of the TCP admin interface; only loopback addresses are accepted.",
        host(),
    )
    port: int = setting(
        7100,
        "TCP port of the admin interface on `host`; 0 disables TCP (use unix_socket).",
        integer(0, 65535),
    )
    cookie_file: Path = setting(
        Path("admin.cookie"),
        """File holding the admin token, rewritten (mode 0600) at every start; admin clients
        read it.""",
        path(),
    )


@dataclass(frozen=True)
class NetworkSection:
    transport: str = setting(
        "webrtc",
        """Transport used to dial peers: "webrtc" (data channels, works through NAT with TURN)
        or "websocket" (directly reachable peers only). Both are always accepted inbound.""",
        choice(*TRANSPORT_NAMES),
    )
    public_url: str | None = setting(
        None,
        """Base URL peers use to reach this node's HTTP server (advertised in signaling).
        Absent: derived from [api].host and [api].port unless host is a wildcard address.""",
        optional(url(PEER_URL_SCHEMES)),
        example="http://192.0.2.10:7000",
    )
    peers: tuple[PeerEntry, ...] = setting(
        (),
        """Peers dialed at start, each { url = base URL, node_id = expected node id (optional),
        transport = "webrtc" | "websocket" (optional) }.""",
        array(peer_entry, PEERS_CONFIGURED_MAX),
        example=({"url": "http://127.0.0.1:7001"},),
    )
    ice_host_addresses: tuple[str, ...] = setting(
        ("127.0.0.1",),
        """Addresses for ICE host candidates. An empty array uses every interface except
        loopback; the default suits a single-host devnet.""",
        array(ip_address(), ICE_HOST_ADDRESSES_MAX),
    )
    ice_servers: tuple[IceServerConfig, ...] = setting(
        (),
        """Static STUN/TURN servers, each { urls = "turn:host:3478" or an array, username,
        credential }. Empty by default: swarmd never contacts a public STUN server.""",
        array(ice_server_entry, ICE_SERVERS_MAX),
        example=({"urls": "turn:relay.example.net:3478", "username": "u", "credential": "p"},),
    )
    turn_secret: str | None = setting(
        None,
        """coturn use-auth-secret shared secret: with turn_urls, each connection derives fresh
        TURN REST credentials. Keep this file mode 0600 when set.""",
        optional(text()),
        example="replace-with-the-relay-secret",
    )
    turn_urls: tuple[str, ...] = setting(
        (),
        'TURN URLs used with turn_secret (e.g. "turn:relay.example.net:3478").',
        array(url(ICE_URL_SCHEMES), ICE_SERVERS_MAX),
    )
    turn_credential_ttl_s: int = setting(
        _TRANSPORT_DEFAULTS.turn_credential_ttl_s,
        "Validity of derived TURN credentials, in seconds.",
        integer(TURN_CREDENTIAL_TTL_S_MIN, TURN_CREDENTIAL_TTL_S_MAX),
    )
    ice_transport_policy: str = setting(
        _TRANSPORT_DEFAULTS.ice_transport_policy,
        """"all" gathers host, reflexive and relay candidates; "relay" sends all traffic
        through TURN (needs turn_urls or a turn: server in ice_servers).""",
        choice("all", "relay"),
    )
    connect_timeout_s: float = setting(
        _TRANSPORT_DEFAULTS.connect_timeout_s,
        "Whole connect budget (signaling, ICE, DTLS, SCTP) for one peer.",
        number(0.1, 600.0),
    )
    heartbeat_interval_s: float = setting(
        _TRANSPORT_DEFAULTS.heartbeat_interval_s,
        "Interval of the application heartbeat on each peer link.",
        number(DURATION_S_MIN, 60.0),
    )
    heartbeat_dead_after_s: float = setting(
        _TRANSPORT_DEFAULTS.heartbeat_dead_after_s,
        "A peer silent this long is disconnected; at least 3 heartbeat intervals.",
        number(DURATION_S_MIN, 600.0),
    )
    reconnect_backoff_initial_s: float = setting(
        _TRANSPORT_DEFAULTS.reconnect_backoff_initial_s,
        "First delay before re-dialing a lost peer; doubled after each failure.",
        number(DURATION_S_MIN, 600.0),
    )
    reconnect_backoff_max_s: float = setting(
        _TRANSPORT_DEFAULTS.reconnect_backoff_max_s,
        "Largest delay between re-dial attempts.",
        number(DURATION_S_MIN, 3600.0),
    )
    reconnect_attempts_max: int = setting(
        _TRANSPORT_DEFAULTS.reconnect_attempts_max,
        "Re-dial attempts before giving up on a lost peer.",
        integer(1, RECONNECT_ATTEMPTS_MAX),
    )
    sentry: bool = setting(
        False,
        """Accept links only from the node ids listed in [network].peers (each entry then
        needs its node_id): a council validator behind its own sentry nodes.""",
        boolean(),
    )
    exchange_interval_s: float = setting(
        30.0,
        """Peer exchange: every this many seconds fetch address records from connected and
        configured peers (GET /v1/peers/records) and dial learned ones while fewer than
        outbound_target outbound links are up. 0 turns peer exchange off.""",
        number(0.0, DURATION_S_MAX),
    )
    outbound_target: int | None = setting(
        None,
        """Outbound links the node dials learned addresses up to (links between council
        members and [network].peers it dials anyway are not limited by it; council links do
        not count). Absent: peers_target if set, else 8 (MESH_OUTBOUND_TARGET). 0: dial only
        [network].peers.""",
        optional(integer(0, limits.PEERS_MAX)),
        example=limits.MESH_OUTBOUND_TARGET,
    )
    peers_target: int | None = setting(
        None,
        """Deprecated: the old name of outbound_target (a file written before it still
        loads). Setting both to different values is refused.""",
        optional(integer(0, limits.PEERS_MAX)),
        example=limits.MESH_OUTBOUND_TARGET,
    )
    inbound_max: int = setting(
        limits.MESH_INBOUND_MAX,
        """Inbound links accepted from non-council peers; beyond it a dialing node is refused
        with inbound_max. Links between council members never count (reserved slots);
        [sync].peers_max still bounds all links.""",
        integer(0, limits.PEERS_MAX),
    )


@dataclass(frozen=True)
class SyncSection:
    delta_sync_interval_s: float = setting(
        limits.DELTA_SYNC_INTERVAL_S,
        "Cadence of delta sync (finalized heights, then set reconciliation) with each peer.",
        number(0.05, 3600.0),
    )
    gossip_fanout: int = setting(
        limits.GOSSIP_FANOUT,
        "Peers each new local op is pushed to in full; the other peers get its id (ANNOUNCE) "
        "and fetch it (docs/PROTOCOL.md section 6).",
        integer(1, limits.PEERS_MAX),
    )
    eager_relay_fanout: int = setting(
        0,
        "Peers an op received from a peer is pushed to in full (at most gossip_fanout); the "
        "others get its id. 0 suits a full mesh (the council); a sparse mesh trades bandwidth "
        "for one round trip less per hop.",
        integer(0, limits.PEERS_MAX),
    )
    peers_max: int = setting(
        limits.PEERS_MAX,
        """Connected peers at most (the node core's cap, PEERS_MAX); further links are refused.
        On a council member this includes one reserved slot per other member.""",
        integer(1, limits.PEERS_MAX),
    )
    serve_bytes_per_s_peer: int = setting(
        limits.SERVE_BYTES_PER_S_PEER,
        """Bulk sync served to one peer (snapshot chunks, catch-up bundles, old final ops read
        from the store), bytes per second; an answer over the rate waits (its request is
        deferred, not dropped).""",
        integer(limits.SERVE_RATE_BYTES_CONFIG_MIN, limits.SERVE_RATE_BYTES_CONFIG_MAX),
    )
    serve_burst_bytes_peer: int = setting(
        limits.SERVE_BURST_BYTES_PER_PEER,
        "Bulk sync bytes one peer may get at once (the per-peer bucket's size).",
        integer(limits.SERVE_RATE_BYTES_CONFIG_MIN, limits.SERVE_RATE_BYTES_CONFIG_MAX),
    )
    serve_bytes_per_s_total: int = setting(
        limits.SERVE_BYTES_PER_S_TOTAL,
        "Bulk sync served to all peers together, bytes per second; at least the per-peer rate.",
        integer(limits.SERVE_RATE_BYTES_CONFIG_MIN, limits.SERVE_RATE_BYTES_CONFIG_MAX),
    )
    serve_burst_bytes_total: int = setting(
        limits.SERVE_BURST_BYTES_TOTAL,
        "Bulk sync bytes all peers together may get at once; at least the per-peer burst.",
        integer(limits.SERVE_RATE_BYTES_CONFIG_MIN, limits.SERVE_RATE_BYTES_CONFIG_MAX),
    )
    bundles_kept: int = setting(
        BUNDLES_KEPT_MAX,
        """Newest checkpoint bundles kept in memory to serve lagging peers. A peer further
        behind catches up by state sync from a snapshot instead, so this must be at least
        [consensus].snapshot_interval (the bundles after the newest snapshot).""",
        integer(1, BUNDLES_KEPT_MAX),
    )


@dataclass(frozen=True)
class ConsensusSection:
    checkpoint_interval_s: float = setting(
        limits.CHECKPOINT_INTERVAL_S,
        "A checkpoint is proposed this long after the previous one when ops are unfinalized.",
        number(0.05, 3600.0),
    )
    checkpoint_ops_trigger: int = setting(
        limits.CHECKPOINT_OPS_TRIGGER,
        "A checkpoint is proposed at once when this many ops are unfinalized.",
        integer(1, CHECKPOINT_OPS_TRIGGER_MAX),
    )
    snapshot_interval: int = setting(
        SNAPSHOT_INTERVAL_CHECKPOINTS_DEFAULT,
        """A state snapshot is made at every final height that is a multiple of this and
        stored with its checkpoint: a restart replays only the ops after it, and lagging peers
        can state-sync from it. 0 makes none (restart replays the whole log).""",
        integer(0, SNAPSHOT_INTERVAL_MAX),
    )
    timeout_propose_s: float = setting(
        limits.CONSENSUS_TIMEOUT_PROPOSE_S,
        "Tendermint propose timeout of round 0 (grows by timeout_delta_s per round).",
        number(DURATION_S_MIN, 600.0),
    )
    timeout_prevote_s: float = setting(
        limits.CONSENSUS_TIMEOUT_PREVOTE_S,
        "Tendermint prevote timeout of round 0.",
        number(DURATION_S_MIN, 600.0),
    )
    timeout_precommit_s: float = setting(
        limits.CONSENSUS_TIMEOUT_PRECOMMIT_S,
        "Tendermint precommit timeout of round 0.",
        number(DURATION_S_MIN, 600.0),
    )
    timeout_delta_s: float = setting(
        limits.CONSENSUS_TIMEOUT_DELTA_S,
        "Added to each timeout per round, so that a slow network eventually decides.",
        number(0.0, 600.0),
    )


@dataclass(frozen=True)
class StorageSection:
    snapshots_kept: int = setting(
        SNAPSHOTS_KEPT_DEFAULT,
        """State snapshots kept in the database; storing a new one deletes the older ones. A
        restart restores from the newest (or replays the whole log when it is unreadable).""",
        integer(1, SNAPSHOTS_KEPT_MAX),
    )
    retain_heights: int = setting(
        0,
        """Final heights whose op bodies and checkpoint bundles are kept on disk; older ones
        are pruned after each checkpoint (at most 1000 rows a pass), never above the oldest
        snapshot a restart may use (snapshots keep the state). 0 = archive: keep everything.
        Council nodes run archive (audit, rollback certificates, full replays); full nodes
        may prune. A pruned op answers `pruned` in the API. The bundles served to lagging
        peers are then at most max(N, [consensus].snapshot_interval): a peer further behind
        catches up by state sync.""",
        integer(0, 2**31 - 1),
    )


@dataclass(frozen=True)
class LimitsSection:
    pending_ops_max: int = setting(
        limits.PENDING_OPS_MAX,
        "Ops waiting for a missing prev or dep; the oldest-received is evicted beyond it.",
        integer(1, PENDING_OPS_CEILING),
    )
    pending_ops_per_author_max: int = setting(
        limits.PENDING_OPS_PER_AUTHOR_MAX,
        "Pending ops one author may hold, so one author cannot fill the pool.",
        integer(1, PENDING_OPS_CEILING),
    )
    pending_op_ttl_s: float = setting(
        float(limits.PENDING_OP_TTL_S),
        "A pending op whose parents have not arrived after this long is dropped.",
        number(1.0, DURATION_S_MAX),
    )


@dataclass(frozen=True)
class LogSection:
    level: str = setting(
        "info", "Lowest level written: " + ", ".join(LOG_LEVELS) + ".", choice(*LOG_LEVELS)
    )
    format: str = setting(
        "json",
        """"json": one JSON object per line (timestamp, level, event, node_id, ...), for log
        shippers; "console": aligned text for a terminal.""",
        choice(*LOG_FORMATS),
    )


@dataclass(frozen=True)
class MetricsSection:
    enabled: bool = setting(True, "Serve Prometheus metrics on the public API server.", boolean())
    path: str = setting(
        "/metrics",
        "HTTP path of the metrics endpoint.",
        text(r"/[A-Za-z0-9._~/-]*", 'an absolute URL path such as "/metrics"'),
    )


#: Largest puzzle cost (2**32 hashes is hours in a browser) and signup rate accepted.
ONBOARDING_POW_BITS_MAX = 32
ONBOARDING_SIGNUPS_PER_HOUR_MAX = 1_000_000


@dataclass(frozen=True)
class OnboardingSection:
    enabled: bool = setting(
        False,
        """Grant the signup reward to new accounts through POST /v1/onboarding/signup (a
        council member's node only; docs/OPERATIONS.md says how to run it safely). An
        onboarding.toml in the home, when present, overrides this section while the node
        runs (a live switch: it is read again whenever it changes).""",
        boolean(),
    )
    pow_bits: int = setting(
        16,
        "Proof of work per signup without an invite code: 2**pow_bits hashes on average.",
        integer(0, ONBOARDING_POW_BITS_MAX),
    )
    signups_per_address_per_hour: int = setting(
        5, "Signups per client IP address and hour.", integer(1, ONBOARDING_SIGNUPS_PER_HOUR_MAX)
    )
    signups_per_hour: int = setting(
        600,
        "Signups this node grants per hour in all.",
        integer(1, ONBOARDING_SIGNUPS_PER_HOUR_MAX),
    )
    require_invite: bool = setting(
        False,
        """Refuse signups without a one-time invite code (`swarmd council invite`); when false
        an invite code replaces the proof of work.""",
        boolean(),
    )
    invite_codes_file: Path = setting(
        Path("invites.txt"),
        """The hashes of this node's invite codes, one a line (`swarmd council invite` appends
        them); used codes are appended to the same path plus ".used".""",
        path(),
    )
    endorse_handles: bool = setting(
        False,
        """A council node endorses every handle claim whose handle is free in its final state
        and has no other open claim; contested handles keep the council's arbitration.""",
        boolean(),
    )


@dataclass(frozen=True)
class NodeConfig:
    """The whole configuration; every path in it is absolute after `load_config`."""

    node: NodeSection = field(default_factory=NodeSection)
    api: ApiSection = field(default_factory=ApiSection)
    admin: AdminSection = field(default_factory=AdminSection)
    network: NetworkSection = field(default_factory=NetworkSection)
    sync: SyncSection = field(default_factory=SyncSection)
    consensus: ConsensusSection = field(default_factory=ConsensusSection)
    storage: StorageSection = field(default_factory=StorageSection)
    limits: LimitsSection = field(default_factory=LimitsSection)
    log: LogSection = field(default_factory=LogSection)
    metrics: MetricsSection = field(default_factory=MetricsSection)
    onboarding: OnboardingSection = field(default_factory=OnboardingSection)


def _section_types() -> dict[str, type]:
    return {item.name: item.default_factory for item in dataclasses.fields(NodeConfig)}  # type: ignore[misc]


def settings_of(section_type: type) -> list[tuple[dataclasses.Field[Any], Setting]]:
    return [(item, item.metadata["setting"]) for item in dataclasses.fields(section_type)]


def all_key_paths() -> list[str]:
    """Every key as "[section].key", in file order (docs and tests use it)."""
    return [
        f"[{name}].{item.name}"
        for name, section_type in _section_types().items()
        for item, _ in settings_of(section_type)
    ]


# --- parsing -------------------------------------------------------------------------------


def load_config(path: str | Path) -> NodeConfig:
    """Read, parse and validate the config file at `path` (see the module docstring)."""
    config_path = Path(path)
    try:
        with config_path.open("rb") as file:
            data = file.read(CONFIG_FILE_SIZE_BYTES_MAX + 1)
    except OSError as exc:
        raise ConfigUnreadableError(
            f"cannot read config file {config_path}: {exc.strerror}"
        ) from None
    if len(data) > CONFIG_FILE_SIZE_BYTES_MAX:
        raise ConfigUnreadableError(
            f"config file {config_path} is larger than {CONFIG_FILE_SIZE_BYTES_MAX} bytes"
        )
    try:
        text_value = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigSyntaxError(f"config file {config_path} is not UTF-8") from None
    return parse_config_text(text_value, config_path.parent, source=str(config_path))


def parse_config_text(text_value: str, base_dir: str | Path, source: str = "config") -> NodeConfig:
    """Parse TOML text; a relative `[node].home` resolves against `base_dir`."""
    try:
        document = tomllib.loads(text_value)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigSyntaxError(f"{source} is not valid TOML: {exc}") from None
    return config_from_mapping(document, base_dir)


def config_from_mapping(document: Mapping[str, Any], base_dir: str | Path) -> NodeConfig:
    """Validate an already-parsed TOML document (a dict of sections) into a `NodeConfig`."""
    section_types = _section_types()
    sections: dict[str, Any] = {}
    for name, table in document.items():
        if name not in section_types:
            raise ConfigUnknownKeyError(
                f"unknown section (known: {', '.join(SECTION_NAMES)})", key_path=f"[{name}]"
            )
        if not isinstance(table, dict):
            raise ConfigTypeError(f"must be a table, not {_type_name(table)}", key_path=f"[{name}]")
        sections[name] = _parse_section(name, section_types[name], table)
    config = NodeConfig(**sections)
    config = _resolve_paths(config, Path(base_dir))
    _check_relations(config)
    return config


def _parse_section(name: str, section_type: type, table: Mapping[str, Any]) -> Any:
    known = {item.name: meta for item, meta in settings_of(section_type)}
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in known:
            raise ConfigUnknownKeyError(
                f"unknown key (known in [{name}]: {', '.join(known)})", key_path=f"[{name}].{key}"
            )
        values[key] = known[key].parser(value, f"[{name}].{key}")
    return section_type(**values)


def _is_path_setting(meta: Setting) -> bool:
    parser = getattr(meta.parser, "inner", meta.parser)
    return isinstance(parser, _PathParser)


def _resolve_paths(config: NodeConfig, base_dir: Path) -> NodeConfig:
    """Make every path absolute: home against `base_dir`, the others against home."""
    home = (base_dir / config.node.home).absolute()
    resolved: dict[str, Any] = {}
    for name, _ in _section_types().items():
        section = getattr(config, name)
        changes: dict[str, Path] = {}
        for item, meta in settings_of(type(section)):
            value = getattr(section, item.name)
            if _is_path_setting(meta) and value is not None:
                changes[item.name] = (
                    home if item.name == "home" and name == "node" else home / value
                )
        resolved[name] = dataclasses.replace(section, **changes)
    return NodeConfig(**resolved)


def _check_relations(config: NodeConfig) -> None:
    """Checks that involve more than one key."""
    if config.limits.pending_ops_per_author_max > config.limits.pending_ops_max:
        raise ConfigRangeError(
            "must not exceed [limits].pending_ops_max",
            key_path="[limits].pending_ops_per_author_max",
        )
    if config.sync.gossip_fanout > config.sync.peers_max:
        raise ConfigRangeError("must not exceed [sync].peers_max", key_path="[sync].gossip_fanout")
    if config.sync.eager_relay_fanout > config.sync.gossip_fanout:
        raise ConfigRangeError(
            "must not exceed [sync].gossip_fanout", key_path="[sync].eager_relay_fanout"
        )
    if config.sync.serve_bytes_per_s_total < config.sync.serve_bytes_per_s_peer:
        raise ConfigRangeError(
            "must be at least [sync].serve_bytes_per_s_peer",
            key_path="[sync].serve_bytes_per_s_total",
        )
    if config.sync.serve_burst_bytes_total < config.sync.serve_burst_bytes_peer:
        raise ConfigRangeError(
            "must be at least [sync].serve_burst_bytes_peer",
            key_path="[sync].serve_burst_bytes_total",
        )
    if config.consensus.snapshot_interval > 0 and (
        config.sync.bundles_kept < config.consensus.snapshot_interval
    ):
        raise ConfigRangeError(
            "must be at least [consensus].snapshot_interval (a peer restored from the newest "
            "snapshot fetches the bundles after it)",
            key_path="[sync].bundles_kept",
        )
    if not _is_loopback(config.admin.host):
        raise ConfigRangeError(
            "must be a loopback address (the admin interface is local only)",
            key_path="[admin].host",
        )
    if config.admin.port != 0 and config.admin.port == config.api.port:
        raise ConfigRangeError("must differ from [api].port", key_path="[admin].port")
    _check_network(config.network)


def _check_network(network: NetworkSection) -> None:
    if network.turn_urls and network.turn_secret is None:
        raise ConfigMissingKeyError(
            "needs [network].turn_secret (use-auth-secret scheme)", key_path="[network].turn_urls"
        )
    if network.turn_secret is not None and not network.turn_urls:
        raise ConfigMissingKeyError("needs [network].turn_urls", key_path="[network].turn_secret")
    has_turn = bool(network.turn_urls) or any(
        server_url.startswith("turn")
        for server in network.ice_servers
        for server_url in server.urls
    )
    if network.ice_transport_policy == "relay" and not has_turn:
        raise ConfigRangeError(
            '"relay" needs turn_urls or a turn: URL in ice_servers',
            key_path="[network].ice_transport_policy",
        )
    if network.heartbeat_dead_after_s < 3 * network.heartbeat_interval_s:
        raise ConfigRangeError(
            "must be at least 3 x [network].heartbeat_interval_s",
            key_path="[network].heartbeat_dead_after_s",
        )
    if network.reconnect_backoff_max_s < network.reconnect_backoff_initial_s:
        raise ConfigRangeError(
            "must be at least [network].reconnect_backoff_initial_s",
            key_path="[network].reconnect_backoff_max_s",
        )
    if (
        network.peers_target is not None
        and network.outbound_target is not None
        and network.peers_target != network.outbound_target
    ):
        raise ConfigRangeError(
            "is the deprecated name of [network].outbound_target: set only outbound_target",
            key_path="[network].peers_target",
        )
    if network.sentry and any(entry.node_id is None for entry in network.peers):
        raise ConfigRangeError(
            "needs a node_id on every [network].peers entry (only those ids may connect)",
            key_path="[network].sentry",
        )


def _is_loopback(host_value: str) -> bool:
    if host_value == "localhost":
        return True
    try:
        return ipaddress.ip_address(host_value).is_loopback
    except ValueError:
        return False


# --- mapping onto the transport ------------------------------------------------------------


def public_url(config: NodeConfig) -> str | None:
    """The base URL advertised to peers: `[network].public_url` or one built from `[api]`."""
    if config.network.public_url is not None:
        return config.network.public_url
    address = config.api.host
    if address in ("0.0.0.0", "::", ""):
        return None
    if ":" in address:
        address = f"[{address}]"
    return f"http://{address}:{config.api.port}"


def transport_config(config: NodeConfig) -> TransportConfig:
    """The `TransportConfig` for both transports, from `[network]` and `[sync]`."""
    network = config.network
    return TransportConfig(
        ice_servers=network.ice_servers,
        turn_secret=network.turn_secret,
        turn_urls=network.turn_urls,
        turn_credential_ttl_s=network.turn_credential_ttl_s,
        ice_transport_policy="relay" if network.ice_transport_policy == "relay" else "all",
        ice_host_addresses=network.ice_host_addresses or None,
        public_url=public_url(config),
        heartbeat_interval_s=network.heartbeat_interval_s,
        heartbeat_dead_after_s=network.heartbeat_dead_after_s,
        connect_timeout_s=network.connect_timeout_s,
        reconnect_backoff_initial_s=network.reconnect_backoff_initial_s,
        reconnect_backoff_max_s=network.reconnect_backoff_max_s,
        reconnect_attempts_max=network.reconnect_attempts_max,
        peers_max=config.sync.peers_max,
    )


def mesh_targets(network: NetworkSection) -> MeshTargets:
    """The daemon's peer targets (protocol/peering.py): `[network].outbound_target` (or its
    deprecated alias `peers_target`, else MESH_OUTBOUND_TARGET) and `inbound_max`."""
    outbound = network.outbound_target
    if outbound is None:
        outbound = (
            limits.MESH_OUTBOUND_TARGET if network.peers_target is None else network.peers_target
        )
    return MeshTargets(outbound=outbound, inbound_max=network.inbound_max)


def allowed_peers(config: NodeConfig) -> frozenset[bytes] | None:
    """The node ids a sentry accepts (`NodeCoreConfig.allowed_peers`); None when not one."""
    if not config.network.sentry:
        return None
    return frozenset(entry.node_id for entry in config.network.peers if entry.node_id is not None)


# --- writing -------------------------------------------------------------------------------

HEADER = """\
# swarmd node configuration (TOML). Every key is listed with its default; a commented-out key
# is absent by default. Relative paths resolve against [node].home, and a relative home
# resolves against the directory of this file. Reference: docs/parts/config.md.
"""


def default_config_text(**overrides: Any) -> str:
    """A complete commented config file with every key; overrides replace defaults.

    Pass overrides as `section={"key": value}` or flat as `section_key=value`, e.g.
    `default_config_text(api_port=7001, network={"peers": [{"url": "http://127.0.0.1:7000"}]})`.
    Values are TOML-shaped (str, int, float, bool, lists, dicts; Path and bytes node ids too).
    The result is validated like a file: a bad override raises `ConfigError`.
    """
    values = _collect_overrides(overrides)
    blocks = [HEADER]
    for name, section_type in _section_types().items():
        lines = [f"[{name}]"]
        for item, meta in settings_of(section_type):
            lines.extend(_key_lines(item, meta, values[name].get(item.name, item.default)))
        blocks.append("\n".join(lines) + "\n")
    result = "\n".join(blocks)
    parse_config_text(result, Path("."), source="default_config_text")
    return result


def _collect_overrides(overrides: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    section_types = _section_types()
    values: dict[str, dict[str, Any]] = {name: {} for name in section_types}
    for name, value in overrides.items():
        if name in section_types and isinstance(value, Mapping):
            pairs = [(name, key, item) for key, item in value.items()]
        else:
            section, _, key = name.partition("_")
            pairs = [(section, key, value)]
        for section, key, item in pairs:
            known = (
                [field_.name for field_, _ in settings_of(section_types[section])]
                if section in section_types
                else []
            )
            if key not in known:
                raise ConfigUnknownKeyError("unknown key", key_path=f"[{section}].{key}")
            values[section][key] = item
    return values


def _key_lines(item: dataclasses.Field[Any], meta: Setting, value: object) -> list[str]:
    doc = meta.doc
    if item.default is not None and item.default != ():
        doc += f" Default: {to_toml(shape_for_toml(item.default))}."
    lines = textwrap.wrap(doc, width=97, initial_indent="# ", subsequent_indent="# ")
    if value is None:
        lines.append(f"# {item.name} = {to_toml(shape_for_toml(meta.example))}")
    else:
        if isinstance(meta.example, tuple):
            lines.append(f"# Example: {item.name} = {to_toml(shape_for_toml(meta.example))}")
        lines.append(f"{item.name} = {to_toml(shape_for_toml(value))}")
    return ["", *lines]


def shape_for_toml(value: object) -> object:
    """Turn config values (Path, tuples, entries, node ids) into plain TOML-shaped values."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, bytes):
        return account_id_text(value)
    if isinstance(value, list | tuple):
        return [shape_for_toml(item) for item in value]
    if isinstance(value, Mapping):
        return {key: shape_for_toml(item) for key, item in value.items() if item is not None}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            item.name: shape_for_toml(getattr(value, item.name))
            for item in dataclasses.fields(value)
            if getattr(value, item.name) is not None
        }
    return value


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}


def _toml_string(value: str) -> str:
    out = []
    for char in value:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def to_toml(value: object) -> str:
    """One TOML value (inline form) for a TOML-shaped Python value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigRangeError(f"{value!r} has no TOML form in swarmd configs")
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(to_toml(item) for item in value) + "]"
    if isinstance(value, dict):
        pairs = [
            f"{key if _BARE_KEY.fullmatch(key) else _toml_string(key)} = {to_toml(item)}"
            for key, item in value.items()
        ]
        return "{ " + ", ".join(pairs) + " }" if pairs else "{}"
    raise ConfigTypeError(f"{type(value).__name__} has no TOML form")


def reference_markdown() -> str:
    """The key reference table of docs/parts/config.md, generated from the schema."""
    rows = ["| key | default | meaning |", "|---|---|---|"]
    for name, section_type in _section_types().items():
        for item, meta in settings_of(section_type):
            default = "absent" if item.default is None else to_toml(shape_for_toml(item.default))
            doc = meta.doc.replace("|", "\\|")  # a bare | would split the table cell
            rows.append(f"| `[{name}].{item.name}` | `{default}` | {doc} |")
    return "\n".join(rows) + "\n"
