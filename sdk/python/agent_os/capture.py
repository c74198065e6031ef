"""What a block of code prints, kept as a bounded tail while it still reaches the terminal.

A check sends the tail of its block's output with its finish ping, and a task served over HTTP
returns its output as the attempt's log. While a capture is active, ``sys.stdout`` and
``sys.stderr`` are wrapped by a tee that copies each write to the captures of the *current
context* (the thread, or the asyncio task) and passes it on unchanged, so other threads' output
is not mixed in.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import sys
import threading
from typing import Any, Deque, Iterator, List, Optional, TextIO, Tuple, cast


class TailBuffer:
    """Text written to it, of which the last ``max_bytes`` (UTF-8) are kept."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._chunks: Deque[str] = collections.deque()
        self._size = 0
        self.dropped = 0
        self._lock = threading.Lock()

    def write(self, text: str) -> None:
        if not text:
            return
        size = len(text.encode("utf-8", "replace"))
        with self._lock:
            self._chunks.append(text)
            self._size += size
            while self._size > self.max_bytes and len(self._chunks) > 1:
                first = self._chunks.popleft()
                n = len(first.encode("utf-8", "replace"))
                self._size -= n
                self.dropped += n

    def text(self) -> str:
        """The kept tail, cut to at most ``max_bytes`` bytes on a character boundary."""
        with self._lock:
            joined = "".join(self._chunks)
        return tail(joined, self.max_bytes)


def tail(text: str, max_bytes: int) -> str:
    """The end of ``text`` that fits in ``max_bytes`` bytes of UTF-8."""
    data = text.encode("utf-8", "replace")
    if len(data) <= max_bytes:
        return text
    return data[len(data) - max_bytes :].decode("utf-8", "ignore")


_active: contextvars.ContextVar[Tuple[TailBuffer, ...]] = contextvars.ContextVar("agent_os_capture", default=())
_install_lock = threading.Lock()
_installed = 0
_originals: List[Optional[TextIO]] = [None, None]


class _Tee:
    """Stands in for ``sys.stdout``/``sys.stderr``: copies text to the active captures."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        for buf in _active.get():
            buf.write(text)
        return self._stream.write(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self._stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _install() -> None:
    global _installed
    with _install_lock:
        if _installed == 0:
            _originals[0], _originals[1] = sys.stdout, sys.stderr
            if sys.stdout is not None:
                sys.stdout = cast(TextIO, _Tee(sys.stdout))
            if sys.stderr is not None:
                sys.stderr = cast(TextIO, _Tee(sys.stderr))
        _installed += 1


def _uninstall() -> None:
    global _installed
    with _install_lock:
        _installed -= 1
        if _installed == 0:
            # Put the streams back only if nobody replaced our tee meanwhile.
            if isinstance(sys.stdout, _Tee) and _originals[0] is not None:
                sys.stdout = _originals[0]
            if isinstance(sys.stderr, _Tee) and _originals[1] is not None:
                sys.stderr = _originals[1]
            _originals[0] = _originals[1] = None


@contextlib.contextmanager
def capture(max_bytes: int) -> Iterator[TailBuffer]:
    """Keeps the tail of what this context prints on stdout and stderr."""
    buf = TailBuffer(max_bytes)
    _install()
    token = _active.set(_active.get() + (buf,))
    try:
        yield buf
    finally:
        try:
            _active.reset(token)
        except ValueError:  # left from another context (a generator moved between tasks)
            _active.set(tuple(b for b in _active.get() if b is not buf))
        _uninstall()
