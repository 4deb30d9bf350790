"""Compiles the matching core's hot modules to C extensions with mypyc.

Everything else about the package is in pyproject.toml. The compiled modules sit beside their
sources (an editable install builds them in place), with the digest of the sources they came
from, and ``matching_engine.core`` refuses to import them once those sources have changed.

``MATCHING_ENGINE_PURE=1`` at install time skips the compilation: the core then runs as plain
Python, with the same behaviour, at about three quarters of the speed.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

CORE = Path("matching_engine/core")
# The modules of the matching loop. The others (commands, instruments, events, errors) are
# validation and plain values: compiled, they gain nothing measurable.
COMPILED = ["_book.py", "_engine.py", "_order.py"]  # sorted: the digest reads them in this order
DIGEST_MODULE = "_build_digest.py"


def source_digest() -> str:
    digest = hashlib.sha256()
    for name in COMPILED:
        digest.update((CORE / name).read_bytes())
    return digest.hexdigest()


class BuildExtWithDigest(build_ext):
    """Builds the extensions, then writes the digest of their sources beside them: into the
    source tree for an editable install, into the build directory (so the wheel) otherwise."""

    def run(self) -> None:
        super().run()
        if self.extensions:
            target = Path(self.get_ext_fullpath("matching_engine.core._engine")).parent
            (target / DIGEST_MODULE).write_text(
                '"""Written by setup.py: the digest of the sources of the compiled core."""\n\n'
                f'SOURCE_DIGEST = "{source_digest()}"\n'
            )


def ext_modules() -> list[object]:
    if os.environ.get("MATCHING_ENGINE_PURE") == "1":
        # Extensions an earlier editable install left in the tree would still be preferred.
        for leftover in CORE.glob("*.so"):
            leftover.unlink()
        (CORE / DIGEST_MODULE).unlink(missing_ok=True)
        return []
    from mypyc.build import mypycify

    # --config-file= keeps mypyc off the project's [tool.mypy] (its pydantic plugin is not in
    # the build environment); sortedcontainers has no type information, which is fine.
    return mypycify(
        ["--config-file=", "--ignore-missing-imports", *(str(CORE / n) for n in COMPILED)],
        opt_level="3",
    )


setup(ext_modules=ext_modules(), cmdclass={"build_ext": BuildExtWithDigest})
