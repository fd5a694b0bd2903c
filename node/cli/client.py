"""A small blocking HTTP client for the node's public and admin APIs (used by the CLI).

Errors come back as `ClientError` with the stable code the node sent (or a transport-level
code such as "node_unreachable"), so the CLI can print one typed line or JSON object.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from swarmd.protocol import crypto, limits
from swarmd.protocol.errors import RemoteProtocolError
from swarmd.protocol.ops import Op
from swarmd.protocol.wallet import Author

#: Seconds one request may take; the node answers reads at once and writes after one commit.
REQUEST_TIMEOUT_S = 10.0
#: Largest response body read (an account view with its listed credit ids is ~70 KiB).
RESPONSE_SIZE_BYTES_MAX = 4 * 1024 * 1024


class ClientError(RemoteProtocolError):
    """The node refused the request, or could not be reached."""

    code = "node_error"

    def __init__(self, message: str, *, code: str, status: int = 0, body: Any = None) -> None:
        super().__init__(message, code=code)
        self.status = status
        self.body = body


class NodeClient:
    def __init__(self, url: str, *, token: str | None = None) -> None:
        if not url.startswith(("http://", "https://")):
            raise ClientError(
                f"node URL must start with http:// or https://: {url!r}", code="usage"
            )
        check_url(url)
        self.url = url.rstrip("/")
        self.token = token

    def request(
        self, method: str, path: str, body: bytes | None = None, content_type: str | None = None
    ) -> Any:
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(self.url + path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as response:
                return json.loads(response.read(RESPONSE_SIZE_BYTES_MAX) or b"null")
        except urllib.error.HTTPError as exc:
            raw = exc.read(RESPONSE_SIZE_BYTES_MAX)
            try:
                value = json.loads(raw)
            except ValueError:
                value = None
            if isinstance(value, dict) and "code" in value:
                raise ClientError(
                    str(value.get("error", value["code"])),
                    code=str(value["code"]),
                    status=exc.code,
                    body=value,
                ) from None
            raise ClientError(f"HTTP {exc.code} from {self.url}", code="http_error") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ClientError(
                f"cannot reach node at {self.url}: {reason}", code="node_unreachable"
            ) from None

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def post_json(self, path: str, value: Any) -> Any:
        return self.request("POST", path, json.dumps(value).encode(), "application/json")

    # --- the public API ----------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        result: dict[str, Any] = self.get("/v1/status")
        return result

    def account(self, account: str) -> dict[str, Any]:
        result: dict[str, Any] = self.get(f"/v1/accounts/{urllib.parse.quote(account)}")
        return result

    def submit(self, envelope: bytes) -> dict[str, Any]:
        result: dict[str, Any] = self.request(
            "POST", "/v1/ops", envelope, "application/octet-stream"
        )
        return result

    def network_id(self) -> bytes:
        return bytes.fromhex(self.status()["network_id"])


def check_url(url: str) -> None:
    """A node URL urllib can use: a host, a port in range, no spaces or control characters
    (urllib would raise a bare ValueError or InvalidURL on the first request)."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port  # (raises on a port that is not a number or out of range)
        fine = bool(parts.hostname) and port != 0 and url.isprintable() and " " not in url
    except ValueError as exc:
        raise ClientError(f"not a node URL: {url!r} ({exc})", code="usage") from None
    if not fine:
        raise ClientError(f"not a node URL: {url!r} (http://host:port)", code="usage")


def author_from_node(client: NodeClient, keypair: crypto.KeyPair) -> tuple[Author, list[bytes]]:
    """An `Author` at the account's current chain position, and its unreceived credit ids."""
    network_id = client.network_id()
    view = client.account(keypair.account_id)
    author = Author(keypair, network_id, seq=int(view["seq"]), head=bytes.fromhex(view["head"]))
    unreceived = [bytes.fromhex(item) for item in view["unreceived"]][: limits.OP_DEPS_MAX]
    return author, unreceived


def submit_op(client: NodeClient, op: Op) -> dict[str, Any]:
    result = client.submit(op.envelope)
    result.setdefault("op_id", op.op_id.hex())
    return result


def read_cookie(path: Path) -> str:
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        raise ClientError(
            f"admin cookie {path} not found: is the node running?", code="cookie_missing"
        ) from None
    except OSError as exc:
        raise ClientError(
            f"cannot read admin cookie {path}: {exc}", code="cookie_unreadable"
        ) from None
    if not token:
        raise ClientError(f"admin cookie {path} is empty", code="cookie_unreadable")
    return token
