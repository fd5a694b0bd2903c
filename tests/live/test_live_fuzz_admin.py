"""schemathesis against a live node's admin interface, with its cookie token (issue 14).

The admin interface has no served OpenAPI document (it is loopback-only and not public), so
the document here describes its routes (node/http/admin.py, node/http/admin_council.py) for
the generator: each route's body schema and the error statuses it may answer. The node is a
council of one, so every council action is really signed and submitted; whatever the
generator sends, the answer must be no 5xx but 503 (quiesced/read-only refusals), conform to
the document, and every error must be the one JSON shape. The log must show no bug and the
node must still answer `/v1/status` afterwards.
"""

from __future__ import annotations

from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.live.conftest import LiveNode, fuzz_examples
from tests.live.test_live_fuzz_api import error_shape, load_schema

_ERROR = {"$ref": "#/components/schemas/Error"}
_TEXT = {"type": "string"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": "JSON", "content": {"application/json": {"schema": schema}}}


def _responses(*errors: int) -> dict[str, Any]:
    statuses = sorted({400, 401, 413, 500, *errors})
    return {"200": _json({"type": "object"}), **{str(s): _json(_ERROR) for s in statuses}}


def _post(properties: dict[str, Any], *errors: int) -> dict[str, Any]:
    body = {"type": "object", "properties": properties}
    return {
        "post": {
            "requestBody": {"required": False, "content": {"application/json": {"schema": body}}},
            "responses": _responses(*errors),
        }
    }


_REASON = {"reason": _TEXT}
ADMIN_DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "swarmd admin interface (test description)", "version": "1"},
    "paths": {
        "/v1/admin/status": {"get": {"responses": _responses()}},
        "/v1/admin/council": {"get": {"responses": _responses()}},
        "/v1/admin/mode": _post(
            {"mode": {"enum": ["normal", "read-only", "quiesced"]}, **_REASON}, 503
        ),
        "/v1/admin/council/quiesce": _post(_REASON, 403, 503),
        "/v1/admin/council/resume": _post(_REASON, 403, 503),
        "/v1/admin/council/pause-claims": _post(_REASON, 403, 503),
        "/v1/admin/council/resume-claims": _post(_REASON, 403, 503),
        "/v1/admin/council/revoke": _post({"handle": _TEXT, "claim": _TEXT}, 403, 404, 409, 503),
        "/v1/admin/council/endorse": _post({"claim": _TEXT}, 403, 404, 503),
        "/v1/admin/council/rollback": _post(
            {"to_height": {"type": "integer", "minimum": 0}, **_REASON}, 403, 503
        ),
    },
    "components": {
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["error", "code"],
                "properties": {"error": _TEXT, "code": _TEXT},
            }
        }
    },
}


def not_a_bug_status(ctx: Any, response: schemathesis.Response, case: schemathesis.Case) -> None:
    """5xx only as the documented refusal (503: quiesced, read-only, cannot store)."""
    assert response.status_code < 500 or response.status_code == 503, response.status_code


CHECKS = [
    not_a_bug_status,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    error_shape,
]
SCHEMA = load_schema(ADMIN_DOCUMENT)


@SCHEMA.parametrize()
@settings(
    deadline=None,
    suppress_health_check=list(HealthCheck),
    max_examples=fuzz_examples(),
    database=None,
)
def test_admin_routes_never_fail_with_the_token(
    case: schemathesis.Case, live_node: LiveNode, http: requests.Session
) -> None:
    headers = {"Authorization": f"Bearer {live_node.admin_token()}"}
    case.call_and_validate(
        base_url=live_node.admin_url, session=http, headers=headers, checks=CHECKS
    )
    found = live_node.problems()
    assert not found, "node log shows a bug:\n" + "\n".join(found[:20])


def test_the_node_is_healthy_after_the_admin_fuzz(live_node: LiveNode) -> None:
    live_node.assert_healthy()
