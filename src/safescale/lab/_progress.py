"""Rich progress bars for training: tokens done, tokens per second, loss."""

from __future__ import annotations

import time
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from safescale.lab._train import StepCallback


class TrainingProgress:
    """A context manager that hands out one progress bar (a step callback) per run."""

    def __init__(self, enabled: bool = True, console: Console | None = None) -> None:
        self.enabled = enabled
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.completed:>9,.0f}/{task.total:,.0f} tok"),
            TextColumn("{task.fields[tps]:>7,.0f} tok/s"),
            TextColumn("loss {task.fields[loss]:.3f}"),
            TimeElapsedColumn(),
            console=console,
            disable=not enabled,
        )

    def __enter__(self) -> TrainingProgress:
        self._progress.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._progress.stop()

    def run(self, name: str, total_tokens: int) -> StepCallback:
        """A callback that advances a new bar named ``name``."""
        task = self._progress.add_task(name, total=total_tokens, tps=0.0, loss=float("nan"))
        start = time.perf_counter()
        first: list[int] = []

        def on_step(tokens: int, loss: float) -> None:
            # Rate since this process started on the run (a resumed run starts mid-way).
            if not first:
                first.append(tokens)
                tps = 0.0
            else:
                tps = (tokens - first[0]) / max(time.perf_counter() - start, 1e-9)
            self._progress.update(task, completed=tokens, tps=tps, loss=loss)

        return on_step
