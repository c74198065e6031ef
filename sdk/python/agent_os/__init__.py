"""Agent OS for Python: be a plugin, run tasks, and report to Agent OS without ever failing the
job because Agent OS is away.

Standard library only. Speaks plugin protocol v1. See docs/python.md.
"""

from __future__ import annotations

import datetime as _dt
import threading
from typing import Any, Mapping, Optional, Sequence, Union

from .__about__ import PROTOCOL, VERSION
from .checks import Check
from .client import BATCH_MAX, Client, CostBatch, Duration, PingKind
from .costs import Amount, LlmUsage, build_record as cost_record, format_amount, usage_from_response
from .env import RunInfo, attempt, current_run, find_env_file, load_env, parse_env, project, run_id, task_name
from .errors import AgentOSError, AgentOSUnavailable, ApiError, BadInput, DoNotRetry, LeaseUnavailable
from .http_plugin import PluginApp, make_server, serve_http, sign, verify
from .lease import Lease
from .plugin import CostReport, Plugin, Schedule, Status, serve, serve_command
from .spool import FlushResult
from .task import EXIT_DO_NOT_RETRY, EXIT_FAILED, EXIT_OK, TaskContext, TaskFunction, read_input, task, task_context

__version__ = VERSION

__all__ = [
    "PROTOCOL",
    "__version__",
    # talking to Agent OS
    "Client",
    "default_client",
    "configure",
    "report_cost",
    "record_llm_usage",
    "cost_batch",
    "CostBatch",
    "cost_record",
    "format_amount",
    "usage_from_response",
    "LlmUsage",
    "Amount",
    "BATCH_MAX",
    "check",
    "Check",
    "ping",
    "PingKind",
    "lease",
    "Lease",
    "Duration",
    "emit",
    "notify",
    "flush",
    "FlushResult",
    # inside a task
    "task",
    "TaskFunction",
    "task_context",
    "TaskContext",
    "read_input",
    "EXIT_OK",
    "EXIT_FAILED",
    "EXIT_DO_NOT_RETRY",
    "RunInfo",
    "current_run",
    "run_id",
    "attempt",
    "project",
    "task_name",
    "load_env",
    "parse_env",
    "find_env_file",
    # being a plugin
    "Plugin",
    "Status",
    "CostReport",
    "Schedule",
    "serve",
    "serve_command",
    "PluginApp",
    "make_server",
    "serve_http",
    "sign",
    "verify",
    # errors
    "AgentOSError",
    "AgentOSUnavailable",
    "ApiError",
    "LeaseUnavailable",
    "DoNotRetry",
    "BadInput",
]

_default: Optional[Client] = None
_default_lock = threading.Lock()


def default_client() -> Client:
    """The client the module-level functions use, made from the environment on first use
    (``AGENT_OS_URL``, ``AGENT_OS_TOKEN``, …; inside a task, its run token)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Client()
        return _default


def configure(url: Optional[str] = None, token: Optional[str] = None, **options: Any) -> Client:
    """Replaces the default client (arguments as ``Client``); answers it."""
    global _default
    client = Client(url, token, **options)
    with _default_lock:
        _default = client
    return client


def report_cost(
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
    """Reports one cost (see ``Client.report_cost``); answers its idempotency key."""
    return default_client().report_cost(
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


def record_llm_usage(
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
    """Reports an LLM response's tokens for Agent OS to price (see ``Client.record_llm_usage``)."""
    return default_client().record_llm_usage(
        response,
        label=label,
        metadata=metadata,
        service=service,
        model=model,
        key_name=key_name,
        idempotency_key=idempotency_key,
        at=at,
    )


def cost_batch() -> CostBatch:
    """``with agent_os.cost_batch() as b: b.add(...)`` sends the costs together at the end."""
    return default_client().cost_batch()


def check(slug: str) -> Check:
    """Pings the check ``slug`` around a block (``with``) or a function (decorator)."""
    return Check(slug)


def ping(slug: str, kind: PingKind = "success", *, body: Union[str, bytes, None] = None, rid: Optional[str] = None) -> str:
    """One ping of a check (see ``Client.ping``); answers its ``rid``."""
    return default_client().ping(slug, kind, body=body, rid=rid)


def lease(
    resource: str,
    *,
    ttl: Duration = 600,
    wait: Duration = 300,
    priority: Optional[int] = None,
    label: Optional[str] = None,
) -> Lease:
    """``with agent_os.lease("openai"):`` holds a lease on a resource for the block."""
    return default_client().lease(resource, ttl=ttl, wait=wait, priority=priority, label=label)


def emit(type: str, data: Optional[Mapping[str, Any]] = None, idempotency_key: Optional[str] = None) -> str:
    """Emits an event (see ``Client.emit``); answers its idempotency key."""
    return default_client().emit(type, data, idempotency_key)


def notify(
    title: str,
    body: Optional[str] = None,
    severity: str = "info",
    *,
    tags: Optional[Sequence[str]] = None,
    dedup_key: Optional[str] = None,
    idempotency_key: Optional[str] = None,
) -> str:
    """Sends a notification (see ``Client.notify``); answers its idempotency key."""
    return default_client().notify(
        title, body, severity, tags=tags, dedup_key=dedup_key, idempotency_key=idempotency_key
    )


def flush(timeout: Optional[float] = None) -> FlushResult:
    """Sends what the default client's spool holds (see ``Client.flush``)."""
    return default_client().flush(timeout)
