"""Progress to the terminal (tqdm) and to luigid's UI (percentage and status message)."""
from __future__ import annotations

import sys
import time
from typing import Iterable

from tqdm import tqdm


class Progress:
    """Wraps an iterable (or is updated by hand); reports at most every ``every_s`` seconds
    to the Luigi task (``set_progress_percentage`` / ``set_status_message``)."""

    def __init__(self, task, iterable: Iterable | None = None, total: int | None = None,
                 desc: str = "", every_s: float = 2.0):
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.task, self.iterable, self.total, self.desc = task, iterable, total, desc
        self.every_s, self.last, self.n = every_s, 0.0, 0
        self.bar = tqdm(total=total, desc=desc, file=sys.stderr, disable=None, leave=False)

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()

    def update(self, n: int = 1, message: str | None = None) -> None:
        self.n += n
        self.bar.update(n)
        now = time.time()
        if now - self.last >= self.every_s or (self.total and self.n >= self.total):
            self.last = now
            if self.total:
                self.task.set_progress_percentage(round(100.0 * self.n / self.total, 1))
            self.task.set_status_message(message or f"{self.desc}: {self.n}/{self.total or '?'}")

    def close(self) -> None:
        self.bar.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
