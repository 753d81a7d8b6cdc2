"""``make bench``: run every ``benchmarks/bench_*.py`` module's ``main()`` in turn.

Each benchmark measures our code against a named reference in the same run and prints the
ratio. Pass module names (``python -m benchmarks scaling``) to run a subset.
"""

from __future__ import annotations

import importlib
import platform
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    here = Path(__file__).parent
    names = sorted(p.stem for p in here.glob("bench_*.py"))
    if argv:
        names = [n for n in names if any(a in n for a in argv)]
    print(
        f"machine: {platform.machine()} {platform.processor() or ''} "
        f"python {platform.python_version()}, cores: {_cores()}"
    )
    failed = 0
    for name in names:
        print(f"\n== {name}")
        t0 = time.perf_counter()
        module = importlib.import_module(f"benchmarks.{name}")
        ok = module.main()
        print(f"({name}: {time.perf_counter() - t0:.1f} s)")
        failed += ok is False
    return 1 if failed else 0


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
