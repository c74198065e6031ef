"""Talking to Agent OS: costs, pings, events, notifications, leases, and the spool behind them.

Reports never fail the job. A report that cannot be sent (no connection, a timeout, 5xx, 408,
429) goes to the local spool and is sent later, in order, before the next report, at exit, or
by ``python3 -m agent_os flush``. A report Agent OS refuses (another 4xx) is the caller's
mistake: a warning on stderr, never an exception and never spooled.
"""

from __future__ import annotations

import atexit
import datetime as _dt
import hashlib
import json
import os
import re
import threading
import time
import urllib.parse
import uuid
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from . import _http
from ._log import warn
from .capture import tail
from .costs import Amount, build_record, usage_from_response
from .env import current_run
from .errors import AgentOSUnavailable, ApiError
from .spool import DEFAULT_MAX_BYTES, DEFAULT_MAX_ENTRIES, FlushResult, Outcome, Spool, default_dir

if TYPE_CHECKING:
    from .checks import Check
    from .lease import Lease

PING_BODY_MAX = 100 * 1024
"""The most of a ping's body Agent OS keeps; the tail is sent."""
BATCH_MAX = 1000
"""The most cost records in one request."""
_BACKOFF_SECONDS = 3.0
_EXIT_FLUSH_SECONDS = 10.0
_INLINE_FLUSH_SECONDS = 5.0
_PING_ACTIONS = {"start": "start", "success": "", "ok": "", "fail": "fail", "failure": "fail", "log": "log"}

PingKind = Union[str, int]
"""``"start"``, ``"success"``, ``"fail"``, ``"log"``, or an exit status 0 to 255."""
Duration = Union[int, float, str, _dt.timedelta]
"""Seconds, a ``timedelta``, or a duration string as Agent OS writes it (``"30s"``, ``"10m"``)."""


def _env_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        warn(f"{name}={raw!r} is not a whole number; using {default}")
        return default
    return value if value > 0 else default


def duration_text(value: Duration, name: str) -> str:
    """A duration as Agent OS reads it: whole milliseconds (``"1500ms"``), or the string given."""
    if isinstance(value, str):
        return value
    if isinstance(value, _dt.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be seconds, a timedelta or a string like '10m', not {value!r}")
    else:
        seconds = float(value)
    if seconds < 0:
        raise ValueError(f"{name}={value!r} is negative")
    return f"{round(seconds * 1000)}ms"


def duration_seconds(value: Duration) -> float:
    """Seconds in a duration (strings as Agent OS writes them: ``1h30m``, ``500ms``)."""
    if isinstance(value, _dt.timedelta):
        return value.total_seconds()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)", str(value))
    if not parts or "".join(n + u for n, u in parts) != str(value):
        raise ValueError(f"{value!r} is not a duration; write e.g. 30s, 10m or 1h30m")
    return sum(float(n) * units[u] for n, u in parts)


def _content_hash(*parts: Any) -> str:
    text = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)[:60] or "_"


class _PingTarget:
    """Where a slug's pings go, or why that is not known now."""

    def __init__(self, url: Optional[str] = None, missing: str = "", later: str = "", refused: str = "") -> None:
        self.url = url
        self.missing = missing  # no such check: drop
        self.later = later  # cannot ask now: keep
        self.refused = refused  # the token was refused: as any report refused so


class Client:
    """A connection to one Agent OS server with one token.

    Every argument defaults to the environment Agent OS gives a task: ``AGENT_OS_URL``,
    ``AGENT_OS_TOKEN``, ``AGENT_OS_PROJECT``, plus ``AGENT_OS_PING_KEY`` (the project's ping
    key, for check pings without a lookup), ``AGENT_OS_SPOOL`` (the spool directory),
    ``AGENT_OS_SPOOL_MAX_ENTRIES`` and ``AGENT_OS_SPOOL_MAX_BYTES``.
    """

    def __init__(
        self,
        url: Optional[str] = None,
        token: Optional[str] = None,
        *,
        project: Optional[str] = None,
        ping_key: Optional[str] = None,
        timeout: float = 5.0,
        spool: bool = True,
        spool_dir: Union[str, Path, None] = None,
        spool_max_entries: Optional[int] = None,
        spool_max_bytes: Optional[int] = None,
        environ: Optional[Mapping[str, str]] = None,
    ) -> None:
        env = os.environ if environ is None else environ
        self.url = (url or env.get("AGENT_OS_URL") or "").strip().rstrip("/") or None
        self.token = token or env.get("AGENT_OS_TOKEN") or None
        self.project = project or env.get("AGENT_OS_PROJECT") or None
        self.ping_key = ping_key or env.get("AGENT_OS_PING_KEY") or None
        self.timeout = timeout
        self.spool: Optional[Spool] = None
        if spool and self.url:
            directory = Path(spool_dir).expanduser() if spool_dir is not None else default_dir(env)
            self.spool = Spool(
                directory / self._spool_name(),
                max_entries=spool_max_entries or _env_int(env, "AGENT_OS_SPOOL_MAX_ENTRIES", DEFAULT_MAX_ENTRIES),
                max_bytes=spool_max_bytes or _env_int(env, "AGENT_OS_SPOOL_MAX_BYTES", DEFAULT_MAX_BYTES),
            )
        self._lock = threading.Lock()
        self._counters: Dict[Tuple[str, ...], int] = {}
        self._ping_urls: Dict[str, str] = {}
        self._down_until = 0.0
        self._outage_told = False
        self._unconfigured_told = False
        self._token_told = False
        _clients.add(self)

    def _spool_name(self) -> str:
        assert self.url is not None
        parts = urllib.parse.urlsplit(self.url)
        server = f"{parts.hostname or 'server'}_{parts.port or ('443' if parts.scheme == 'https' else '80')}"
        if self.project:
            who = self.project
        elif self.token:
            who = "token-" + hashlib.sha256(self.token.encode()).hexdigest()[:12]
        else:
            who = "anonymous"
        digest = hashlib.sha256(f"{self.url}\n{who}".encode()).hexdigest()[:10]
        return f"{_safe(server)}-{_safe(who)}-{digest}.jsonl"

    def __repr__(self) -> str:  # never the token
        return f"Client(url={self.url!r}, project={self.project!r})"

    # Plain API calls (raise) ---------------------------------------------------------------

    def request(self, method: str, path: str, body: Any = None, *, timeout: Optional[float] = None) -> Any:
        """Calls the API and answers the parsed JSON (``None`` for an empty answer). Raises
        ``AgentOSUnavailable`` when Agent OS cannot be reached or answers 5xx/408/429, and
        ``ApiError`` for another error answer. Nothing is spooled."""
        answer = self._call(method, path, body, self.token, timeout)
        if answer.ok:
            return answer.json()
        if answer.retryable:
            raise AgentOSUnavailable(f"{method} {path}: {answer.describe()}; is Agent OS running at {self.url}?")
        code, message, field = answer.error_fields()
        raise ApiError(answer.status, code, message, field)

    def _call(self, method: str, path: str, body: Any, token: Optional[str], timeout: Optional[float]) -> _http.Answer:
        if not self.url:
            return _http.Answer(0, problem="AGENT_OS_URL is not set: give the server's URL (Client(url=...))")
        return _http.request(
            method, self.url + path, token=token, json_body=body, timeout=self.timeout if timeout is None else timeout
        )

    # Keys --------------------------------------------------------------------------------

    def _next(self, *key: str) -> int:
        with self._lock:
            n = self._counters.get(key, 0) + 1
            self._counters[key] = n
            return n

    def cost_key(self, label: Optional[str] = None) -> str:
        """The idempotency key of the next cost: ``{run}-{attempt}-{label}`` inside a run (the
        label defaults to the cost's place in the attempt: ``c1``, ``c2``, …), else a random key."""
        run = current_run()
        if run is None:
            return uuid.uuid4().hex
        if label is None:
            label = f"c{self._next('cost', run.run_id, str(run.attempt))}"
        return f"{run.run_id}-{run.attempt}-{label}"[:200]

    def _content_key(self, kind: str, *content: Any) -> str:
        """Inside a run, a key made of the run id and the content (and how many times the same
        content went before in this run), so a retried attempt does not send it twice."""
        run = current_run()
        if run is None:
            return uuid.uuid4().hex
        digest = _content_hash(kind, *content)
        n = self._next(kind, run.run_id, digest)
        return f"{run.run_id}-{kind[0]}{digest}-{n}"[:100]

    # Costs -------------------------------------------------------------------------------

    def report_cost(
        self,
        service: str,
        amount: Optional[Amount] = None,
        *,
        model: Optional[str] = None,
        tokens_in: Optional[int] = None,
        tokens_out: Optional[int] = None,
        tokens_cached_in: Optional[int] = None,
        currency: Optional[str] = None,
        key_name: Optional[str] = None,
        label: Optional[str] = None,
        idempotency_key: Optional[str] = None,
        at: Union[_dt.datetime, str, None] = None,
        metadata: Optional[Mapping[str, Any]] = None,
    ) -> str:
        """Reports one cost and answers its idempotency key. Without ``amount``, give ``model``
        and tokens: Agent OS prices them from its price table."""
        record = self.prepare_cost(
            service,
            amount,
            model=model,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            tokens_cached_in=tokens_cached_in,
            currency=currency,
            key_name=key_name,
            label=label,
            idempotency_key=idempotency_key,
            at=at,
            metadata=metadata,
        )
        self._submit(self._api_entry("cost", "/api/v1/costs", record))
        return str(record["idempotency_key"])

    def prepare_cost(
        self,
        service: str,
        amount: Optional[Amount] = None,
        *,
        label: Optional[str] = None,
        idempotency_key: Optional[str] = None,
        **fields: Any,
    ) -> Dict[str, Any]:
        """The record ``report_cost`` would send, with its key and (inside a run) ``run_id``."""
        run = current_run()
        return build_record(
            service,
            amount,
            idempotency_key=idempotency_key or self.cost_key(label),
            run_id=run.run_id if run else None,
            **fields,
        )

    def record_llm_usage(
        self,
        response: Any,
        *,
        label: Optional[str] = None,
        metadata: Optional[Mapping[str, Any]] = None,
        service: Optional[str] = None,
        model: Optional[str] = None,
        key_name: Optional[str] = None,
        idempotency_key: Optional[str] = None,
        at: Union[_dt.datetime, str, None] = None,
    ) -> str:
        """Reports the tokens of an OpenAI, Anthropic or Gemini response, without an amount:
        Agent OS prices them. Answers the idempotency key."""
        provider, tokens = llm_usage_fields(response, service, model)
        return self.report_cost(
            provider,
            **tokens,
            key_name=key_name,
            label=label,
            idempotency_key=idempotency_key,
            at=at,
            metadata=metadata,
        )

    def cost_batch(self) -> "CostBatch":
        """Collects costs and sends them together when the ``with`` block ends."""
        return CostBatch(self)

    def send_cost_records(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Sends prepared records (from ``prepare_cost``) as batches of at most 1000."""
        for i in range(0, len(records), BATCH_MAX):
            chunk = [dict(r) for r in records[i : i + BATCH_MAX]]
            self._submit(self._api_entry("cost", "/api/v1/costs", {"records": chunk}))

    # Events and notifications -------------------------------------------------------------

    def emit(self, type: str, data: Optional[Mapping[str, Any]] = None, idempotency_key: Optional[str] = None) -> str:
        """Emits an event (``trading.volatility_spike``) and answers its idempotency key. Inside a
        run the key is made of the run id and the event, so a retried attempt emits it once."""
        if not isinstance(type, str) or not type:
            raise ValueError("type: name the event as dotted lower-case words, e.g. 'trading.volatility_spike'")
        payload = dict(data) if data is not None else {}
        _check_json(payload, "data")
        key = idempotency_key or self._content_key("event", type, payload)
        if not 1 <= len(key) <= 100:
            raise ValueError("idempotency_key: 1 to 100 characters")
        self._submit(self._api_entry("event", "/api/v1/events", {"type": type, "data": payload, "idempotency_key": key}))
        return key

    def notify(
        self,
        title: str,
        body: Optional[str] = None,
        severity: str = "info",
        *,
        tags: Optional[Sequence[str]] = None,
        dedup_key: Optional[str] = None,
        idempotency_key: Optional[str] = None,
    ) -> str:
        """Sends a notification through Agent OS's channels and answers its idempotency key
        (always sent, so a resend is delivered once)."""
        if not isinstance(title, str) or not title:
            raise ValueError("title: say what happened in a short line")
        if severity not in ("info", "warning", "critical"):
            raise ValueError(f"severity={severity!r}: one of 'info', 'warning', 'critical'")
        doc: Dict[str, Any] = {"title": title, "severity": severity}
        if body is not None:
            doc["body"] = body
        if tags is not None:
            if isinstance(tags, str):
                raise TypeError("tags is a list of strings, e.g. ['index']")
            doc["tags"] = list(tags)
        if dedup_key is not None:
            doc["dedup_key"] = dedup_key
        key = idempotency_key or self._content_key("notification", doc)
        if not 1 <= len(key) <= 100:
            raise ValueError("idempotency_key: 1 to 100 characters")
        doc["idempotency_key"] = key
        self._submit(self._api_entry("notification", "/api/v1/notifications", doc))
        return key

    # Pings and checks ----------------------------------------------------------------------

    def ping(self, slug: str, kind: PingKind = "success", *, body: Union[str, bytes, None] = None, rid: Optional[str] = None) -> str:
        """Pings a heartbeat check. ``slug`` is the check's slug (or its full ping URL); ``kind``
        is ``start``, ``success``, ``fail``, ``log`` or an exit status. Answers the ping's run id
        (``rid``), which pairs a start with its finish."""
        if isinstance(kind, bool):
            raise TypeError("kind is 'start', 'success', 'fail', 'log' or an exit status")
        if isinstance(kind, int):
            if not 0 <= kind <= 255:
                raise ValueError(f"exit status {kind} is not 0 to 255")
            action = str(kind)
        elif kind in _PING_ACTIONS:
            action = _PING_ACTIONS[kind]
        else:
            raise ValueError(f"kind={kind!r}: one of 'start', 'success', 'fail', 'log', or an exit status 0-255")
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else (body or "")
        rid = rid or uuid.uuid4().hex
        entry: Dict[str, Any] = {
            "kind": "ping",
            "slug": slug,
            "action": action,
            "rid": rid,
            "body": tail(text, PING_BODY_MAX),
            "at": time.time(),
        }
        self._submit(entry)
        return rid

    def check(self, slug: str) -> "Check":
        """Pings a check around a block or a function: start, then success or fail with the tail
        of the block's output. See ``agent_os.check``."""
        from .checks import Check

        return Check(slug, self)

    def prices(self, model: Optional[str] = None) -> List[Dict[str, Any]]:
        """The token prices Agent OS prices amount-less costs with (``GET /api/v1/prices``),
        optionally only the models whose name contains ``model``."""
        query = "?" + urllib.parse.urlencode({"model": model}) if model else ""
        found = self.request("GET", "/api/v1/prices" + query)
        return [p for p in found if isinstance(p, dict)] if isinstance(found, list) else []

    def checks(self, project: Optional[str] = None) -> List[Dict[str, Any]]:
        """The heartbeat checks this token sees (``GET /api/v1/checks``)."""
        project = project or self.project
        query = "?" + urllib.parse.urlencode({"project": project}) if project else ""
        found = self.request("GET", "/api/v1/checks" + query)
        return [c for c in found if isinstance(c, dict)] if isinstance(found, list) else []

    def _ping_target(self, slug: str) -> _PingTarget:
        if slug.startswith(("http://", "https://")):
            return _PingTarget(slug.rstrip("/"))
        if self.ping_key and self.url:
            return _PingTarget(f"{self.url}/ping/{urllib.parse.quote(self.ping_key)}/{urllib.parse.quote(slug)}")
        with self._lock:
            cached = self._ping_urls.get(slug)
        if cached:
            return _PingTarget(cached)
        if not self.token:
            return _PingTarget(missing=f"check {slug!r}: set AGENT_OS_PING_KEY or AGENT_OS_TOKEN, or give the ping URL")
        query = "?" + urllib.parse.urlencode({"project": self.project}) if self.project else ""
        answer = self._call("GET", "/api/v1/checks" + query, None, self.token, None)
        if not answer.ok:
            if answer.retryable:
                return _PingTarget(later=answer.describe())
            if answer.status == 401:
                return _PingTarget(refused=f"looking up check {slug!r}: {answer.describe()}")
            return _PingTarget(missing=f"looking up check {slug!r}: {answer.describe()}")
        found = [c for c in answer.json() or [] if isinstance(c, dict) and c.get("slug") == slug]
        if len(found) != 1:
            where = f" of project {self.project!r}" if self.project else ""
            problem = "no check" if not found else "several checks"
            return _PingTarget(
                missing=f"{problem} named {slug!r}{where}; declare it under `checks:` in agent-os.yaml, "
                "or set AGENT_OS_PROJECT, or give the full ping URL"
            )
        url = str(found[0]["ping_url"])
        with self._lock:
            self._ping_urls[slug] = url
        return _PingTarget(url)

    # Leases ------------------------------------------------------------------------------

    def lease(
        self,
        resource: str,
        *,
        ttl: Duration = 600,
        wait: Duration = 300,
        priority: Optional[int] = None,
        label: Optional[str] = None,
    ) -> "Lease":
        """A lease on a named resource, as a context manager. See ``agent_os.lease``."""
        from .lease import Lease

        return Lease(self, resource, ttl=ttl, wait=wait, priority=priority, label=label)

    # Sending and the spool -----------------------------------------------------------------

    def _api_entry(self, kind: str, path: str, body: Dict[str, Any]) -> Dict[str, Any]:
        return {"kind": kind, "path": path, "body": body, "token": self.token, "at": time.time()}

    def _submit(self, entry: Dict[str, Any]) -> None:
        if not self.url:
            if not self._unconfigured_told:
                self._unconfigured_told = True
                warn(
                    f"AGENT_OS_URL is not set, so this {entry['kind']} (and any later report) is not sent "
                    "to Agent OS; set AGENT_OS_URL and AGENT_OS_TOKEN"
                )
            return
        spool = self.spool
        try:
            if spool is not None and (spool.pending() or time.monotonic() < self._down_until):
                if time.monotonic() >= self._down_until:
                    # A long backlog is sent a few seconds at a time, by this report and the next.
                    self._flush(spool, time.monotonic() + _INLINE_FLUSH_SECONDS)
                if spool.pending() or time.monotonic() < self._down_until:
                    spool.append(entry)
                    return
            outcome, answer = self._deliver(entry, spooled=False)
            if outcome is Outcome.KEEP:
                self._went_down(answer)
                if spool is None:
                    warn(f"this {entry['kind']} was not sent ({answer.describe()}) and is lost: the spool is off")
                    return
                spool.append(entry)
        except OSError as e:
            warn(
                f"the spool {spool.path if spool is not None else ''} cannot be used ({e}), so this {entry['kind']} may be lost; "
                "set AGENT_OS_SPOOL to a writable directory"
            )

    def _went_down(self, answer: _http.Answer) -> None:
        self._down_until = time.monotonic() + _BACKOFF_SECONDS
        if not self._outage_told and self.spool is not None:
            self._outage_told = True
            warn(
                f"Agent OS did not take a report ({answer.describe()}); reports are kept in "
                f"{self.spool.path} and sent when it answers again"
            )

    def flush(self, timeout: Optional[float] = None) -> FlushResult:
        """Sends what the spool holds, oldest first, each once. Answers how it went;
        ``remaining`` entries wait for the next try."""
        if self.spool is None:
            return FlushResult()
        deadline = time.monotonic() + timeout if timeout is not None else None
        return self._flush(self.spool, deadline)

    def _flush(self, spool: Spool, deadline: Optional[float]) -> FlushResult:
        result = spool.flush(lambda e: self._deliver(e, spooled=True)[0], deadline)
        if result.failed:
            self._down_until = time.monotonic() + _BACKOFF_SECONDS
        elif not result.remaining and not result.busy and self._outage_told:
            self._outage_told = False
            warn(f"Agent OS answers again: sent {result.sent} spooled report(s)")
        return result

    def _deliver(self, entry: Dict[str, Any], spooled: bool) -> Tuple[Outcome, _http.Answer]:
        kind = entry.get("kind")
        if kind == "ping":
            return self._deliver_ping(entry, spooled)
        if kind not in ("cost", "event", "notification") or not isinstance(entry.get("path"), str):
            warn(f"a spooled entry of unknown kind {kind!r} was dropped (written by a newer agent_os?)")
            return Outcome.DROPPED, _http.Answer(0)
        path = str(entry["path"])
        token = entry.get("token") or self.token
        answer = self._call("POST", path, entry.get("body"), token, None)
        if answer.status == 401 and self.token and token != self.token:
            # The token it was made with is gone (a run token ends with its attempt): the
            # current token of the same project sends it; a cost keeps its run_id.
            answer = self._call("POST", path, entry.get("body"), self.token, None)
        if answer.ok:
            if kind == "cost":
                _warn_unpriced(entry.get("body"), answer)
            return Outcome.SENT, answer
        if answer.retryable:
            return Outcome.KEEP, answer
        if answer.status == 401 and spooled:
            if not self._token_told:
                self._token_told = True
                where = self.spool.path if self.spool is not None else "the spool"
                warn(
                    f"a spooled {kind} was refused: {answer.describe()}. It waits in {where} with the reports "
                    "behind it; set AGENT_OS_TOKEN to a token of the project and run `python3 -m agent_os flush`"
                )
            return Outcome.KEEP, answer
        warn(f"Agent OS refused a {kind}: {answer.describe()}; it is not sent again")
        return Outcome.DROPPED, answer

    def _deliver_ping(self, entry: Dict[str, Any], spooled: bool) -> Tuple[Outcome, _http.Answer]:
        slug = str(entry.get("slug", ""))
        target = self._ping_target(slug)
        if target.later:
            return Outcome.KEEP, _http.Answer(0, problem=target.later)
        if target.refused:
            if spooled:  # kept for a valid token, as a spooled report refused with 401 is
                if not self._token_told:
                    self._token_told = True
                    warn(f"a spooled ping waits for a valid token: {target.refused}; set AGENT_OS_TOKEN or AGENT_OS_PING_KEY")
                return Outcome.KEEP, _http.Answer(401)
            warn(f"ping not sent: {target.refused}")
            return Outcome.DROPPED, _http.Answer(401)
        if not target.url:
            warn(f"ping not sent: {target.missing}")
            return Outcome.DROPPED, _http.Answer(404)
        action = str(entry.get("action", ""))
        query = {"rid": str(entry.get("rid", ""))}
        if spooled:
            query["ts"] = f"{float(entry.get('at', time.time())):.3f}"
        url = f"{target.url}/{action}" if action else target.url
        body = str(entry.get("body") or "").encode("utf-8")
        answer = _http.request(
            "POST", f"{url}?{urllib.parse.urlencode(query)}", body=body, content_type="text/plain; charset=utf-8",
            timeout=self.timeout,
        )
        if answer.ok:
            return Outcome.SENT, answer
        if answer.retryable:
            return Outcome.KEEP, answer
        if answer.status == 404 and not slug.startswith(("http://", "https://")):
            with self._lock:
                self._ping_urls.pop(slug, None)
        warn(f"ping of check {slug!r} refused: {answer.describe()}; it is not sent again")
        return Outcome.DROPPED, answer


def llm_usage_fields(response: Any, service: Optional[str], model: Optional[str]) -> Tuple[str, Dict[str, Any]]:
    """The service of an LLM response and the cost fields of its usage (model and tokens, no
    amount: Agent OS prices them); ``model`` and ``service`` override what the response says."""
    usage = usage_from_response(response, service)
    model = model or usage.model
    if not model:
        raise ValueError("the response names no model; pass model='…' so Agent OS can price its tokens")
    return usage.service, {
        "model": model,
        "tokens_in": usage.tokens_in,
        "tokens_out": usage.tokens_out,
        "tokens_cached_in": usage.tokens_cached_in,
    }


class CostBatch:
    """Costs collected in a ``with`` block and sent when it ends, in requests of at most 1000
    records (each all or nothing). Costs are sent even when the block raises: the money was
    spent."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self.records: List[Dict[str, Any]] = []

    def add(self, service: str, amount: Optional[Amount] = None, **fields: Any) -> str:
        """Adds a cost (the arguments of ``report_cost``); answers its idempotency key."""
        record = self._client.prepare_cost(service, amount, **fields)
        self.records.append(record)
        return str(record["idempotency_key"])

    def add_llm_usage(self, response: Any, *, service: Optional[str] = None, model: Optional[str] = None, **fields: Any) -> str:
        """Adds the tokens of an LLM response (as ``record_llm_usage``)."""
        provider, tokens = llm_usage_fields(response, service, model)
        return self.add(provider, **tokens, **fields)

    def send(self) -> None:
        """Sends what was added so far."""
        records, self.records = self.records, []
        if records:
            self._client.send_cost_records(records)

    def __enter__(self) -> "CostBatch":
        return self

    def __exit__(self, *exc: object) -> None:
        self.send()


def _warn_unpriced(body: Any, answer: _http.Answer) -> None:
    """Tells on stderr when Agent OS has no price for a model whose tokens were sent."""
    doc = answer.json()
    count = doc.get("unpriced") if isinstance(doc, dict) else None
    if not isinstance(count, int) or count <= 0:
        return
    records = body.get("records", [body]) if isinstance(body, dict) else []
    models = sorted({str(r.get("model")) for r in records if isinstance(r, dict) and "amount" not in r})
    warn(
        f"Agent OS has no price for {', '.join(models) or 'a model'}: {count} cost record(s) stored with their "
        "tokens and no amount, counted in no total until config.yaml's `prices:` names the model"
    )


def _check_json(value: Any, name: str) -> None:
    try:
        json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name} must be JSON (dicts, lists, strings, numbers, booleans, None): {e}") from None


# Flushing at exit -------------------------------------------------------------------------

_clients: "weakref.WeakSet[Client]" = weakref.WeakSet()


def _flush_at_exit() -> None:
    deadline = time.monotonic() + _EXIT_FLUSH_SECONDS
    for client in list(_clients):
        spool = client.spool
        if spool is None or not spool.pending():
            continue
        try:
            result = client._flush(spool, deadline)
        except OSError as e:
            warn(f"could not send the spool {spool.path} at exit: {e}")
            continue
        if result.remaining and not result.busy:
            warn(
                f"{result.remaining} report(s) wait in {spool.path} for Agent OS; they are sent by the next "
                "job that reports, or by `python3 -m agent_os flush`"
            )


atexit.register(_flush_at_exit)
