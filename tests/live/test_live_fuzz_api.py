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
import os
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
from swarmd.protocol.crypto import KeyPair
from swarmd.protocol.wallet import Author
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


# --- stateful: links feed one answer's ids into the next request ----------------------------


def _ref(path: str) -> str:
    return "#/paths/" + path.replace("~", "~0").replace("/", "~1") + "/get"


#: Where an answer names something another route reads (OpenAPI links, in the test's copy of
#: the document): random strings never parse as an account id, an op id or a final height,
#: so without links the generator rarely gets past the parameter checks.
LINKS: dict[tuple[str, str, str], dict[str, Any]] = {
    ("/v1/status", "get", "200"): {
        "checkpoint": {
            "operationRef": _ref("/v1/checkpoints/{height}"),
            "parameters": {"height": "$response.body#/final_height"},
        },
        "account": {
            "operationRef": _ref("/v1/accounts/{account_id}"),
            "parameters": {"account_id": "$response.body#/node_id"},
        },
        "account_ops": {
            "operationRef": _ref("/v1/accounts/{account_id}/ops"),
            "parameters": {"account_id": "$response.body#/node_id"},
        },
    },
    ("/v1/ops", "post", "400"): {
        "op": {
            "operationRef": _ref("/v1/ops/{op_id}"),
            "parameters": {"op_id": "$response.body#/op_id"},
        }
    },
    ("/v1/accounts/{account_id}/ops", "get", "200"): {
        "next_page": {
            "operationRef": _ref("/v1/accounts/{account_id}/ops"),
            "parameters": {
                "account_id": "$request.path.account_id",
                "cursor": "$response.body#/next_cursor",
            },
        }
    },
}


#: Scenarios of the stateful run at least: enough that the links are followed (the test checks
#: that they were) even when SWARMD_FUZZ_EXAMPLES is set very low.
STATEFUL_SCENARIOS_MIN = 10


def with_links(value: dict[str, Any]) -> dict[str, Any]:
    linked = json.loads(json.dumps(value))
    for (path, method, status), links in LINKS.items():
        linked["paths"][path][method]["responses"][status]["links"] = links
    return linked


def test_public_api_stateful_links(live_node: LiveNode, http: requests.Session) -> None:
    # One final checkpoint first, so that the status's final height names one that exists.
    tester = KeyPair.from_seed(os.urandom(32)).public_key
    reward = live_node.status()["signup_reward"]
    grant = Author(live_node.keypair, live_node.network_id).grant(tester, reward)
    submitted = http.post(live_node.url + "/v1/ops", data=grant.envelope, timeout=10)
    assert submitted.status_code == 202, submitted.text
    live_node.wait_for("a final checkpoint", lambda status: status["final_height"] >= 1)
    schema = load_schema(with_links(document()))
    base_url = live_node.url

    class Machine(schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, Any]:
            return {"base_url": base_url, "session": http}

        def validate_response(
            self, response: schemathesis.Response, case: schemathesis.Case, **kwargs: Any
        ) -> None:
            case.validate_response(response, checks=CHECKS)

    Machine.run(
        settings=settings(
            max_examples=max(STATEFUL_SCENARIOS_MIN, fuzz_examples() // 3),
            stateful_step_count=6,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
    )
    live_node.assert_healthy()
    # The links worked: reads named by an earlier answer found what they asked for.
    for route in ("/v1/accounts/{account_id}", "/v1/checkpoints/{height}"):
        assert answered_200(http, live_node, route) > 0, route


def answered_200(http: requests.Session, node: LiveNode, route: str) -> float:
    """How many 200 answers the node counted for `route` (its own request metric)."""
    text = http.get(node.url + "/metrics", timeout=10).text
    wanted = f'swarmd_http_requests_total{{route="{route}",status="200"}} '
    return sum(float(line[len(wanted) :]) for line in text.splitlines() if line.startswith(wanted))
