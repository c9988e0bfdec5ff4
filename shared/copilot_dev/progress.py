"""The CLI's and the evaluation's progress display: rich bars on a console, nothing without one."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console


class _NoProgress:
    def add_task(self, *_: Any, **__: Any) -> int:
        return 0

    def advance(self, *_: Any, **__: Any) -> None:
        pass

    def update(self, *_: Any, **__: Any) -> None:
        pass


@contextmanager
def progress_bars(console: Console | None) -> Iterator[Any]:
    """A rich ``Progress`` (description, bar, done/total, elapsed), or a silent stand-in."""
    if console is None:
        yield _NoProgress()
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    columns = (
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        yield progress


def status(console: Console | None, text: str) -> AbstractContextManager[Any]:
    return console.status(text) if console is not None else nullcontext()
