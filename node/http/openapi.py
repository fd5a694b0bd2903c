"""The OpenAPI 3.1 document of the public API, served at `GET /v1/openapi.json`.

Kept here, beside the routes it describes; tests/node/test_openapi.py checks it against the
routes `api.build_app` registers, both ways, so neither can change without the other. Every
error response is the one JSON shape (`Error`). The peer transports' routes (signalling,
`/v1/ws`) are listed too: they are on the same port and answer errors in the same shape.
"""

from __future__ import annotations

from typing import Any

from swarmd.protocol.limits import TELEMETRY_DAYS_QUERY_MAX

#: Where the document is served.
OPENAPI_PATH = "/v1/openapi.json"

_HEX32 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
_ERROR_REF = {"$ref": "#/components/schemas/Error"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    """The error responses of a route (always 429 and 500 too), all in the one shape."""
    described = {
        400: "bad input (typed code)",
        401: "bad signature or missing token",
        403: "wrong network or peer",
        404: "not found",
        409: "replayed",
        410: "pruned: final, but this node no longer keeps it ([storage].retain_heights)",
        413: "request too large",
        415: "unsupported media type",
        429: "rate limited",
        500: "a bug, logged by the node",
        503: "node read-only, quiesced, overloaded or unable to store",
    }
    return {str(s): _json(_ERROR_REF, described[s]) for s in sorted({*statuses, 429, 500})}


def _param(name: str, schema: dict[str, Any], where: str = "path") -> dict[str, Any]:
    return {"name": name, "in": where, "required": where == "path", "schema": schema}


def _get(summary: str, ok: dict[str, Any], *errors: int, **extra: Any) -> dict[str, Any]:
    return {"get": {"summary": summary, "responses": {"200": ok, **_errors(*errors)}, **extra}}


_OBJECT = {"type": "object"}
_RATIO = {"type": ["number", "null"]}
_TELEMETRY_DAY = {
    "type": "object",
    "properties": {
        **{
            name: {"type": "integer"}
            for name in (
                *("day", "checkpoints", "ops", "new_accounts", "daily_active"),
                *("monthly_active", "retention_base", "retained", "transfer_volume_30d", "supply"),
            )
        },
        "date": {"type": "string"},
        "retention": _RATIO,
        "velocity": _RATIO,
        "burns": {"type": "object", "additionalProperties": {"type": "integer"}},
    },
}
_TELEMETRY = {
    "type": "object",
    "required": ["since_height", "since_day", "latest_day", "window_days", "days"],
    "properties": {
        "since_height": {"type": ["integer", "null"]},
        "since_day": {"type": ["string", "null"]},
        "latest_day": {"type": ["string", "null"]},
        "latest_height": {"type": ["integer", "null"]},
        "missing_heights": {"type": "integer", "minimum": 0},
        "window_days": {"type": "integer"},
        "days": {"type": "array", "items": _TELEMETRY_DAY},
    },
}
_SUBMITTED = {
    "type": "object",
    "required": ["op_id", "status"],
    "properties": {
        "op_id": _HEX32,
        "status": {"enum": ["accepted", "pending", "duplicate", "rejected"]},
        "code": {"type": "string"},
    },
}

PATHS: dict[str, Any] = {
    "/v1/status": _get(
        "node, mode, heights, peers, sync lag, pool size, version", _json(_OBJECT, "status")
    ),
    "/v1/accounts/{account_id}": _get(
        "balance, spendable, seq, head, unreceived credit ids, granted",
        _json(_OBJECT, "account view"),
        400,
        parameters=[_param("account_id", {"type": "string"})],
    ),
    "/v1/handles/{name}": _get(
        "binding and open claims",
        _json(_OBJECT, "handle view"),
        400,
        404,
        parameters=[_param("name", {"type": "string"})],
    ),
    "/v1/ops/{op_id}": _get(
        "status and decoded view of an op (status `reverted`, code `op_reverted`, with "
        "`reverted.height` and `reverted.epoch`: reverted by a council rollback certificate; "
        "410 `pruned`: final, body pruned)",
        _json(_OBJECT, "op view"),
        400,
        404,
        410,
        parameters=[_param("op_id", {"type": "string"})],
    ),
    "/v1/checkpoints/{height}": _get(
        "bundle hex and cut fields ('latest' for the newest; 410 `pruned` below the kept range)",
        _json(_OBJECT, "checkpoint"),
        400,
        404,
        410,
        parameters=[_param("height", {"type": "string"})],
    ),
    "/v1/ops": {
        "post": {
            "summary": "submit one signed envelope; 202 once durable",
            "requestBody": {
                "required": True,
                "content": {
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["envelope"],
                            "properties": {"envelope": {"type": "string"}},
                        }
                    },
                },
            },
            "responses": {"202": _json(_SUBMITTED, "durable"), **_errors(400, 413, 415, 503)},
        }
    },
    "/v1/ops/batch": {
        "post": {
            "summary": "submit an msgpack array of envelopes; 202 unless every op was rejected",
            "requestBody": {
                "required": True,
                "content": {
                    "application/msgpack": {"schema": {"type": "string", "format": "binary"}}
                },
            },
            "responses": {
                "202": _json(
                    {
                        "type": "object",
                        "properties": {"results": {"type": "array", "items": _SUBMITTED}},
                    },
                    "one result per op",
                ),
                **_errors(400, 413, 415, 503),
            },
        }
    },
    "/v1/genesis": _get("the genesis file, byte for byte", _json(_OBJECT, "genesis")),
    "/v1/hype": _get(
        "hype targets by credits burned, largest first",
        _json(_OBJECT, "leaderboard"),
        400,
        parameters=[_param("top", {"type": "integer", "minimum": 1}, "query")],
    ),
    "/v1/hype/{target}": _get(
        "credits burned toward one target",
        _json(_OBJECT, "tally"),
        400,
        404,
        parameters=[_param("target", {"type": "string"})],
    ),
    "/v1/accounts/{account_id}/ops": _get(
        "an account's ops, newest first, one page",
        _json(_OBJECT, "page of ops and the next cursor"),
        400,
        parameters=[
            _param("account_id", {"type": "string"}),
            _param("cursor", {"type": "string"}, "query"),
            _param("limit", {"type": "integer", "minimum": 1}, "query"),
        ],
    ),
    "/v1/onboarding": _get(
        "whether this node onboards testers, and the puzzle's cost", _json(_OBJECT, "onboarding")
    ),
    "/v1/onboarding/signup": {
        "post": {
            "summary": "the signup reward for a new account, for a solved puzzle or an invite",
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["account"],
                            "properties": {
                                "account": {"type": "string"},
                                "nonce": {"type": "integer", "minimum": 0},
                                "invite": {"type": "string", "maxLength": 64},
                            },
                        }
                    }
                },
            },
            "responses": {
                "202": _json(_SUBMITTED, "the grant, durable"),
                **_errors(400, 403, 404, 409, 413, 429, 503),
            },
        }
    },
    "/v1/events": _get(
        "WebSocket of JSON events (upgrade required)",
        {"description": "switching to the WebSocket protocol"},
        400,
        503,
        parameters=[
            _param("account", {"type": "string"}, "query"),
            _param("since", {"type": "integer", "minimum": 0}, "query"),
        ],
    ),
    # (branch telemetry) Product telemetry from final state; docs/OPERATIONS.md has formulas.
    "/v1/telemetry": _get(
        "product telemetry per UTC day of agreed checkpoint time (the newest `days` days)",
        _json(_TELEMETRY, "telemetry report"),
        400,
        parameters=[
            _param(
                "days",
                {"type": "integer", "minimum": 1, "maximum": TELEMETRY_DAYS_QUERY_MAX},
                "query",
            )
        ],
    ),
    "/metrics": {
        "get": {
            "summary": "Prometheus metrics ([metrics].path)",
            "responses": {
                "200": {
                    "description": "metrics",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
                **_errors(),
            },
        }
    },
    OPENAPI_PATH: _get("this document", _json(_OBJECT, "OpenAPI 3.1")),
    "/v1/signal": {
        "post": {
            "summary": "peer transport: a signed WebRTC offer, answered with a signed answer",
            "requestBody": {
                "required": True,
                "content": {
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
                },
            },
            "responses": {
                "200": {
                    "description": "signed answer",
                    "content": {
                        "application/octet-stream": {
                            "schema": {"type": "string", "format": "binary"}
                        }
                    },
                },
                **_errors(400, 401, 403, 409, 413, 503),
            },
        }
    },
    "/v1/ws": _get(
        "peer transport: the WebSocket peer link (upgrade required)",
        {"description": "switching to the WebSocket protocol"},
        400,
        401,
        403,
    ),
    "/v1/peers/records": _get(
        "peer exchange: this node's signed address record and a sample of its address book "
        "(canonical msgpack list of encoded records)",
        {
            "description": "encoded address records",
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        },
    ),
}

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "swarmd public API",
        "version": "1",
        "description": "Every error is JSON {error, code} with a stable code.",
    },
    "paths": PATHS,
    "components": {
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["error", "code"],
                "properties": {"error": {"type": "string"}, "code": {"type": "string"}},
            }
        }
    },
}


def document(metrics_path: str | None = "/metrics") -> dict[str, Any]:
    """The document, with the metrics route at the configured path (None: metrics off)."""
    paths = dict(PATHS)
    metrics = paths.pop("/metrics")
    if metrics_path is not None:
        paths[metrics_path] = metrics
    return {**DOCUMENT, "paths": paths}
