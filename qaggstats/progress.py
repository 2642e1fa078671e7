"""One progress hook for long steps; the core never prints.

A progress callback is any callable ``progress(stage, done, total)``. The CLI renders it as a
bar on a terminal; notebooks and libraries pass ``None`` (silence).

Examples
--------
>>> seen = []
>>> report = as_progress(lambda stage, done, total: seen.append((stage, done, total)))
>>> report("cross-fitting", 1, 5)
>>> seen
[('cross-fitting', 1, 5)]
"""
from __future__ import annotations

import sys
from typing import Callable, Optional, TextIO

ProgressFn = Callable[[str, int, int], None]


def _silent(stage: str, done: int, total: int) -> None:
    """Ignore progress (the default)."""


def as_progress(progress: Optional[ProgressFn]) -> ProgressFn:
    """Return ``progress`` or a silent hook when it is None."""
    return _silent if progress is None else progress


class TerminalProgress:
    """Render progress as a one-line bar on a terminal stream; silent when not a TTY.

    Parameters
    ----------
    stream : text stream, default sys.stderr
    width : int
        Bar width in characters.
    """

    def __init__(self, stream: Optional[TextIO] = None, width: int = 30) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.enabled or total <= 0:
            return
        filled = int(self.width * done / total)
        bar = "#" * filled + "-" * (self.width - filled)
        end = "\n" if done >= total else ""
        self.stream.write(f"\r{stage:<24} [{bar}] {done}/{total}{end}")
        self.stream.flush()
