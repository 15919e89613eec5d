"""Calls to the named services of the host configuration, with JSON bodies.

The host adds credentials, the step's `Idempotency-Key` and retries; what reaches the
plugin as an error has been retried.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple, Union
from urllib.parse import quote

from .errors import Never, Outside, ServiceError, variant_kind

#: How much of a response body an error message shows, as the Rust SDK does: a 4 MiB
#: error page does not belong in the run's record.
BODY_IN_MESSAGE = 512

try:
    from componentize_py_types import Err
    from wit_world.imports import services as raw
except ImportError:
    raw = Outside("services")
    Err = Never


@dataclass
class Response:
    """A service's answer."""

    status: int
    headers: List[Tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> Optional[str]:
        """The value of header `name`, or None."""
        name = name.lower()
        return next((value for key, value in self.headers if key == name), None)

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body as JSON; an empty body is None."""
        if not self.body:
            return None
        try:
            return json.loads(self.body)
        except ValueError as error:
            raise ServiceError("decode", f"the response is not JSON: {error}") from None


def encode_segment(segment: str) -> str:
    """Percent-encodes `segment` for use as one path segment (an id taken from the context)."""
    return quote(segment, safe="-._~")


def request(
    service: str,
    path: str,
    method: str = "get",
    *,
    json_body: Any = None,
    body: Union[bytes, str, None] = None,
    headers: Optional[Dict[str, str]] = None,
    idempotency_key: Optional[str] = None,
    timeout_ms: Optional[int] = None,
) -> Response:
    """One call: `method` is `get`, `head`, `post`, `put`, `patch` or `delete`; `json_body`
    is sent as JSON, `body` as it is; `idempotency_key` keeps several calls of one step
    apart. Raises `ServiceError`."""
    pairs = [(key, str(value)) for key, value in (headers or {}).items()]
    payload: Optional[bytes] = None
    if json_body is not None:
        pairs.append(("content-type", "application/json"))
        payload = json.dumps(json_body).encode()
    elif body is not None:
        payload = body.encode() if isinstance(body, str) else body
    if idempotency_key is not None:
        pairs.append(("idempotency-key", str(idempotency_key)))
    call = raw.Request(service, raw.Method[method.upper()], path, pairs, payload, timeout_ms)
    try:
        answer = raw.call(call)
    except Err as error:
        kind = variant_kind(error.value)
        if kind == "http":
            response = error.value.value
            text = bytes(response.body).decode("utf-8", errors="replace")
            if len(text) > BODY_IN_MESSAGE:
                text = text[:BODY_IN_MESSAGE] + "..."
            raise ServiceError(
                "http",
                f"{service} answered {response.status}: {text}",
                response.status,
                bytes(response.body),
            ) from None
        raise ServiceError(kind, f"{service}: {kind}: {error.value.value}") from None
    return Response(answer.status, list(answer.headers), bytes(answer.body))


def get(service: str, path: str, **options: Any) -> Any:
    """GET, the body as JSON."""
    return request(service, path, "get", **options).json()


def post(service: str, path: str, json_body: Any, **options: Any) -> Any:
    """POST `json_body` as JSON, the body as JSON."""
    return request(service, path, "post", json_body=json_body, **options).json()


def put(service: str, path: str, json_body: Any, **options: Any) -> Any:
    """PUT `json_body` as JSON, the body as JSON."""
    return request(service, path, "put", json_body=json_body, **options).json()


def delete(service: str, path: str, **options: Any) -> Any:
    """DELETE, the body as JSON (None when empty)."""
    return request(service, path, "delete", **options).json()
