"""Warnings on stderr: how reporting tells about trouble without failing the job."""

from __future__ import annotations

import sys


def warn(message: str) -> None:
    """Writes ``agent_os: warning: MESSAGE`` to stderr; never raises."""
    try:
        sys.stderr.write(f"agent_os: warning: {message}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
