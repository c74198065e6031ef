"""Being a plugin over HTTP: a WSGI application and a small threaded server.

Every request is checked before anything else: its Standard Webhooks signature (HMAC-SHA256 with
the project's ``whsec_`` signing secret, compared in constant time, any of several ``v1,``
signatures), its timestamp (at most 5 minutes from our clock), and that the same
``(webhook-id, webhook-timestamp)`` pair was not seen before (a replay). Agent OS re-sends a task
attempt after a lost answer with the same ``webhook-id`` and a new timestamp: that is answered
from the stored answer instead of running the task twice.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import socketserver
import sys
import threading
import time
import traceback
import urllib.parse
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from . import env as _env
from .__about__ import PROTOCOL
from .capture import capture
from .errors import DoNotRetry
from .task import outputs_json

if TYPE_CHECKING:
    from .plugin import Plugin

TOLERANCE_SECONDS = 5 * 60
TASK_LOG_BYTES = 256 * 1024
_ANSWERS_KEPT = 1000
_ANSWER_TTL_SECONDS = 24 * 3600
_SEEN_MAX = 100_000

StartResponse = Callable[[str, List[Tuple[str, str]]], Any]


def decode_secret(secret: str) -> bytes:
    """The HMAC key of a ``whsec_…`` secret: the base64 after the prefix."""
    if not isinstance(secret, str) or not secret.startswith("whsec_"):
        raise ValueError(
            "the signing secret must start with whsec_; copy it from the project's registration answer "
            "or `agent-os project secret show NAME`"
        )
    try:
        return base64.b64decode(secret[len("whsec_") :], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the signing secret after whsec_ is not base64; copy it again, whole") from None


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value Agent OS sends for this message (``v1,…``)."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(decode_secret(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(
    secret: Union[str, Sequence[str]],
    msg_id: str,
    timestamp: str,
    signatures: str,
    body: bytes,
    now: Optional[float] = None,
) -> Optional[str]:
    """``None`` when the request was signed by Agent OS with ``secret`` (``whsec_…``, or a list
    of secrets any of which may have signed it) within the last 5 minutes; else why not.
    ``body`` is the raw bytes received, before any parsing. This does not catch a replay
    within the 5 minutes: ``PluginApp`` also remembers the pairs it has seen."""
    secrets = [secret] if isinstance(secret, str) else list(secret)
    return verify_keys([decode_secret(s) for s in secrets], msg_id, timestamp, signatures, body, now)


def verify_keys(
    keys: Sequence[bytes],
    msg_id: str,
    timestamp: str,
    signatures: str,
    body: bytes,
    now: Optional[float] = None,
    tolerance: int = TOLERANCE_SECONDS,
) -> Optional[str]:
    """``None`` when one of the ``v1,`` signatures matches one of the keys and the timestamp is
    within the tolerance; else why not."""
    if not msg_id or not timestamp or not signatures:
        return "unsigned: the webhook-id, webhook-timestamp and webhook-signature headers are required"
    if not timestamp.isdigit():
        return "webhook-timestamp is not Unix seconds"
    clock = time.time() if now is None else now
    if abs(clock - int(timestamp)) > tolerance:
        return "webhook-timestamp is more than 5 minutes from this server's clock (a replay, or a clock to set)"
    signed = f"{msg_id}.{timestamp}.".encode() + body
    expected = [base64.b64encode(hmac.new(k, signed, hashlib.sha256).digest()) for k in keys]
    matched = False
    for candidate in signatures.split():
        version, _, sig = candidate.partition(",")
        if version != "v1":
            continue
        for e in expected:
            # Every comparison is made, so the time taken does not tell which one matched.
            matched |= hmac.compare_digest(sig.encode(), e)
    return None if matched else "the signature does not match (a tampered body, or a different signing secret)"


class _Seen:
    """The (webhook-id, timestamp) pairs seen within the tolerance: a second sight is a replay."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pairs: "OrderedDict[Tuple[str, str], float]" = OrderedDict()

    def first_time(self, msg_id: str, timestamp: str) -> bool:
        now = time.time()
        with self._lock:
            while self._pairs:
                oldest, until = next(iter(self._pairs.items()))
                if until > now and len(self._pairs) < _SEEN_MAX:
                    break
                del self._pairs[oldest]
            key = (msg_id, timestamp)
            if key in self._pairs:
                return False
            # Kept until the timestamp itself would be refused as too old.
            self._pairs[key] = max(int(timestamp) + TOLERANCE_SECONDS + 1, now + 1)
            return True


class _Answers:
    """Answers of task attempts by idempotency key, so a re-sent attempt is not run again. A
    re-send that comes while the first is still running waits for its answer."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: "OrderedDict[str, Tuple[threading.Event, List[Dict[str, Any]], float]]" = OrderedDict()

    def once(self, key: str, run: Callable[[], Dict[str, Any]]) -> Dict[str, Any]:
        now = time.time()
        with self._lock:
            for k in [k for k, (_, _, at) in self._entries.items() if now - at > _ANSWER_TTL_SECONDS]:
                del self._entries[k]
            found = self._entries.get(key)
            if found is None:
                found = (threading.Event(), [], now)
                self._entries[key] = found
                while len(self._entries) > _ANSWERS_KEPT:
                    self._entries.popitem(last=False)
                mine = True
            else:
                mine = False
        done, slot, _ = found
        if not mine:
            done.wait()
            if slot:
                return slot[0]
            return {"status": "failed", "error": "the first delivery of this attempt ended without an answer", "retryable": True}
        try:
            answer = run()
        except BaseException:
            with self._lock:
                self._entries.pop(key, None)
            done.set()
            raise
        slot.append(answer)
        done.set()
        return answer


def _json_response(start_response: StartResponse, status: str, doc: Any) -> List[bytes]:
    body = json.dumps(doc, ensure_ascii=False).encode("utf-8")
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def _error(start_response: StartResponse, status: str, code: str, message: str) -> List[bytes]:
    return _json_response(start_response, status, {"error": {"code": code, "message": message}})


class PluginApp:
    """The WSGI application of a plugin: ``GET …/status``, ``GET …/schedule``,
    ``GET …/cost?since=``, ``POST …/tasks/{task}``, under any path prefix."""

    def __init__(self, plugin: "Plugin", secret: Union[str, Sequence[str]], *, max_body_bytes: int = 2 * 1024 * 1024) -> None:
        secrets = [secret] if isinstance(secret, str) else list(secret)
        if not secrets:
            raise ValueError("give the plugin's signing secret (whsec_…) from the project's registration answer")
        self._keys = [decode_secret(s) for s in secrets]
        self.plugin = plugin
        self.max_body_bytes = max_body_bytes
        self._seen = _Seen()
        self._answers = _Answers()

    def __call__(self, environ: Dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return _error(start_response, "400 Bad Request", "bad_request", "Content-Length is not a number")
        if length < 0 or length > self.max_body_bytes:
            return _error(start_response, "413 Payload Too Large", "payload_too_large", f"the body is over {self.max_body_bytes} bytes")
        # The raw bytes are what was signed: read them before anything parses them.
        body = environ["wsgi.input"].read(length) if length else b""
        msg_id = str(environ.get("HTTP_WEBHOOK_ID", ""))
        stamp = str(environ.get("HTTP_WEBHOOK_TIMESTAMP", ""))
        problem = verify_keys(self._keys, msg_id, stamp, str(environ.get("HTTP_WEBHOOK_SIGNATURE", "")), body)
        if problem is None and not self._seen.first_time(msg_id, stamp):
            problem = "this webhook-id and webhook-timestamp were seen before: a replay"
        if problem is not None:
            return _error(start_response, "401 Unauthorized", "unauthorized", problem)

        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        parts = [p for p in str(environ.get("PATH_INFO", "")).split("/") if p]
        if len(parts) >= 2 and parts[-2] == "tasks":
            if method != "POST":
                return _error(start_response, "405 Method Not Allowed", "method_not_allowed", "tasks are run with POST")
            return self._task(start_response, parts[-1], body, str(environ.get("HTTP_IDEMPOTENCY_KEY") or msg_id))
        op = {"status": "get_status", "schedule": "get_schedule", "cost": "report_cost"}.get(parts[-1] if parts else "")
        if op is None:
            return _error(start_response, "404 Not Found", "not_found", "routes: /status, /schedule, /cost, /tasks/{task}")
        if method not in ("GET", "HEAD"):
            return _error(start_response, "405 Method Not Allowed", "method_not_allowed", f"/{parts[-1]} is read with GET")
        since = urllib.parse.parse_qs(str(environ.get("QUERY_STRING", ""))).get("since", [None])[0]
        from .plugin import answer_probe

        try:
            doc = answer_probe(self.plugin, op, since)
        except Exception as e:
            traceback.print_exc()
            return _error(start_response, "500 Internal Server Error", "internal", f"{op} failed: {type(e).__name__}: {e}")
        return _json_response(start_response, "200 OK", doc)

    def _task(self, start_response: StartResponse, name: str, body: bytes, key: str) -> List[bytes]:
        try:
            request = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return _error(start_response, "400 Bad Request", "bad_request", "the task request is not JSON")
        if not isinstance(request, dict):
            return _error(start_response, "400 Bad Request", "bad_request", "the task request is not a JSON object")
        if request.get("protocol") != PROTOCOL:
            return _error(
                start_response,
                "400 Bad Request",
                "bad_request",
                f"Agent OS sent protocol {request.get('protocol')!r}; this plugin speaks protocol {PROTOCOL}: upgrade agent-os",
            )
        answer = self._answers.once(key, lambda: self._run(name, request))
        return _json_response(start_response, "200 OK", answer)

    def _run(self, name: str, request: Mapping[str, Any]) -> Dict[str, Any]:
        attempt = request.get("attempt")
        run = _env.RunInfo(
            str(request.get("run_id") or ""),
            attempt if isinstance(attempt, int) and not isinstance(attempt, bool) else 1,
            request.get("project") if isinstance(request.get("project"), str) else None,
            name,
        )
        token = _env._current.set(run if run.run_id else None)
        try:
            with capture(TASK_LOG_BYTES) as log:
                answer = self._attempt(name, request.get("input", {}))
            answer["log"] = log.text()
            return answer
        finally:
            _env._current.reset(token)

    def _attempt(self, name: str, input: Any) -> Dict[str, Any]:
        if not isinstance(input, dict):
            return {"status": "failed", "error": "the task's input is not a JSON object", "retryable": False}
        try:
            outputs = self.plugin.run_task(name, input)
            return {"status": "succeeded", "outputs": json.loads(outputs_json(outputs if outputs is not None else {}))}
        except DoNotRetry as e:
            print(f"{type(e).__name__}: {e} (not retried)", file=sys.stderr)
            return {"status": "failed", "error": f"{type(e).__name__}: {e}", "retryable": False}
        except SystemExit as e:
            # A task written for the command transport may exit: read its code as a command's.
            if e.code in (None, 0):
                return {"status": "succeeded", "outputs": {}}
            return {"status": "failed", "error": f"the task exited with {e.code}", "retryable": e.code != 78}
        except Exception as e:
            traceback.print_exc()
            return {"status": "failed", "error": f"{type(e).__name__}: {e}", "retryable": True}


class _Handler(WSGIRequestHandler):
    quiet = False

    def log_message(self, format: str, *args: Any) -> None:
        if not self.quiet:
            super().log_message(format, *args)


class PluginServer(socketserver.ThreadingMixIn, WSGIServer):
    """A threaded standard-library HTTP server; one thread per request."""

    daemon_threads = True
    allow_reuse_address = True


def make_server(
    plugin: "Plugin",
    host: str = "127.0.0.1",
    port: int = 8000,
    secret: Union[str, Sequence[str], None] = None,
    *,
    quiet: bool = False,
) -> PluginServer:
    """A server for ``plugin``, bound and ready for ``serve_forever()`` (port 0 picks a free
    one: ``server.server_port``). ``secret`` defaults to ``AGENT_OS_SIGNING_SECRET``."""
    secret = secret or os.environ.get("AGENT_OS_SIGNING_SECRET")
    if not secret:
        raise ValueError(
            "no signing secret: pass secret='whsec_…' or set AGENT_OS_SIGNING_SECRET to the secret "
            "the project's registration answered with (`agent-os project secret show NAME` shows it again)"
        )
    handler = type("Handler", (_Handler,), {"quiet": quiet})
    server = PluginServer((host, port), handler)
    server.set_app(plugin.wsgi_app(secret))
    return server


def serve_http(
    plugin: "Plugin",
    host: str = "127.0.0.1",
    port: int = 8000,
    secret: Union[str, Sequence[str], None] = None,
    *,
    quiet: bool = False,
) -> None:
    """Serves ``plugin`` over HTTP until interrupted; reports spooled while Agent OS was away
    are sent every 30 seconds."""
    server = make_server(plugin, host, port, secret, quiet=quiet)
    stop = threading.Event()

    def flush_spool() -> None:
        from . import default_client

        while not stop.wait(30):
            client = default_client()
            if client.spool is not None and client.spool.pending():
                client.flush(timeout=20)

    threading.Thread(target=flush_spool, name="agent-os-spool", daemon=True).start()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        server.server_close()
