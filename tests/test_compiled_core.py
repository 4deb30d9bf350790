"""The compiled core and its sources run as plain Python behave the same: the core suite passes on
both, and each restores the other's snapshots and then answers the next commands identically.

The plain-Python run is a copy of the package without the compiled extensions, in a subprocess
(a process cannot unload an extension module it has imported).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import matching_engine
from matching_engine.core import COMPILED, MatchingEngine, _compiled
from matching_engine.core._compiled import StaleCompiledCore, check_current

from .core.helpers import engine_with
from .core.test_snapshot import _commands

pytestmark = pytest.mark.skipif(
    not COMPILED, reason="the core is installed as plain Python (MATCHING_ENGINE_PURE=1)"
)

PACKAGE = Path(matching_engine.__file__).parent
TESTS = Path(__file__).parent

# Restores the snapshot in argv[1], writes its own snapshot of that state to argv[2], then
# answers the commands after it: prints a digest of the answers and the final fingerprint.
_RESTORE_AND_CONTINUE = """
import hashlib, sys
from pathlib import Path
from matching_engine.core import COMPILED, MatchingEngine
from tests.core.test_snapshot import _commands
assert not COMPILED, "the copy must run as plain Python"
engine = MatchingEngine.restore(Path(sys.argv[1]).read_bytes())
Path(sys.argv[2]).write_bytes(engine.snapshot())
answers = "\\n".join(repr(engine.submit(c)) for c in _commands(600, seed=3)[300:])
print(hashlib.sha256(answers.encode()).hexdigest(), engine.fingerprint())
"""


@pytest.fixture(scope="module")
def plain_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package and the core tests, copied without the compiled extensions."""
    root = tmp_path_factory.mktemp("plain-core")
    _compiled.copy_plain(PACKAGE, root / "matching_engine")
    _compiled.copy_plain(TESTS / "core", root / "tests" / "core")
    shutil.copy(TESTS / "__init__.py", root / "tests" / "__init__.py")
    return root


def run_plain(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # cwd first on sys.path: the copy, not the installed package, is what gets imported.
    return subprocess.run(
        [sys.executable, *args],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_the_core_suite_passes_on_the_plain_python_core(plain_tree: Path) -> None:
    result = run_plain(plain_tree, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/core")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_the_two_cores_restore_each_others_snapshots(plain_tree: Path, tmp_path: Path) -> None:
    compiled = engine_with()
    commands = _commands(600, seed=3)
    for command in commands[:300]:
        compiled.submit(command)
    (tmp_path / "compiled").write_bytes(compiled.snapshot())

    result = run_plain(
        plain_tree, "-c", _RESTORE_AND_CONTINUE, str(tmp_path / "compiled"), str(tmp_path / "plain")
    )
    assert result.returncode == 0, result.stderr[-4000:]
    plain_answers, plain_fingerprint = result.stdout.split()

    restored = MatchingEngine.restore((tmp_path / "plain").read_bytes())
    assert restored.fingerprint() == compiled.fingerprint()
    answers = "\n".join(repr(compiled.submit(c)) for c in commands[300:])
    assert plain_answers == hashlib.sha256(answers.encode()).hexdigest()
    assert plain_fingerprint == compiled.fingerprint()
    for command in commands[300:]:
        restored.submit(command)
    assert restored.fingerprint() == compiled.fingerprint()


def test_compiled_modules_from_other_sources_refuse_to_import(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    check_current()  # the installed core is what its build record says
    monkeypatch.setattr(_compiled, "source_digest", lambda core=None: "0" * 64)
    with pytest.raises(StaleCompiledCore, match="reinstall"):
        check_current()


def test_a_compiled_module_the_build_did_not_make_refuses_to_import(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built = _compiled.compiled_modules()
    monkeypatch.setattr(_compiled, "compiled_modules", lambda core=None: [*built, "_events"])
    with pytest.raises(StaleCompiledCore, match="reinstall"):
        check_current()
