"""A lease on a named resource (``openai``) for a job Agent OS does not run itself.

Taking one waits in the server's line (up to ``wait``); while it is held a background thread
renews it at about a third of its ``ttl``; leaving the ``with`` block releases it, also when the
block raises. A lease is never spooled: without Agent OS there is no lease to hold, so taking one
raises ``AgentOSUnavailable`` (cannot reach it) or ``LeaseUnavailable`` (others hold it).
"""

from __future__ import annotations

import threading
import urllib.parse
from types import TracebackType
from typing import TYPE_CHECKING, Any, Dict, Optional, Type

from ._log import warn
from .errors import AgentOSUnavailable, ApiError, LeaseUnavailable

if TYPE_CHECKING:
    from .client import Client, Duration


class Lease:
    """A held lease: ``id``, ``resource``, ``expires_at``; ``lost`` turns true when a renewal
    finds it gone (it expired while Agent OS could not be reached)."""

    def __init__(
        self,
        client: "Client",
        resource: str,
        *,
        ttl: "Duration" = 600,
        wait: "Duration" = 300,
        priority: Optional[int] = None,
        label: Optional[str] = None,
    ) -> None:
        from .client import duration_seconds, duration_text

        if not isinstance(resource, str) or not resource:
            raise ValueError("lease: name a resource declared in Agent OS's config.yaml, e.g. 'openai'")
        if priority is not None and (isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 100):
            raise ValueError(f"priority={priority!r}: a whole number from 0 to 100 (higher goes first)")
        self._client = client
        self.resource = resource
        self._ttl = duration_text(ttl, "ttl")
        self._ttl_seconds = duration_seconds(self._ttl)
        self._wait = duration_text(wait, "wait")
        self._wait_seconds = duration_seconds(self._wait)
        self.priority = priority
        self.label = label
        self.id: Optional[str] = None
        self.expires_at: Optional[str] = None
        self.lost = False
        self._stop = threading.Event()
        self._renewer: Optional[threading.Thread] = None

    @property
    def _path(self) -> str:
        return f"/api/v1/resources/{urllib.parse.quote(self.resource, safe='')}/leases"

    def acquire(self) -> "Lease":
        """Takes the lease, waiting in line up to ``wait``."""
        if self.id is not None:
            raise RuntimeError(f"the lease on {self.resource!r} is already held; a Lease is taken once")
        body: Dict[str, Any] = {"ttl": self._ttl, "wait": self._wait}
        if self.priority is not None:
            body["priority"] = self.priority
        if self.label:
            body["label"] = self.label
        client = self._client
        answer = client._call("POST", self._path, body, client.token, self._wait_seconds + client.timeout + 5)
        if answer.status in (409, 429):
            _, message, _ = answer.error_fields()
            raise LeaseUnavailable(self.resource, message or answer.describe(), answer.status)
        if answer.retryable:
            raise AgentOSUnavailable(
                f"cannot take a lease on {self.resource!r}: {answer.describe()}; leases are never spooled, "
                f"so the job must wait for Agent OS at {client.url} or go on without the lease"
            )
        if not answer.ok:
            code, message, field = answer.error_fields()
            raise ApiError(answer.status, code, f"lease on {self.resource!r}: {message}", field)
        doc = answer.json() or {}
        self.id = str(doc["id"])
        self.expires_at = doc.get("expires_at")
        ttl_ms = doc.get("ttl_ms")
        if isinstance(ttl_ms, int) and ttl_ms > 0:
            self._ttl_seconds = ttl_ms / 1000
        self._renewer = threading.Thread(target=self._renew_loop, name=f"agent-os-lease-{self.resource}", daemon=True)
        self._renewer.start()
        return self

    def _renew_loop(self) -> None:
        interval = max(self._ttl_seconds / 3, 0.2)
        told = False
        while not self._stop.wait(interval):
            client = self._client
            answer = client._call("POST", f"{self._path}/{self.id}/renew", {"ttl": self._ttl}, client.token, None)
            if answer.ok:
                doc = answer.json() or {}
                self.expires_at = doc.get("expires_at", self.expires_at)
                told = False
                continue
            if answer.status == 404:
                self.lost = True
                warn(f"the lease on {self.resource!r} was lost (it expired before it could be renewed); others may hold it now")
                return
            if not told:
                told = True
                warn(f"could not renew the lease on {self.resource!r} ({answer.describe()}); trying again")

    def release(self) -> None:
        """Stops renewing and gives the lease back. Safe to call twice."""
        self._stop.set()
        if self._renewer is not None and self._renewer is not threading.current_thread():
            self._renewer.join()
        if self.id is None or self.lost:
            return
        lease_id, self.id = self.id, None
        client = self._client
        answer = client._call("DELETE", f"{self._path}/{lease_id}", None, client.token, None)
        if not answer.ok and answer.status != 404:
            warn(f"could not release the lease on {self.resource!r} ({answer.describe()}); it ends when its ttl runs out")

    def __enter__(self) -> "Lease":
        return self.acquire()

    def __exit__(
        self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException], tb: Optional[TracebackType]
    ) -> None:
        self.release()
