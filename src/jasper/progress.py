"""Progress for long work: a tqdm bar on a terminal, a log line every so often when output goes to a file."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from tqdm.auto import tqdm

logger = logging.getLogger("jasper.progress")
LOG_EVERY_S = 30.0  # a piped log gets one progress line per this many seconds
FINAL_LINE_S = 5.0  # and a last line with the rate, for work that took at least this long


def _format_duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class LogProgress:
    """The part of tqdm's interface jasper uses, writing plain log lines: no carriage returns, no ANSI codes."""

    def __init__(self, total: int, desc: str, unit: str, initial: int = 0, every_s: float = LOG_EVERY_S) -> None:
        self.total, self.desc, self.unit, self.n = total, desc, unit, initial
        self.every_s = every_s
        self.started = self.last = time.monotonic()
        self.start_n = self.logged_n = initial
        self.postfix = ""

    def update(self, count: int = 1) -> None:
        """Advance by `count`; log when the interval has passed."""
        self.n += count
        now = time.monotonic()
        if now - self.last >= self.every_s:
            self.last = now
            self._log(now)

    def set_postfix(self, **values: Any) -> None:
        """Shown at the end of the next line, as tqdm does."""
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def _log(self, now: float) -> None:
        self.logged_n = self.n
        elapsed = now - self.started
        rate = (self.n - self.start_n) / elapsed if elapsed > 0 else 0.0
        share = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        left = (self.total - self.n) / rate if rate > 0 and self.total else 0.0
        eta = f", {_format_duration(left)} left" if left > 0 else ""
        extra = f", {self.postfix}" if self.postfix else ""
        done = f"{self.n}/{self.total} {self.unit}{share}"
        logger.info("%s: %s, %.1f %s/s%s%s", self.desc, done, rate, self.unit, eta, extra)

    def close(self) -> None:
        """Log the final count and rate (quick work stays silent)."""
        now = time.monotonic()
        long_enough = now - self.started >= min(FINAL_LINE_S, self.every_s) or self.last > self.started
        if self.n > self.logged_n and long_enough:
            self._log(now)

    def __enter__(self) -> LogProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Silent(LogProgress):
    def _log(self, now: float) -> None:
        return None


def progress_bar(total: int, desc: str, unit: str = "it", initial: int = 0, disable: bool = False) -> Any:
    """A tqdm bar when stderr is a terminal, else a `LogProgress` that logs a plain line every 30 s."""
    if disable:
        return _Silent(total, desc, unit, initial)
    if sys.stderr.isatty():
        return tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True)
    return LogProgress(total, desc, unit, initial)
