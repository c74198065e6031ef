"""The task contract of the command transport, in one decorator or one ``with`` block.

The input is a JSON object on stdin (empty is ``{}``); outputs are one JSON object written to the
file named by ``AGENT_OS_OUTPUT``; the exit code says how the attempt went: 0 succeeded, 78
failed and must not be retried (``DoNotRetry``, ``BadInput``, input that is not a JSON object),
1 failed with the traceback on stderr (retried while the task's ``retries`` allow).
"""

from __future__ import annotations

import functools
import json
import os
import sys
import traceback
from types import TracebackType
from typing import IO, Any, Callable, Dict, Generic, Mapping, NoReturn, Optional, Type, TypeVar

from .env import RunInfo, current_run
from .errors import BadInput, DoNotRetry

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_DO_NOT_RETRY = 78
OUTPUTS_MAX_BYTES = 1024 * 1024

TaskResult = Optional[Mapping[str, Any]]
R = TypeVar("R", bound=TaskResult)


def read_input(stream: Optional[IO[bytes]] = None) -> Dict[str, Any]:
    """The task's input: the JSON object on stdin, ``{}`` when stdin is empty (or a terminal).
    Anything else raises ``BadInput``."""
    if stream is None:
        if sys.stdin is None or sys.stdin.isatty():
            return {}
        stream = sys.stdin.buffer
    raw = stream.read()
    text = raw.decode("utf-8", "replace").strip()
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as e:
        raise BadInput(f"the input on stdin is not JSON ({e}); send a JSON object, e.g. {{\"symbols\": [\"BTC\"]}}") from None
    if not isinstance(value, dict):
        raise BadInput(f"the input must be a JSON object, not {type(value).__name__}; e.g. {{\"symbols\": [\"BTC\"]}}")
    return value


def outputs_json(outputs: Mapping[str, Any]) -> str:
    """Outputs as the JSON Agent OS takes (one object, at most 1 MiB); ``DoNotRetry`` if not."""
    if not isinstance(outputs, Mapping):
        raise DoNotRetry(f"the task returned {type(outputs).__name__}; return a dict of outputs, or None")
    try:
        text = json.dumps(dict(outputs), ensure_ascii=False)
    except (TypeError, ValueError) as e:
        raise DoNotRetry(f"the task's outputs are not JSON: {e}") from None
    size = len(text.encode("utf-8"))
    if size > OUTPUTS_MAX_BYTES:
        raise DoNotRetry(f"the task's outputs are {size} bytes of JSON; Agent OS takes at most 1 MiB: keep less")
    return text


def write_outputs(outputs: Mapping[str, Any]) -> None:
    """Writes outputs to ``AGENT_OS_OUTPUT``; outside Agent OS (no such variable) prints them."""
    text = outputs_json(outputs)
    path = os.environ.get("AGENT_OS_OUTPUT")
    if path:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    elif outputs:
        print(text)


def _say(message: str) -> None:
    sys.stderr.write(f"agent_os: {message}\n")
    sys.stderr.flush()


class TaskContext:
    """One attempt of a task: ``input`` (read on entry), ``outputs`` (written on a clean exit),
    ``run`` (the run's id and attempt, or ``None`` outside Agent OS). Leaving the block with an
    exception ends the process with 78 (``DoNotRetry``) or 1 (anything else)."""

    def __init__(self, stdin: Optional[IO[bytes]] = None) -> None:
        self._stdin = stdin
        self.input: Dict[str, Any] = {}
        self.outputs: Dict[str, Any] = {}
        self.run: Optional[RunInfo] = None

    def __enter__(self) -> "TaskContext":
        self.run = current_run()
        try:
            self.input = read_input(self._stdin)
        except DoNotRetry as e:
            _say(f"{e} (not retried)")
            raise SystemExit(EXIT_DO_NOT_RETRY) from None
        return self

    def __exit__(
        self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException], tb: Optional[TracebackType]
    ) -> None:
        if exc is None or (isinstance(exc, SystemExit) and exc.code in (None, 0)):
            try:
                write_outputs(self.outputs)
            except DoNotRetry as e:
                _say(f"{e} (not retried)")
                raise SystemExit(EXIT_DO_NOT_RETRY) from None
            return None
        if isinstance(exc, (SystemExit, KeyboardInterrupt)):
            return None
        if isinstance(exc, DoNotRetry):
            _say(f"{type(exc).__name__}: {exc} (not retried)")
            raise SystemExit(EXIT_DO_NOT_RETRY) from None
        sys.stderr.write("".join(traceback.format_exception(exc_type, exc, tb)))
        sys.stderr.flush()
        raise SystemExit(EXIT_FAILED) from None


def task_context(stdin: Optional[IO[bytes]] = None) -> TaskContext:
    """``with agent_os.task_context() as t:`` — read ``t.input``, fill ``t.outputs``."""
    return TaskContext(stdin)


def run_contract(fn: Callable[[Dict[str, Any]], TaskResult], stdin: Optional[IO[bytes]] = None) -> int:
    """Runs ``fn(input)`` under the task contract and answers the exit code (without exiting)."""
    try:
        with TaskContext(stdin) as t:
            result = fn(t.input)
            if result is not None:
                if not isinstance(result, Mapping):
                    raise DoNotRetry(f"the task returned {type(result).__name__}; return a dict of outputs, or None")
                t.outputs.update(result)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else EXIT_FAILED)
    return EXIT_OK


class TaskFunction(Generic[R]):
    """A function made a task by ``@agent_os.task``. Calling it calls the function; ``main()``
    runs it under the task contract and exits with its code."""

    def __init__(self, fn: Callable[[Dict[str, Any]], R]) -> None:
        self.fn = fn
        functools.update_wrapper(self, fn)

    def __call__(self, input: Dict[str, Any]) -> R:
        return self.fn(input)

    def main(self) -> NoReturn:
        """Reads the input, runs the function, writes its outputs, exits 0, 78 or 1."""
        sys.exit(run_contract(self.fn))


def task(fn: Callable[[Dict[str, Any]], R]) -> TaskFunction[R]:
    """Makes ``fn(input) -> outputs`` a task; run it with ``fn.main()``::

        @agent_os.task
        def scan(input):
            return {"scanned": len(input.get("symbols", []))}

        if __name__ == "__main__":
            scan.main()
    """
    return TaskFunction(fn)


