"""schemathesis against a live node from its own OpenAPI document (issue 14).

Every operation of the served `/v1/openapi.json` is driven with schema-valid and schema-violating
requests (positive and negative generation). Each response must be no 5xx, conform to the
document (status, content type, body schema) and, for every 4xx, be the one JSON error shape.
After each operation's run the node's log must show no bug (tests/live/conftest.py) and the
node must still answer `/v1/status`.

Bounded: SWARMD_FUZZ_EXAMPLES examples per operation (default 30), no Hypothesis deadline
(a loopback round trip on a loaded CI core is not what is measured).
"""

from __future__ import annotations

import json
from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from swarmd.node.http.openapi import document
from tests.live.conftest import LiveNode, fuzz_examples

ERROR_KEYS = {"error", "code"}


def error_shape(ctx: Any, response: schemathesis.Response, case: schemathesis.Case) -> None:
    """Every 4xx and 5xx answer is JSON `{"error": text, "code": text, ...}`."""
    if response.status_code < 400:
        return
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type.startswith("application/json"), (response.status_code, content_type)
    body = json.loads(response.content)
    assert isinstance(body, dict) and body.keys() >= ERROR_KEYS, body
    assert isinstance(body["error"], str) and isinstance(body["code"], str), body
    assert body["code"], body


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    error_shape,
]


def load_schema(value: dict[str, Any]) -> schemathesis.BaseSchema:
    schema = schemathesis.openapi.from_dict(value)
    schema.config.generation.update(
        modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], max_examples=fuzz_examples()
    )
    return schema


@schemathesis.serializer("application/msgpack")
def _msgpack_body(ctx: schemathesis.SerializationContext, value: Any) -> bytes:
    # The batch body is "format: binary": the generator already made bytes (or, negated, a
    # value of another type, sent as its JSON text so the node sees something non-msgpack).
    return value if isinstance(value, bytes) else json.dumps(value).encode()


SCHEMA = load_schema(document())
SETTINGS = settings(
    deadline=None,
    suppress_health_check=list(HealthCheck),
    max_examples=fuzz_examples(),
    database=None,
)


@SCHEMA.parametrize()
@SETTINGS
def test_public_api_never_fails_on_any_request(
    case: schemathesis.Case, live_node: LiveNode, http: requests.Session
) -> None:
    case.call_and_validate(base_url=live_node.url, session=http, checks=CHECKS)
    found = live_node.problems()
    assert not found, "node log shows a bug:\n" + "\n".join(found[:20])


def test_the_node_is_healthy_after_the_fuzz(live_node: LiveNode) -> None:
    live_node.assert_healthy()
