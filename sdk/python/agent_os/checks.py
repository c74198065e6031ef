"""A heartbeat check around a block of code: Healthchecks-style start, success and fail pings.

The finish ping carries the tail of what the block printed (and, on failure, the traceback), so
the check shows why a job failed. The check never changes what the block does: its exception
propagates unchanged, and a ping that cannot be sent is spooled, never raised.
"""

from __future__ import annotations

import functools
import traceback
import uuid
from contextlib import AbstractContextManager
from types import TracebackType
from typing import TYPE_CHECKING, Any, Callable, Optional, Type, TypeVar, cast

from ._log import warn
from .capture import TailBuffer, capture, tail

if TYPE_CHECKING:
    from .client import Client

LOG_TAIL_BYTES = 10 * 1024
"""The most of the block's output sent with the finish ping (its end is kept)."""

F = TypeVar("F", bound=Callable[..., Any])


class Check:
    """``with check("nightly-export"):`` or ``@check("nightly-export")``."""

    def __init__(self, slug: str, client: Optional["Client"] = None) -> None:
        if not isinstance(slug, str) or not slug:
            raise ValueError("check: give the check's slug (from agent-os.yaml `checks:`) or its ping URL")
        self.slug = slug
        self._client = client
        self.rid: Optional[str] = None
        self._capture: Optional[AbstractContextManager[TailBuffer]] = None
        self._buffer: Optional[TailBuffer] = None

    def _the_client(self) -> "Client":
        if self._client is None:
            from . import default_client

            self._client = default_client()
        return self._client

    def _ping(self, kind: Any, body: Optional[str] = None) -> None:
        try:
            self._the_client().ping(self.slug, kind, body=body, rid=self.rid)
        except Exception as e:  # a check never fails the job it watches
            warn(f"check {self.slug!r}: the {kind} ping was not sent: {e}")

    def __enter__(self) -> "Check":
        self.rid = uuid.uuid4().hex
        self._ping("start")
        self._capture = capture(LOG_TAIL_BYTES)
        self._buffer = self._capture.__enter__()
        return self

    def __exit__(
        self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException], tb: Optional[TracebackType]
    ) -> None:
        log = self._buffer.text() if self._buffer is not None else ""
        if self._capture is not None:
            self._capture.__exit__(None, None, None)
            self._capture = None
        if exc is None:
            self._ping("success", log)
        elif isinstance(exc, SystemExit) and (exc.code is None or exc.code == 0):
            self._ping("success", log)
        else:
            trace = "".join(traceback.format_exception(exc_type, exc, tb))
            body = tail(log + ("\n" if log and not log.endswith("\n") else "") + trace, LOG_TAIL_BYTES)
            if isinstance(exc, SystemExit) and isinstance(exc.code, int) and 0 < exc.code <= 255:
                self._ping(exc.code, body)
            else:
                self._ping("fail", body)

    def __call__(self, fn: F) -> F:
        @functools.wraps(fn)
        def watched(*args: Any, **kwargs: Any) -> Any:
            with Check(self.slug, self._client):
                return fn(*args, **kwargs)

        return cast(F, watched)
