"""setup.py: a wheel carries the compiled core with its build record; MATCHING_ENGINE_PURE=1
builds one without, removing extensions an earlier editable build left in the tree; and without
a C compiler the build goes on as plain Python.

Each build runs on a copy of the project (the plain build deletes extensions from the tree it
runs in), without build isolation: the test environment already has setuptools and mypy.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import matching_engine
from matching_engine.core import _compiled

PROJECT = Path(matching_engine.__file__).parent.parent
SUFFIX = _compiled.EXT_SUFFIX


@pytest.fixture
def project_copy(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    for name in ("matching_engine", "api", "migrations"):
        _compiled.copy_plain(PROJECT / name, root / name)
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(PROJECT / name, root / name)
    return root


def build_wheel(root: Path, **env: str) -> list[str]:
    """The names in the wheel built from ``root``."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            "out",
            ".",
        ],
        cwd=root,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (wheel,) = (root / "out").glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        records = [name for name in names if "build-record" in name]
        if records:
            (record,) = records
            recorded = json.loads(archive.read(record))
            assert recorded["modules"] == ["_book", "_engine", "_events", "_new_order", "_order"]
            assert recorded["digest"] == _compiled.source_digest(root / "matching_engine" / "core")
    return names


def test_a_wheel_carries_the_compiled_core_and_its_build_record(project_copy: Path) -> None:
    names = build_wheel(project_copy)
    core = "matching_engine/core/"
    assert {
        f"{core}{module}{SUFFIX}"
        for module in ("_book", "_engine", "_events", "_new_order", "_order")
    } <= set(names)
    assert f"{core}build-record{SUFFIX}.json" in names
    assert f"{core}_engine.py" in names  # the sources too: the guard reads them


def test_a_plain_build_has_no_extension_and_clears_leftovers(project_copy: Path) -> None:
    core = project_copy / "matching_engine" / "core"
    leftovers = [core / f"_engine{SUFFIX}", core / f"build-record{SUFFIX}.json"]
    for leftover in leftovers:
        leftover.write_bytes(b"from an earlier editable build")

    names = build_wheel(project_copy, MATCHING_ENGINE_PURE="1")

    assert not [name for name in names if name.endswith(SUFFIX) or "build-record" in name]
    assert not [leftover for leftover in leftovers if leftover.exists()]


def test_without_a_c_compiler_the_build_goes_on_as_plain_python(project_copy: Path) -> None:
    names = build_wheel(project_copy, CC="false")  # a compiler that fails every file

    assert not [name for name in names if name.endswith(SUFFIX) or "build-record" in name]
    assert "matching_engine/core/_engine.py" in names
