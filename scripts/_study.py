"""What the study scripts share: a candidate error model in place of the package's, a coverage
line with its Wilson interval, and usage errors in one line."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from typing import NoReturn


def line(name: str, hits: list[bool], width: int = 24) -> str:
    """``name``, the share of ``hits`` that are true with its 95% Wilson interval, and n."""
    from safescale.scaling._capability import _wilson

    if not hits:
        return f"  {name:<{width}} n=0"
    k, n = sum(hits), len(hits)
    w = _wilson(k, n, 0.95)
    return f"  {name:<{width}} {k / n:.3f} [{float(w.lo):.3f}, {float(w.hi):.3f}] n={n}"


def seed_list(text: str, example: str, most: int) -> list[int]:
    """Seeds written as ranges and single seeds joined by commas (``200-231,300``), at most
    ``most`` seeds from 0 in all, none twice (a seed counted twice would weigh twice in the
    pooled figures); a ValueError that shows ``example`` otherwise."""
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        try:
            a, b = int(lo), int(hi or lo)
        except ValueError:
            raise ValueError(f"{text!r}: write seeds as e.g. {example}") from None
        if a < 0 or b < a or b - a >= most:
            raise ValueError(f"{part!r}: a range low-high of at most {most} seeds from 0")
        out += range(a, b + 1)
        if len(out) > most:
            raise ValueError(f"{text!r}: at most {most} seeds in all")
    twice = next((x for i, x in enumerate(out) if x in out[:i]), None)
    if twice is not None:
        raise ValueError(f"{text!r}: seed {twice} is given twice")
    return out


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line and exit status 2, as every
    safescale command's are."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog.removesuffix('.py')}: {message}", file=sys.stderr)
        raise SystemExit(2)

    def candidate(self, path: str | None) -> None:
        """:func:`use_candidate`, a bad file a usage error of ``--candidate``."""
        if path is not None and not Path(path).is_file():
            self.error(f"--candidate: {path}: no such file")
        try:
            use_candidate(path)
        except (ValueError, SyntaxError, ImportError) as exc:
            self.error(f"--candidate: {exc}")

    def output(self, path: str | None, flag: str, *, folder: bool = False) -> Path | None:
        """``path`` checked as a file (or folder) to write, before any work; a usage error of
        ``flag`` otherwise."""
        if path is None:
            return None
        from safescale._errors import UserError
        from safescale._io import check_output_path

        try:
            return check_output_path(path, flag, folder=folder)
        except UserError as exc:
            self.error(str(exc).splitlines()[0])


HOOKS = ("calibrate", "sampling_only")
"""What a candidate file may define, with the signatures of the functions of these names in
``safescale.scaling._calibration``; each one defined replaces the package's for the run."""


def use_candidate(path: str | None) -> None:
    """Replace the package's functions named in :data:`HOOKS` by those ``path`` defines."""
    if path is None:
        return
    spec = importlib.util.spec_from_file_location("calibration_candidate", path)
    if spec is None or spec.loader is None:
        raise ValueError(f"{path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    hooks = [name for name in HOOKS if callable(getattr(module, name, None))]
    if not hooks:
        raise ValueError(f"{path}: defines neither calibrate() nor sampling_only()")
    import safescale.scaling._capability as capability

    for name in hooks:  # where fit_capability looks them up
        setattr(capability, name, getattr(module, name))
