"""The exceptions of the package: what a caller may catch and act on.

Reporting (costs, pings, events, notifications) never raises because Agent OS is down or refused
a record; those become warnings on stderr. What does raise: a programming mistake in the call
(``TypeError``/``ValueError``), a lease that cannot be had, and the explicit API calls.
"""

from __future__ import annotations

from typing import Optional


class AgentOSError(Exception):
    """Base class of every error this package raises on purpose."""


class AgentOSUnavailable(AgentOSError):
    """Agent OS could not be reached, timed out, or answered 5xx/408/429.

    Raised only by calls that cannot be spooled for later (a lease, a direct API call);
    reports are spooled instead.
    """


class ApiError(AgentOSError):
    """Agent OS answered with an error the caller must fix (a 4xx other than 408 and 429)."""

    def __init__(self, status: int, code: str, message: str, field: Optional[str] = None) -> None:
        where = f" (field {field})" if field else ""
        super().__init__(f"Agent OS answered {status} {code}{where}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.field = field


class LeaseUnavailable(AgentOSError):
    """No lease on a resource could be had within the wait: others hold it, its rate is used up,
    or the project is paused. ``reason`` is the server's own explanation."""

    def __init__(self, resource: str, reason: str, status: int) -> None:
        super().__init__(
            f"no lease on {resource!r}: {reason} "
            "(wait longer with lease(..., wait=...), or run when the resource is free)"
        )
        self.resource = resource
        self.reason = reason
        self.status = status


class DoNotRetry(Exception):
    """Raise inside a task to fail the run without a retry (exit code 78, or
    ``"retryable": false`` over HTTP): for input or configuration no retry can fix."""


class BadInput(DoNotRetry):
    """The task's input is wrong; the run fails without a retry."""
