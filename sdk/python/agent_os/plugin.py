"""Being a plugin: the four operations of plugin protocol v1 and the command transport.

Subclass ``Plugin``, override what the project can answer (``get_status``, ``report_cost``,
``get_schedule``) and register tasks; serve it with ``agent_os.serve(MyPlugin())`` from the
program the manifest names (command transport), or with ``agent_os.serve_http`` /
``plugin.wsgi_app(secret)`` (HTTP transport).
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from dataclasses import dataclass, field
from decimal import Decimal
from typing import (
    IO,
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    List,
    Mapping,
    NoReturn,
    Optional,
    Sequence,
    Tuple,
    Union,
    overload,
)

from .__about__ import PROTOCOL
from .costs import format_amount
from .errors import BadInput, DoNotRetry
from .task import EXIT_DO_NOT_RETRY, TaskResult, run_contract

if TYPE_CHECKING:
    from .http_plugin import PluginApp

STATES = ("ok", "degraded", "down")
EXIT_USAGE = 2


@dataclass
class Status:
    """A ``get_status`` answer: ``ok``, ``degraded`` or ``down``, a line for people, details."""

    status: str = "ok"
    message: Optional[str] = None
    details: Optional[Dict[str, Any]] = None


@dataclass
class CostReport:
    """A ``report_cost`` answer: records since the cursor Agent OS sent, and the new cursor."""

    records: Sequence[Mapping[str, Any]] = field(default_factory=list)
    cursor: Optional[str] = None


@dataclass
class Schedule:
    """A schedule the project keeps itself (``get_schedule``)."""

    task: str
    cron: str
    timezone: Optional[str] = None
    managed_by: Optional[str] = None
    description: Optional[str] = None


StatusLike = Union[Status, Mapping[str, Any], str]
CostLike = Union[CostReport, Tuple[Sequence[Mapping[str, Any]], Optional[str]], Mapping[str, Any]]
ScheduleLike = Union[Schedule, Mapping[str, Any]]
TaskFn = Callable[[Dict[str, Any]], TaskResult]


def _mark(name_or_fn: Union[str, Callable[..., Any], None] = None) -> Any:
    """``@Plugin.task`` or ``@Plugin.task("name")`` on a method: the method is a task."""

    def mark(fn: Callable[..., Any]) -> Callable[..., Any]:
        setattr(fn, "_agent_os_task", name if isinstance(name, str) else fn.__name__)
        return fn

    if callable(name_or_fn):
        name: Optional[str] = None
        return mark(name_or_fn)
    name = name_or_fn
    return mark


class _TaskDecorator:
    """``Plugin.task`` marks methods in a class body; ``plugin.task`` registers functions on an
    instance. Both take an optional task name (default: the function's name)."""

    @overload
    def __get__(self, obj: None, objtype: Optional[type] = None) -> Callable[..., Any]: ...
    @overload
    def __get__(self, obj: "Plugin", objtype: Optional[type] = None) -> Callable[..., Any]: ...
    def __get__(self, obj: Optional["Plugin"], objtype: Optional[type] = None) -> Callable[..., Any]:
        if obj is None:
            return _mark
        plugin = obj

        def register(name_or_fn: Union[str, Callable[..., Any], None] = None) -> Any:
            def add(fn: TaskFn) -> TaskFn:
                plugin.add_task(name_or_fn if isinstance(name_or_fn, str) else fn.__name__, fn)
                return fn

            if callable(name_or_fn):
                fn = name_or_fn
                plugin.add_task(fn.__name__, fn)
                return fn
            return add

        return register


class Plugin:
    """A project as Agent OS sees it. Override the operations you answer; the defaults say
    ``ok``, report no costs, keep no schedules, and run the registered tasks."""

    protocol = PROTOCOL
    task = _TaskDecorator()

    def __init__(self) -> None:
        self._tasks: Dict[str, TaskFn] = {}
        for klass in reversed(type(self).__mro__):
            for attr, value in vars(klass).items():
                name = getattr(value, "_agent_os_task", None)
                if isinstance(name, str):
                    self._tasks[name] = getattr(self, attr)

    # The operations ----------------------------------------------------------------------

    def get_status(self) -> StatusLike:
        """Is the project healthy? Make it mean something: the age of the last good job."""
        return Status("ok")

    def report_cost(self, since: Optional[str]) -> CostLike:
        """Cost records after the cursor ``since`` (``None`` the first time), and a new cursor."""
        return CostReport([], None)

    def get_schedule(self) -> Sequence[ScheduleLike]:
        """Schedules the project keeps itself (most projects declare them in the manifest)."""
        return []

    def run_task(self, name: str, input: Dict[str, Any]) -> TaskResult:
        """Runs one attempt of a task and answers its outputs. Raise ``DoNotRetry`` (or
        ``BadInput``) for a failure no retry can fix."""
        fn = self._tasks.get(name)
        if fn is None:
            known = ", ".join(sorted(self._tasks)) or "none"
            raise BadInput(f"this plugin has no task {name!r} (its tasks: {known}); register it with @Plugin.task")
        return fn(input)

    # Tasks -------------------------------------------------------------------------------

    def add_task(self, name: str, fn: TaskFn) -> None:
        """Registers ``fn(input) -> outputs`` as the task ``name``."""
        if not name:
            raise ValueError("a task needs a name")
        self._tasks[name] = fn

    def tasks(self) -> List[str]:
        """The names of the registered tasks."""
        return sorted(self._tasks)

    # Transports --------------------------------------------------------------------------

    def main(self, argv: Optional[Sequence[str]] = None) -> NoReturn:
        """Serves this plugin over the command transport and exits (see ``agent_os.serve``)."""
        sys.exit(serve_command(self, argv))

    def wsgi_app(self, secret: Union[str, Sequence[str]], *, max_body_bytes: int = 2 * 1024 * 1024) -> "PluginApp":
        """A WSGI application serving this plugin over HTTP, checking Agent OS's signatures
        with ``secret`` (``whsec_…``; a list accepts any of them)."""
        from .http_plugin import PluginApp

        return PluginApp(self, secret, max_body_bytes=max_body_bytes)


# Answers as JSON -------------------------------------------------------------------------


def status_json(value: StatusLike) -> Dict[str, Any]:
    if isinstance(value, str):
        doc: Dict[str, Any] = {"status": value}
    elif isinstance(value, Status):
        doc = {"status": value.status}
        if value.message is not None:
            doc["message"] = value.message
        if value.details is not None:
            doc["details"] = value.details
    elif isinstance(value, Mapping):
        doc = dict(value)
    else:
        raise TypeError(f"get_status returned {type(value).__name__}; return a Status, a dict or 'ok'")
    if doc.get("status") not in STATES:
        raise ValueError(f"get_status said status={doc.get('status')!r}; say 'ok', 'degraded' or 'down'")
    return doc


def _record_json(record: Mapping[str, Any]) -> Dict[str, Any]:
    doc = dict(record)
    if isinstance(doc.get("amount"), (Decimal, int)) and not isinstance(doc.get("amount"), bool):
        doc["amount"] = format_amount(doc["amount"])
    elif isinstance(doc.get("amount"), float):
        format_amount(doc["amount"])  # raises the clear TypeError
    return doc


def cost_json(value: CostLike) -> Dict[str, Any]:
    if isinstance(value, CostReport):
        records, cursor = value.records, value.cursor
    elif isinstance(value, tuple):
        records, cursor = value
    elif isinstance(value, Mapping):
        records, cursor = value.get("records", []), value.get("cursor")
    else:
        raise TypeError(f"report_cost returned {type(value).__name__}; return CostReport(records, cursor)")
    if cursor is not None and not isinstance(cursor, str):
        raise TypeError(f"the cost cursor must be a string (at most 1024 characters), not {type(cursor).__name__}")
    return {"records": [_record_json(r) for r in records], "cursor": cursor}


def schedule_json(value: Union[Sequence[ScheduleLike], Mapping[str, Any]]) -> Dict[str, Any]:
    if isinstance(value, Mapping):
        return dict(value)
    out = []
    for s in value:
        if isinstance(s, Schedule):
            doc = {k: v for k, v in vars(s).items() if v is not None}
        else:
            doc = dict(s)
        out.append(doc)
    return {"schedules": out}


def answer_probe(plugin: Plugin, op: str, since: Optional[str]) -> Dict[str, Any]:
    """The JSON answer to one probe operation."""
    if op == "get_status":
        return status_json(plugin.get_status())
    if op == "report_cost":
        return cost_json(plugin.report_cost(since))
    if op == "get_schedule":
        return schedule_json(plugin.get_schedule())
    raise BadInput(f"unknown operation {op!r}; protocol {PROTOCOL} has get_status, report_cost, get_schedule")


# The command transport -------------------------------------------------------------------


def _say(message: str) -> None:
    sys.stderr.write(f"agent_os: {message}\n")
    sys.stderr.flush()


def _protocol_problem(value: Any) -> Optional[str]:
    if value in (PROTOCOL, str(PROTOCOL)):
        return None
    return (
        f"Agent OS sent protocol {value!r}, but this plugin (agent_os for Python) speaks protocol {PROTOCOL}; "
        "upgrade the agent-os package to one that speaks it"
    )


def serve_command(
    plugin: Plugin,
    argv: Optional[Sequence[str]] = None,
    stdin: Optional[IO[bytes]] = None,
    stdout: Optional[IO[str]] = None,
) -> int:
    """The command transport; answers the exit code. No arguments: read a probe request on
    stdin and print the answer. ``task NAME``: run that task under the task contract."""
    args = list(sys.argv[1:] if argv is None else argv)
    env_protocol = os.environ.get("AGENT_OS_PROTOCOL")
    if env_protocol is not None and _protocol_problem(env_protocol):
        _say(str(_protocol_problem(env_protocol)))
        return EXIT_DO_NOT_RETRY if args else EXIT_USAGE
    if not args:
        return _probe(plugin, stdin, stdout)
    if args[0] == "task" and len(args) == 2:
        name = args[1]
        return run_contract(lambda input: plugin.run_task(name, input), stdin)
    _say(
        "usage: with no arguments, answer the probe request on stdin; "
        "`task NAME` runs a task (input on stdin, outputs to $AGENT_OS_OUTPUT)"
    )
    return EXIT_USAGE


def _probe(plugin: Plugin, stdin: Optional[IO[bytes]], stdout: Optional[IO[str]]) -> int:
    source = stdin if stdin is not None else sys.stdin.buffer
    out = stdout if stdout is not None else sys.stdout
    try:
        request = json.loads(source.read().decode("utf-8", "replace") or "null")
    except ValueError as e:
        _say(f"the probe request on stdin is not JSON ({e}); Agent OS sends one JSON object")
        return EXIT_USAGE
    if not isinstance(request, dict):
        _say('the probe request must be a JSON object like {"protocol": 1, "op": "get_status"}')
        return EXIT_USAGE
    problem = _protocol_problem(request.get("protocol"))
    if problem:
        _say(problem)
        return EXIT_USAGE
    since = request.get("since")
    # Whatever the plugin prints goes to stderr: stdout carries the one JSON answer.
    saved = sys.stdout
    sys.stdout = sys.stderr
    try:
        answer = answer_probe(plugin, str(request.get("op")), since if isinstance(since, str) else None)
        text = json.dumps(answer, ensure_ascii=False)
    except DoNotRetry as e:
        _say(str(e))
        return EXIT_USAGE
    except Exception:
        sys.stderr.write(traceback.format_exc())
        return 1
    finally:
        sys.stdout = saved
    out.write(text + "\n")
    out.flush()
    return 0


def serve(plugin: Plugin, argv: Optional[Sequence[str]] = None) -> NoReturn:
    """Serves ``plugin`` over the command transport and exits with the right code: with no
    arguments it answers the probe on stdin; with ``task NAME`` it runs the task."""
    sys.exit(serve_command(plugin, argv))
