"""The package is fully typed: ``mypy --strict`` passes (when mypy is installed)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

SDK = Path(__file__).resolve().parents[1]


def test_mypy_strict_passes() -> None:
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed (pip install mypy), so the typing check did not run")
    done = subprocess.run([sys.executable, "-m", "mypy", "--strict", str(SDK / "agent_os")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
