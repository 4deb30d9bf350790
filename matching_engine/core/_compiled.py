"""Whether the core runs compiled, and a guard against a compiled module older than its source.

An install compiles the matching loop's modules with mypyc (setup.py) and puts each extension
beside its ``.py`` file, where Python prefers it. After an edit to such a source, the old extension
would still be the one that runs, so importing the core checks the sources against the digest
written when the extensions were built, and refuses a mismatch rather than run stale code.
"""

from __future__ import annotations

import hashlib
import importlib
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

__all__ = ["StaleCompiledCore", "compiled_modules"]

_HERE = Path(__file__).parent


class StaleCompiledCore(ImportError):
    pass


def compiled_modules() -> list[str]:
    """The core's modules that have a compiled extension beside their source, sorted."""
    return sorted(
        source.name
        for source in _HERE.glob("*.py")
        if any(source.with_suffix(suffix).exists() for suffix in EXTENSION_SUFFIXES)
    )


def check_current() -> None:
    """Raise :class:`StaleCompiledCore` when a compiled module's source has changed since."""
    names = compiled_modules()
    if not names:
        return
    digest = hashlib.sha256()
    for name in names:
        digest.update((_HERE / name).read_bytes())
    try:
        built = importlib.import_module(f"{__package__}._build_digest").SOURCE_DIGEST
    except ImportError:
        built = None
    if built != digest.hexdigest():
        raise StaleCompiledCore(
            f"the compiled core ({', '.join(names)} in {_HERE}) was built from other sources: "
            "reinstall the project (pip install -e .), or delete those extension files to run "
            "the core as plain Python"
        )
