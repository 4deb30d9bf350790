"""Compiles the matching core's hot modules to C extensions with mypyc.

Everything else about the package is in pyproject.toml. The extensions sit beside their sources
(an editable install builds them in place) with a build record of what was compiled from which
sources, and ``matching_engine.core`` refuses to import them once the sources have changed
(``matching_engine/core/_compiled.py``).

``MATCHING_ENGINE_PURE=1`` at install time skips the compilation: the core then runs as plain
Python, with the same behaviour, at about three quarters of the speed. So does a machine without
a working C compiler, with a warning in the install's output.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

from setuptools import setup
from setuptools.command.build_ext import build_ext

CORE = Path("matching_engine/core")
# The modules of the matching loop, the events it emits and the new-order command it reads
# (compiled, a direct call or a memory read instead of a generic one). The others (the other
# commands, instruments, errors) are validation and plain values: compiled, they gain nothing
# measurable.
COMPILED = ["_book.py", "_engine.py", "_events.py", "_new_order.py", "_order.py"]


def _compiled_helpers() -> ModuleType:
    """matching_engine/core/_compiled.py, loaded by path: importing the package would need its
    runtime dependencies, which the build environment does not have."""
    spec = importlib.util.spec_from_file_location("_compiled", CORE / "_compiled.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class BuildExtWithRecord(build_ext):
    """Builds the extensions, then writes the build record beside the core's that were built:
    into the source tree for an editable install, into the build directory (so the wheel)
    otherwise. Earlier outputs and record go first, so that a build that fails cannot leave an
    old extension for the new record to vouch for."""

    def run(self) -> None:
        helpers = _compiled_helpers()
        outputs = {ext.name: Path(self.get_ext_fullpath(ext.name)) for ext in self.extensions}
        core = {
            name.rpartition(".")[2]: output
            for name, output in outputs.items()
            if name.startswith("matching_engine.core.")
        }
        if not core:  # a plain build: nothing to record
            return super().run()
        record = helpers.record_path(next(iter(core.values())).parent)
        for output in [*outputs.values(), record]:
            output.unlink(missing_ok=True)
        super().run()
        built = [module for module, output in core.items() if output.exists()]
        if built:
            record.write_text(helpers.build_record(built, CORE))


def ext_modules() -> list[object]:
    if os.environ.get("MATCHING_ENGINE_PURE") == "1":
        # Extensions an earlier editable install left in the tree would still be preferred.
        helpers = _compiled_helpers()
        suffix = helpers.EXT_SUFFIX
        for leftover in [*CORE.glob(f"*{suffix}"), *Path().glob(f"*__mypyc{suffix}")]:
            leftover.unlink()
        helpers.record_path(CORE).unlink(missing_ok=True)
        return []
    from mypyc.build import mypycify

    # --config-file= keeps mypyc off the project's [tool.mypy] (its pydantic plugin is not in
    # the build environment).
    extensions = mypycify(
        ["--config-file=", "--ignore-missing-imports", *(str(CORE / n) for n in COMPILED)],
        opt_level="3",
    )
    # Without a working C compiler the install warns and goes on: the core runs as plain Python.
    for extension in extensions:
        extension.optional = True
    return list(extensions)


setup(ext_modules=ext_modules(), cmdclass={"build_ext": BuildExtWithRecord})
