"""One HTTP request to Agent OS with the standard library, and what came of it.

A request never raises for what the network or the server did: the answer says whether it
arrived (``status``), whether trying again later may help (``retryable``), and why not.
"""

from __future__ import annotations

import http.client
import json
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Mapping, Optional

from . import __about__


@dataclass
class Answer:
    """What a request came to. ``status`` is 0 when no HTTP answer arrived."""

    status: int
    body: bytes = b""
    problem: str = ""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def retryable(self) -> bool:
        """No answer, a timeout, 408, 429 or 5xx: the same request may work later."""
        return self.status == 0 or self.status in (408, 429) or self.status >= 500

    def json(self) -> Any:
        try:
            return json.loads(self.body.decode("utf-8")) if self.body else None
        except (UnicodeDecodeError, ValueError):
            return None

    def describe(self) -> str:
        """The reason in one line: the server's error message, or the network's."""
        if self.status == 0:
            return self.problem or "no answer"
        doc = self.json()
        if isinstance(doc, dict) and isinstance(doc.get("error"), dict):
            err = doc["error"]
            field = f" (field {err['field']})" if err.get("field") else ""
            return f"{self.status} {err.get('code', '')}{field}: {err.get('message', '')}"
        text = self.body[:300].decode("utf-8", "replace").strip()
        return f"{self.status} {text}".strip()

    def error_fields(self) -> "tuple[str, str, Optional[str]]":
        doc = self.json()
        if isinstance(doc, dict) and isinstance(doc.get("error"), dict):
            err = doc["error"]
            return str(err.get("code", "")), str(err.get("message", "")), err.get("field")
        return "", self.body[:300].decode("utf-8", "replace"), None


def request(
    method: str,
    url: str,
    *,
    token: Optional[str] = None,
    json_body: Any = None,
    body: Optional[bytes] = None,
    content_type: Optional[str] = None,
    timeout: float = 5.0,
    headers: Optional[Mapping[str, str]] = None,
) -> Answer:
    """Sends one request. ``json_body`` (any JSON value) is sent as ``application/json``."""
    data = body
    hdrs = {"User-Agent": f"agent-os-python/{__about__.VERSION}", "Accept": "application/json"}
    if json_body is not None:
        data = json.dumps(json_body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        hdrs["Content-Type"] = "application/json"
    elif content_type:
        hdrs["Content-Type"] = content_type
    if token:
        hdrs["Authorization"] = f"Bearer {token}"
    if headers:
        hdrs.update(headers)
    req = urllib.request.Request(url, data=data, headers=hdrs, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return Answer(resp.status, resp.read())
    except urllib.error.HTTPError as e:
        try:
            payload = e.read()
        except (OSError, http.client.HTTPException):
            payload = b""
        return Answer(e.code, payload)
    except urllib.error.URLError as e:
        return Answer(0, problem=f"cannot reach {url}: {e.reason}")
    except socket.timeout:
        return Answer(0, problem=f"no answer from {url} within {timeout:g}s")
    except (OSError, http.client.HTTPException) as e:
        return Answer(0, problem=f"connection to {url} failed: {e.__class__.__name__}: {e}")
