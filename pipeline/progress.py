"""Progress to the terminal (tqdm) and to luigid's UI (percentage and status message).

On a terminal the tqdm bar shows it; when stderr is not a terminal (a log file, CI, a test
capturing output) tqdm is off and a log line says the same at most every ``log_every_s``
seconds, plus the first and the last update."""
from __future__ import annotations

import logging
import sys
import time
from typing import Iterable

from tqdm import tqdm

logger = logging.getLogger("luigi-interface")


class Progress:
    """Wraps an iterable (or is updated by hand); reports at most every ``every_s`` seconds
    to the Luigi task (``set_progress_percentage`` / ``set_status_message``)."""

    def __init__(self, task, iterable: Iterable | None = None, total: int | None = None,
                 desc: str = "", every_s: float = 2.0, log_every_s: float = 10.0):
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.task, self.iterable, self.total, self.desc = task, iterable, total, desc
        self.every_s, self.last, self.n = every_s, 0.0, 0
        self.log_every_s, self.last_log, self.start = log_every_s, None, time.time()
        self.rate_from: tuple[float, int] | None = None  # (time, count) of the first counted update
        self.bar = tqdm(total=total, desc=desc, file=sys.stderr, disable=None, leave=False)

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()

    def update(self, n: int = 1, message: str | None = None) -> None:
        self.update_to(self.n + n, message)

    def update_to(self, n: int, message: str | None = None) -> None:
        """Set the count (e.g. the training step, which a resumed run starts past 0)."""
        self.bar.update(n - self.n)
        self.n = n
        if self.rate_from is None and n > 0:
            self.rate_from = (time.time(), n)  # the rate excludes the set-up before it
        if message:
            self.bar.set_postfix_str(message, refresh=False)
        now = time.time()
        done = bool(self.total) and self.n >= self.total
        text = message or f"{self.desc}: {self.n}/{self.total or '?'}"
        if now - self.last >= self.every_s or done:
            self.last = now
            if self.total:
                self.task.set_progress_percentage(round(100.0 * self.n / self.total, 1))
            self.task.set_status_message(text)
        if self.bar.disable and (self.last_log is None or done
                                 or now - self.last_log >= self.log_every_s):
            self.last_log = now
            logger.info("%s", self.line(message, now))

    def line(self, message: str | None, now: float) -> str:
        """``desc 3/10 (30%, 12s, ETA 28s): message``; the ETA is the rate since the first
        counted update (set-up before it, such as building a model, left out) times what is left."""
        elapsed = now - self.start
        head = f"{self.desc} {self.n}/{self.total or '?'}"
        if self.total:
            t0, n0 = self.rate_from or (now, self.n)
            eta = (now - t0) / (self.n - n0) * (self.total - self.n) if self.n > n0 else None
            head += f" ({100.0 * self.n / self.total:.0f}%, {elapsed:.0f}s"
            head += f", ETA {eta:.0f}s)" if eta is not None and self.n < self.total else ")"
        return f"{head}: {message}" if message else head

    def close(self) -> None:
        self.bar.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
