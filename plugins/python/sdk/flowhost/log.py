"""Log lines into the host's structured log, tagged with the plugin, run and step."""

from __future__ import annotations

from .errors import Outside

try:
    from wit_world.imports import log as raw
except ImportError:
    raw = Outside("log")


def _log(level: str, message: object) -> None:
    raw.log(raw.Level[level], str(message))


def trace(message: object) -> None:
    _log("TRACE", message)


def debug(message: object) -> None:
    _log("DEBUG", message)


def info(message: object) -> None:
    _log("INFO", message)


def warn(message: object) -> None:
    _log("WARN", message)


def error(message: object) -> None:
    _log("ERROR", message)
