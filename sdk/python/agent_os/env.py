"""What a task knows about its run, and the project's own ``.env`` file.

Inside a command task Agent OS sets ``AGENT_OS_RUN_ID``, ``AGENT_OS_ATTEMPT``,
``AGENT_OS_PROJECT`` and ``AGENT_OS_TASK``; inside a task served over HTTP the same facts come
with the request and are kept in a context variable for the duration of the task. Either way
``current_run()`` answers.
"""

from __future__ import annotations

import contextvars
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Union


@dataclass(frozen=True)
class RunInfo:
    """The run a task attempt belongs to."""

    run_id: str
    attempt: int
    project: Optional[str] = None
    task: Optional[str] = None


_current: contextvars.ContextVar[Optional[RunInfo]] = contextvars.ContextVar("agent_os_run", default=None)


def current_run(environ: Optional[Mapping[str, str]] = None) -> Optional[RunInfo]:
    """The run this code runs in: the HTTP task being served, else the command task's
    environment, else ``None`` (not inside a run)."""
    served = _current.get()
    if served is not None:
        return served
    env = os.environ if environ is None else environ
    run_id = env.get("AGENT_OS_RUN_ID", "").strip()
    if not run_id:
        return None
    try:
        attempt = int(env.get("AGENT_OS_ATTEMPT", "1"))
    except ValueError:
        attempt = 1
    return RunInfo(run_id, attempt, env.get("AGENT_OS_PROJECT") or None, env.get("AGENT_OS_TASK") or None)


def run_id() -> Optional[str]:
    """The run's id, or ``None`` outside a run."""
    run = current_run()
    return run.run_id if run else None


def attempt() -> Optional[int]:
    """The attempt number (1 for the first), or ``None`` outside a run."""
    run = current_run()
    return run.attempt if run else None


def project() -> Optional[str]:
    """The project's name: the run's, else ``AGENT_OS_PROJECT``, else ``None``."""
    run = current_run()
    if run and run.project:
        return run.project
    return os.environ.get("AGENT_OS_PROJECT") or None


def task_name() -> Optional[str]:
    """The task's name inside a run, else ``None``."""
    run = current_run()
    return run.task if run else None


# The project's .env -------------------------------------------------------------------------

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")
# `\$` becomes NUL until references are expanded, then `$`: NUL cannot be in a variable.
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "$": "\0"}


class EnvFileError(ValueError):
    """A line of an env file that cannot be read. The message names the file and line, never
    a value."""


def find_env_file(start: Union[str, Path, None] = None) -> Optional[Path]:
    """The project's ``.env``: in ``start`` (default the working directory, which is the
    project's root inside a command task) or the nearest parent that holds ``agent-os.yaml``."""
    here = Path(start) if start is not None else Path.cwd()
    for d in [here, *here.parents]:
        candidate = d / ".env"
        if candidate.is_file():
            return candidate
        if (d / "agent-os.yaml").is_file():
            return None
    return None


def parse_env(text: str, source: str = ".env", environ: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """Reads ``KEY=VALUE`` lines: ``export`` prefixes, ``#`` comments, single quotes (literal),
    double quotes (escapes, several lines, ``${VAR}``), and unquoted values (``${VAR}``, a
    `` #`` comment after). A reference is resolved from the file's earlier lines, then
    ``environ``."""
    env = os.environ if environ is None else environ
    out: Dict[str, str] = {}

    def expand(value: str) -> str:
        return _REF.sub(lambda m: out.get(m.group(1) or m.group(2), env.get(m.group(1) or m.group(2), "")), value)

    lines = text.splitlines()
    i = 0
    while i < len(lines):
        lineno = i + 1
        line = lines[i].strip()
        i += 1
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export "):].lstrip()
        name, eq, rest = line.partition("=")
        name = name.strip()
        if not eq or not _NAME.fullmatch(name):
            raise EnvFileError(
                f"{source}:{lineno}: expected NAME=VALUE (a name of letters, digits and _); "
                "fix or comment out the line"
            )
        rest = rest.lstrip()
        if rest.startswith("'"):
            end = rest.find("'", 1)
            if end < 0:
                raise EnvFileError(f"{source}:{lineno}: {name}: the single quote is not closed; close it on the same line")
            out[name] = rest[1:end]
        elif rest.startswith('"'):
            buf: List[str] = []
            body = rest[1:]
            while True:
                j = 0
                closed = False
                while j < len(body):
                    c = body[j]
                    if c == "\\" and j + 1 < len(body):
                        buf.append(_ESCAPES.get(body[j + 1], "\\" + body[j + 1]))
                        j += 2
                        continue
                    if c == '"':
                        closed = True
                        break
                    buf.append(c)
                    j += 1
                if closed:
                    break
                if i >= len(lines):
                    raise EnvFileError(f"{source}:{lineno}: {name}: the double quote is not closed; close it")
                buf.append("\n")
                body = lines[i]
                i += 1
            value = "".join(buf)
            out[name] = expand(value).replace("\0", "$")
        else:
            hash_at = re.search(r"\s#", rest)
            if hash_at:
                rest = rest[: hash_at.start()]
            out[name] = expand(rest.strip())
    return out


def load_env(path: Union[str, Path, None] = None, *, override: bool = False) -> List[str]:
    """Loads the project's env file into ``os.environ``; a variable already set is kept unless
    ``override``. Returns the names it set (never the values). Without ``path``, the ``.env``
    ``find_env_file()`` finds; no file is no error (an empty list)."""
    file = Path(path) if path is not None else find_env_file()
    if file is None:
        return []
    if path is not None and not file.is_file():
        raise FileNotFoundError(f"{file}: no such env file; give the path of the project's .env")
    values = parse_env(file.read_text(encoding="utf-8"), str(file))
    loaded = []
    for name, value in values.items():
        if override or name not in os.environ:
            os.environ[name] = value
            loaded.append(name)
    return loaded
