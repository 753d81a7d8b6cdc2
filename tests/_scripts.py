"""Loading a file of ``scripts/`` (or ``benchmarks/``) as a module, for the tests of the
study scripts and of the benchmarks' own parts."""

import importlib.util
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
BENCHMARKS = SCRIPTS.parent / "benchmarks"


@contextmanager
def script_module(name: str, folder: Path = SCRIPTS) -> Iterator[ModuleType]:
    """``scripts/NAME.py`` (or ``folder/NAME.py``) imported (registered while in use: its
    dataclasses look it up)."""
    spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(name, None)
