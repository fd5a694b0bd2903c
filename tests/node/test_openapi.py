"""The OpenAPI document (node/http/openapi.py) and the public app's routes cannot drift."""

from __future__ import annotations

from typing import Any

from swarmd.node.http.openapi import OPENAPI_PATH
from tests.node import test_api

make_node = test_api.make_node  # the fixture

METHODS = {"get", "post", "put", "patch", "delete"}


def api_routes(app: Any, metrics_path: str) -> set[tuple[str, str]]:
    """(method, path) of every API route: /v1/... and the metrics path. Routes outside the
    API (a web UI's pages and assets) are not part of the document."""
    routes = set()
    for route in app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if route.method == "HEAD" or not (path.startswith("/v1/") or path == metrics_path):
            continue
        routes.add((route.method.lower(), path))
    return routes


async def test_the_document_lists_exactly_the_registered_routes(make_node: Any) -> None:
    node = await make_node()
    status, served = await node.get(OPENAPI_PATH)
    assert status == 200 and served["openapi"] == "3.1.0"

    documented = {
        (method, path)
        for path, item in served["paths"].items()
        for method in item
        if method in METHODS
    }

    metrics_path = node.daemon.config.metrics.path
    assert documented == api_routes(node.api.server.app, metrics_path)


async def test_every_documented_error_is_the_one_json_shape(make_node: Any) -> None:
    node = await make_node()
    _, served = await node.get(OPENAPI_PATH)
    error = served["components"]["schemas"]["Error"]
    assert error["required"] == ["error", "code"]

    for path, item in served["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                if int(status) >= 400:
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Error"}, (path, method)
                assert int(status) in range(200, 600)
