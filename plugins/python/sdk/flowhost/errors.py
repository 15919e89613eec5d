"""The errors of this SDK, and which of them a step should retry."""

from __future__ import annotations

from typing import Literal, Optional


class StepError(Exception):
    """Why a step failed: `retryable` (the host retries it) or `fatal` (it compensates)."""

    def __init__(self, kind: Literal["retryable", "fatal"], message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message

    @classmethod
    def retryable(cls, message: str) -> "StepError":
        """A transient failure: the host retries the step per its retry policy."""
        return cls("retryable", message)

    @classmethod
    def fatal(cls, message: str) -> "StepError":
        """A permanent failure: no retry; the completed steps before it are compensated."""
        return cls("fatal", message)

    @classmethod
    def unknown_step(cls, step: str) -> "StepError":
        """The fatal error for a step this plugin does not serve."""
        return cls.fatal(f"unknown step `{step}`")

    @property
    def is_retryable(self) -> bool:
        return self.kind == "retryable"

    def context(self, context: str) -> "StepError":
        """The same error with `context: ` before its message."""
        return StepError(self.kind, f"{context}: {self.message}")

    @classmethod
    def of(cls, error: BaseException) -> "StepError":
        """What `error`, raised by a step, tells the host: a `StepError` as it is; an error
        of this SDK retryable or fatal as it says; anything else fatal, since trying a bug
        again fails the same way."""
        if isinstance(error, StepError):
            return error
        if isinstance(error, (ServiceError, CacheError, PublishError)):
            return cls("retryable" if error.is_retryable else "fatal", str(error))
        return cls.fatal(f"{type(error).__name__}: {error}")


class ServiceError(Exception):
    """Why a service call failed: the WIT `call-error` (`denied`, `unknown-service`,
    `timeout`, `connection`, `http`, `other`), plus `decode` for a body that is not JSON."""

    def __init__(
        self,
        kind: str,
        message: str,
        status: Optional[int] = None,
        body: bytes = b"",
    ) -> None:
        super().__init__(message)
        self.kind = kind
        #: The HTTP status, for `http`.
        self.status = status
        #: The response body, for `http`.
        self.body = body

    @property
    def is_not_found(self) -> bool:
        return self.status == 404

    @property
    def is_retryable(self) -> bool:
        """Whether trying again later may succeed: timeouts, connection failures, and HTTP
        408, 429 and 5xx."""
        if self.kind in ("timeout", "connection"):
            return True
        return self.kind == "http" and self.status is not None and (
            self.status in (408, 429) or 500 <= self.status <= 599
        )


class CacheError(Exception):
    """Why the cache refused a value: `invalid-key` or `too-large`. Fatal in a step."""

    def __init__(self, kind: str, message: str) -> None:
        what = "invalid cache key" if kind == "invalid-key" else "cache value too large"
        super().__init__(f"{what}: {message}")
        self.kind = kind

    @property
    def is_retryable(self) -> bool:
        return False


class PublishError(Exception):
    """Why an event was not accepted (`denied`, `invalid-topic`, `invalid-data`,
    `unavailable`); only `unavailable` is retryable."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"event not published ({kind}): {message}")
        self.kind = kind

    @property
    def is_retryable(self) -> bool:
        return self.kind == "unavailable"


class Outside:
    """Stands for a host interface outside a component (a type check, a test of pure code):
    any use says so. Inside one, each module binds its interface when it is imported, while
    componentize-py initialises the app: what the app has not imported by then is not in
    the component."""

    def __init__(self, interface: str) -> None:
        self._interface = interface

    def __getattr__(self, name: str) -> object:
        raise RuntimeError(
            f"flowhost: the host's `{self._interface}` exists only inside a component "
            "built by componentize-py"
        )


class Never(Exception):
    """Never raised: what `except Err` names outside a component, where there is no `Err`."""


def variant_kind(value: object) -> str:
    """The WIT case name of a componentize-py variant value: `CallError_UnknownService` is
    `unknown-service`."""
    name = type(value).__name__.split("_", 1)[-1]
    return "".join("-" + c.lower() if c.isupper() else c for c in name).lstrip("-")
