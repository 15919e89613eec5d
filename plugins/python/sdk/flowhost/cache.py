"""The host's cache, bounded and with a TTL per entry: treat a miss as normal."""

from __future__ import annotations

import json
from typing import Any, Optional

from .errors import CacheError, Never, Outside, variant_kind

try:
    from componentize_py_types import Err
    from wit_world.imports import cache as raw
except ImportError:
    raw = Outside("cache")
    Err = Never


def get(key: str) -> Any:
    """The JSON value under `key`, or None (a value that is not JSON counts as a miss)."""
    value = get_bytes(key)
    if value is None:
        return None
    try:
        return json.loads(value)
    except ValueError:
        return None


def set(key: str, value: Any, ttl_ms: Optional[int] = None) -> None:  # noqa: A001
    """Stores `value` as JSON under `key` for `ttl_ms` (default: the host's). Raises
    `CacheError`."""
    set_bytes(key, json.dumps(value).encode(), ttl_ms)


def get_bytes(key: str) -> Optional[bytes]:
    """The bytes under `key`, or None."""
    value = raw.get(key)
    return None if value is None else bytes(value)


def set_bytes(key: str, value: bytes, ttl_ms: Optional[int] = None) -> None:
    """Stores `value` under `key`. Raises `CacheError`."""
    try:
        raw.set(key, value, ttl_ms)
    except Err as error:
        raise CacheError(variant_kind(error.value), error.value.value) from None


def delete(key: str) -> None:
    """Removes `key`; removing a missing key is not an error."""
    raw.delete(key)
