"""The local spool: reports that could not be sent yet, kept on disk in order.

One JSON object per line, oldest first. Each entry carries its own idempotency key (a cost's,
an event's, a notification's) or its ping's ``rid``, so a resend after a lost answer is counted
once by Agent OS. Two ``flock`` locks guard the file against other processes and threads: the
*file* lock for the short moments an entry is appended or delivered entries are removed, and the
*flush* lock held while one flusher sends, so that entries are sent in order by one sender at a
time while others keep appending.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Tuple

from ._log import warn

DEFAULT_MAX_ENTRIES = 10_000
DEFAULT_MAX_BYTES = 16 * 1024 * 1024


class Outcome(Enum):
    """What became of one entry a flusher tried to deliver."""

    SENT = "sent"
    """Delivered (or already there): remove it."""
    DROPPED = "dropped"
    """Refused for good (a 4xx): remove it; the deliverer has warned."""
    KEEP = "keep"
    """Not delivered, may work later: keep it and stop, so order is kept."""


@dataclass
class FlushResult:
    """How a flush went."""

    sent: int = 0
    dropped: int = 0
    remaining: int = 0
    busy: bool = False
    """Another process or thread was flushing this spool; its entries are in its hands."""
    failed: bool = False
    """An entry could not be delivered (Agent OS away, or its token refused); the rest wait
    behind it."""


def default_dir(environ: Optional[Mapping[str, str]] = None) -> Path:
    """``$AGENT_OS_SPOOL``, else ``$XDG_STATE_HOME/agent-os/spool``, else
    ``~/.local/state/agent-os/spool``."""
    env = os.environ if environ is None else environ
    given = env.get("AGENT_OS_SPOOL")
    if given:
        return Path(given).expanduser()
    state = env.get("XDG_STATE_HOME")
    if state:
        return Path(state).expanduser() / "agent-os" / "spool"
    try:
        return Path.home() / ".local" / "state" / "agent-os" / "spool"
    except (RuntimeError, KeyError):  # no home directory to be found (a bare container)
        return Path(tempfile.gettempdir()) / f"agent-os-spool-{os.getuid()}"


class Spool:
    """A bounded JSON-lines queue in ``path``. The bound (entries and bytes) drops the oldest
    entries, with a warning, when a new one would pass it."""

    def __init__(self, path: Path, *, max_entries: int = DEFAULT_MAX_ENTRIES, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if max_entries < 1 or max_bytes < 1:
            raise ValueError("a spool holds at least one entry and one byte: raise max_entries / max_bytes")
        self.path = Path(path)
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._file_lock_path = self.path.with_name(self.path.name + ".lock")
        self._flush_lock_path = self.path.with_name(self.path.name + ".flush.lock")
        # flock locks belong to an open file, so threads that open the lock file each get
        # their own; this lock only keeps two threads of ours from both waiting on the disk.
        self._thread_flush = threading.Lock()

    # Locks -------------------------------------------------------------------------------

    def _open_lock(self, path: Path) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o600)

    @contextlib.contextmanager
    def _file_locked(self) -> Iterator[None]:
        fd = self._open_lock(self._file_lock_path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    # Reading and writing -----------------------------------------------------------------

    def _read_lines(self) -> List[bytes]:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        return [line for line in data.split(b"\n") if line.strip()]

    def _write_lines(self, lines: List[bytes]) -> None:
        if not lines:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            return
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(b"".join(line + b"\n" for line in lines))
        os.replace(tmp, self.path)

    def pending(self) -> bool:
        """True when entries wait (a cheap look at the file's size)."""
        try:
            return self.path.stat().st_size > 0
        except OSError:  # none yet, or a directory that cannot be (a warning when writing says so)
            return False

    def entries(self) -> List[Dict[str, Any]]:
        """The entries waiting, oldest first (lines that do not parse are left out)."""
        with self._file_locked():
            lines = self._read_lines()
        return [e for e in (_parse(line) for line in lines) if e is not None]

    def count(self) -> int:
        """How many entries wait."""
        with self._file_locked():
            return len(self._read_lines())

    def append(self, entry: Dict[str, Any]) -> None:
        """Adds an entry at the end, dropping the oldest ones (with a warning) past the bound."""
        entry = dict(entry)
        entry.setdefault("spool_id", uuid.uuid4().hex)
        entry.setdefault("spooled_at", time.time())
        line = json.dumps(entry, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        if b"\n" in line:
            raise ValueError("a spool entry serialises to one line")  # json.dumps escapes newlines
        if len(line) + 1 > self.max_bytes:
            warn(
                f"a {entry.get('kind', 'report')} of {len(line)} bytes is larger than the spool's bound "
                f"({self.max_bytes} bytes) and was dropped; raise AGENT_OS_SPOOL_MAX_BYTES"
            )
            return
        with self._file_locked():
            try:
                data = self.path.read_bytes()
            except FileNotFoundError:
                data = b""
            lines = [x for x in data.split(b"\n") if x.strip()]
            if len(lines) + 1 <= self.max_entries and len(data) + len(line) + 2 <= self.max_bytes:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                with os.fdopen(fd, "ab") as f:
                    # A line left unterminated by a process killed mid-write stays its own line.
                    prefix = b"\n" if data and not data.endswith(b"\n") else b""
                    f.write(prefix + line + b"\n")
                return
            lines.append(line)
            dropped = 0
            total = sum(len(x) + 1 for x in lines)
            while len(lines) > self.max_entries or total > self.max_bytes:
                total -= len(lines[0]) + 1
                lines.pop(0)
                dropped += 1
            self._write_lines(lines)
        warn(
            f"the spool {self.path} is full ({self.max_entries} entries or {self.max_bytes} bytes): "
            f"dropped the {dropped} oldest report(s); they will not reach Agent OS. "
            "Bring Agent OS back and run `python3 -m agent_os flush`, or raise the bound"
        )

    def _remove(self, ids: "set[str]", bad: "set[bytes]") -> int:
        """Removes delivered entries (and unreadable lines); answers how many remain."""
        with self._file_locked():
            lines = self._read_lines()
            keep = []
            for line in lines:
                if line in bad:
                    continue
                e = _parse(line)
                if e is not None and e.get("spool_id") in ids:
                    continue
                keep.append(line)
            if len(keep) != len(lines):
                self._write_lines(keep)
            return len(keep)

    def flush(self, deliver: Callable[[Dict[str, Any]], Outcome], deadline: Optional[float] = None) -> FlushResult:
        """Delivers the entries in order with ``deliver`` until the spool is empty, an entry must
        be kept (the rest wait behind it), or ``deadline`` (a ``time.monotonic()``) passes.
        Answers ``busy`` at once when someone else is flushing."""
        result = FlushResult()
        if not self.pending():
            return result
        if not self._thread_flush.acquire(blocking=False):
            result.busy = True
            return result
        try:
            fd = self._open_lock(self._flush_lock_path)
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError as e:
                    if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                        result.busy = True
                        return result
                    raise
                while True:
                    stop, done, bad = self._deliver_some(deliver, deadline, result)
                    result.remaining = self._remove(done, bad)
                    if stop or result.remaining == 0 or not (done or bad):
                        return result
            finally:
                os.close(fd)
        finally:
            self._thread_flush.release()

    def _deliver_some(
        self, deliver: Callable[[Dict[str, Any]], Outcome], deadline: Optional[float], result: FlushResult
    ) -> Tuple[bool, "set[str]", "set[bytes]"]:
        with self._file_locked():
            lines = self._read_lines()
        done: "set[str]" = set()
        bad: "set[bytes]" = set()
        for line in lines:
            entry = _parse(line)
            if entry is None or not isinstance(entry.get("spool_id"), str):
                warn(f"an unreadable line of the spool {self.path} was dropped")
                bad.add(line)
                continue
            if deadline is not None and time.monotonic() > deadline:
                return True, done, bad
            outcome = deliver(entry)
            if outcome is Outcome.KEEP:
                result.failed = True
                return True, done, bad
            if outcome is Outcome.SENT:
                result.sent += 1
            else:
                result.dropped += 1
            done.add(entry["spool_id"])
        return False, done, bad


def _parse(line: bytes) -> Optional[Dict[str, Any]]:
    try:
        value = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return value if isinstance(value, dict) else None
