"""The one JSON request-body reader of the public API and the admin interface.

A body is refused (typed: `bad_request`, `json_too_deep`, `request_too_large`) before it reaches
`json.loads` when it is larger than the caller's bound or nested deeper than
`limits.JSON_BODY_DEPTH_MAX`: the stdlib parser recurses once per level, so a body nested
thousands deep would otherwise end in a RecursionError (a 500).
"""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web

from swarmd.protocol import limits

from .errors import ApiError

#: A JSON string literal (brackets inside strings do not nest).
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")


def json_depth(body: bytes) -> int:
    """The deepest nesting of arrays and objects in `body` (which need not be valid JSON)."""
    brackets = _STRING.sub(b"", body).translate(None, _NOT_BRACKET)
    depth = deepest = 0
    for byte in brackets:
        depth += 1 if byte in b"[{" else -1
        deepest = max(deepest, depth)
    return deepest


def parse_json(body: bytes, size_max: int) -> Any:
    """`body` parsed, or a typed 400 for an oversized, too deep or malformed body."""
    if len(body) > size_max:
        raise ApiError(413, "request_too_large", f"JSON body larger than {size_max} bytes")
    if json_depth(body) > limits.JSON_BODY_DEPTH_MAX:
        raise ApiError(
            400, "json_too_deep", f"JSON nested deeper than {limits.JSON_BODY_DEPTH_MAX}"
        )
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, "bad_request", f"body is not JSON: {exc}") from None


async def read_json_object(request: web.Request, size_max: int) -> dict[str, Any]:
    """The request's body as a JSON object (typed 400 otherwise)."""
    body = await request.content.read(size_max + 1)
    value = parse_json(body, size_max)
    if not isinstance(value, dict):
        raise ApiError(400, "bad_request", "body must be a JSON object")
    return value
