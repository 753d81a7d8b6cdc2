"""What the study scripts share: a coverage line with its Wilson interval, and usage errors
in one line."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn


def line(name: str, hits: list[bool], width: int = 24) -> str:
    """``name``, the share of ``hits`` that are true with its 95% Wilson interval, and n."""
    from safescale.scaling._capability import _wilson

    if not hits:
        return f"  {name:<{width}} n=0"
    k, n = sum(hits), len(hits)
    w = _wilson(k, n, 0.95)
    return f"  {name:<{width}} {k / n:.3f} [{float(w.lo):.3f}, {float(w.hi):.3f}] n={n}"


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line and exit status 2, as every
    safescale command's are."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog.removesuffix('.py')}: {message}", file=sys.stderr)
        raise SystemExit(2)
