"""The plugin's own settings, from `[plugins.<name>.config]`."""

from __future__ import annotations

from typing import Optional

from .errors import Outside

try:
    from wit_world.imports import config as raw
except ImportError:
    raw = Outside("config")


def get(key: str, default: Optional[str] = None) -> Optional[str]:
    """The value of `key`, or `default` when the configuration does not set it."""
    value = raw.get(key)
    return default if value is None else value
