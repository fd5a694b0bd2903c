"""ADMIN_JSON_BODY_SIZE_BYTES_MAX reached: an admin body at the bound is read, one byte more
is a typed 413 (and the node goes on answering)."""

from __future__ import annotations

from typing import Any

from swarmd.protocol.limits import ADMIN_JSON_BODY_SIZE_BYTES_MAX
from tests.node import test_api
from tests.node.test_hardening_http import post_json

make_node = test_api.make_node  # the fixture: a single-node council behind both apps


def mode_body(size: int) -> bytes:
    """A valid mode change padded with spaces to exactly `size` bytes."""
    body = b'{"mode": "normal", "reason": "drill"}'
    return body + b" " * (size - len(body))


async def test_admin_json_body_size_bound(make_node: Any) -> None:
    node = await make_node()
    status, payload = await post_json(
        node, "/v1/admin/mode", mode_body(ADMIN_JSON_BODY_SIZE_BYTES_MAX), admin=True
    )
    assert status == 200, payload
    status, payload = await post_json(
        node, "/v1/admin/mode", mode_body(ADMIN_JSON_BODY_SIZE_BYTES_MAX + 1), admin=True
    )
    assert (status, payload["code"]) == (413, "request_too_large")
    assert (await node.get("/v1/status"))[0] == 200
