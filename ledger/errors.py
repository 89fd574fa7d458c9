"""Error hierarchy: every expected failure carries a stable ``E-`` code and an exit code.

The four classes follow the contract's exit codes (1 check failed, 2 bad input,
3 not found, 4 environment); the HTTP layer maps the same classes to statuses.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BadInput",
    "CapError",
    "CheckFailed",
    "Conflict",
    "EnvironmentProblem",
    "Forbidden",
    "NotFound",
    "Unauthorized",
]


class CapError(Exception):
    """Base of all expected failures; ``str()`` never contains key material."""

    exit_code = 1
    http_status = 500
    default_code = "E-BAD-INPUT"

    def __init__(self, code: str | None, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code or self.default_code
        self.message = message
        self.details = details

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return {"error": body}

    def __str__(self) -> str:
        return f"error[{self.code}]: {self.message}"

    def __reduce__(self) -> tuple[Any, ...]:
        """Picklable with code and details (errors cross process boundaries)."""
        return (_rebuild, (type(self), self.code, self.message, self.details))


def _rebuild(cls: type[CapError], code: str, message: str, details: dict[str, Any]) -> CapError:
    return cls(code, message, **details)


class CheckFailed(CapError):
    """Integrity, signature, chain, capsule or sandbox check said no (exit 1)."""

    exit_code = 1
    http_status = 422
    default_code = "E-CHAIN-BROKEN"


class BadInput(CapError):
    """Usage error or malformed input (exit 2)."""

    exit_code = 2
    http_status = 400
    default_code = "E-BAD-INPUT"


class NotFound(CapError):
    """A named thing does not exist (exit 3)."""

    exit_code = 3
    http_status = 404
    default_code = "E-NOT-FOUND"


class EnvironmentProblem(CapError):
    """Key missing or wrong, store locked or uninitialised, disk full (exit 4)."""

    exit_code = 4
    http_status = 503
    default_code = "E-NOT-INITIALIZED"


class Conflict(CapError):
    """The request contradicts the current state (exit 2, HTTP 409)."""

    exit_code = 2
    http_status = 409
    default_code = "E-CONFLICT"


class Unauthorized(CapError):
    """Missing or bad credentials (HTTP 401)."""

    exit_code = 4
    http_status = 401
    default_code = "E-UNAUTHORIZED"


class Forbidden(CapError):
    """Credentials valid but the role is too low (HTTP 403)."""

    exit_code = 4
    http_status = 403
    default_code = "E-FORBIDDEN"
