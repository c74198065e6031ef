"""``pip wheel`` builds the distribution ``agent-os`` with its type marker, standard library only."""

from __future__ import annotations

import ast
import importlib.util
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

SDK = Path(__file__).resolve().parents[1]


def _setuptools_version() -> tuple[int, ...]:
    spec = importlib.util.find_spec("setuptools")
    if spec is None:
        return ()
    from importlib.metadata import version

    return tuple(int(p) for p in version("setuptools").split(".")[:2] if p.isdigit())


def test_a_wheel_builds_with_the_package_and_its_type_marker(tmp_path: Path) -> None:
    # With the interpreter's own setuptools (61 or newer reads pyproject.toml's [project]), so the
    # build needs no download; .ci/run also builds the wheel the way pip does by default.
    has_bdist_wheel = _setuptools_version() >= (70, 1) or importlib.util.find_spec("wheel") is not None
    if _setuptools_version() < (61,) or not has_bdist_wheel:
        pytest.skip("building the wheel here needs setuptools 61 or newer and the wheel package "
                    "(python3 -m pip install setuptools wheel); .ci/run installs them")
    # Built from a copy: setuptools leaves build/ and *.egg-info/ beside the sources.
    source = tmp_path / "src"
    shutil.copytree(SDK, source, ignore=shutil.ignore_patterns("tests", "build", "*.egg-info", "__pycache__", ".*"))
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", str(source), "-w", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    wheels = list(tmp_path.glob("agent_os-0.1.0-*.whl"))
    assert len(wheels) == 1, list(tmp_path.iterdir())
    names = zipfile.ZipFile(wheels[0]).namelist()
    assert "agent_os/py.typed" in names and "agent_os/__init__.py" in names and "agent_os/__main__.py" in names
    assert not any(n.startswith("tests/") for n in names)


def _in_stdlib(name: str) -> bool:
    if name in sys.builtin_module_names:
        return True
    spec = importlib.util.find_spec(name)
    origin = spec.origin if spec else None
    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    return origin is not None and (origin in ("built-in", "frozen") or stdlib in Path(origin).resolve().parents)


def test_only_the_standard_library_is_imported() -> None:
    for path in (SDK / "agent_os").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else [])
            for name in names:
                assert _in_stdlib(name.split(".")[0]), f"{path.name} imports {name}, which is not in the standard library"
