"""Whether the core runs compiled, and a guard against compiled modules older than the sources.

An install compiles the matching loop's modules with mypyc (setup.py) and puts each extension
beside its ``.py`` file, where Python prefers it. After an edit to the sources, the old extension
would still be the one that runs, so the build records what it compiled and from which sources
(the build record), and importing the core refuses extensions that do not match that record.

Extensions are per interpreter (their suffix names the Python version and platform), so the
build record is too. setup.py loads this file by its path to write the record the same way.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sysconfig
from pathlib import Path

__all__ = [
    "EXT_SUFFIX",
    "StaleCompiledCore",
    "build_record",
    "check_current",
    "compiled_modules",
    "copy_plain",
    "record_path",
]

CORE = Path(__file__).parent
EXT_SUFFIX: str = sysconfig.get_config_var("EXT_SUFFIX")


class StaleCompiledCore(ImportError):
    pass


def record_path(directory: Path = CORE) -> Path:
    return directory / f"build-record{EXT_SUFFIX}.json"


def source_digest(core: Path = CORE) -> str:
    """The sha256 of every source of the core, each framed by its name and length: mypyc builds
    the declared types of the modules it does not compile into those it does."""
    digest = hashlib.sha256()
    for source in sorted(core.glob("*.py")):
        data = source.read_bytes()
        digest.update(f"{source.name}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()


def build_record(modules: list[str], core: Path = CORE) -> str:
    return json.dumps({"digest": source_digest(core), "modules": sorted(modules)})


def compiled_modules(core: Path = CORE) -> list[str]:
    """The core's modules that have an extension for this interpreter, sorted."""
    return sorted(path.name.removesuffix(EXT_SUFFIX) for path in core.glob(f"*{EXT_SUFFIX}"))


def check_current() -> list[str]:
    """The compiled modules (none when the core runs as plain Python). Raises
    :class:`StaleCompiledCore` unless they are what the last build made from the sources as they
    are now."""
    modules = compiled_modules()
    if not modules:
        return modules
    try:
        recorded = json.loads(record_path().read_text())
    except (OSError, ValueError):
        recorded = None
    if recorded != json.loads(build_record(modules)):
        raise StaleCompiledCore(
            f"the compiled core ({', '.join(modules)} in {CORE}) was not built from the sources "
            "there now: reinstall the project (pip install -e .), or delete those extension "
            f"files (*{EXT_SUFFIX}) to run the core as plain Python"
        )
    return modules


def copy_plain(source: Path, target: Path) -> None:
    """Copy the tree at ``source`` without compiled extensions, build records and bytecode: in
    the copy, the core runs as plain Python."""
    skipped = shutil.ignore_patterns(f"*{EXT_SUFFIX}", "build-record*", "__pycache__")
    shutil.copytree(source, target, ignore=skipped)
