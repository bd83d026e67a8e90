"""A progress line with steps/s and ETA on a terminal; nothing otherwise.

Off a terminal (CI, files, `nohup`) the metric log lines already show progress,
and carriage-return bars only garble logs.
"""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total: int, start: int, enabled: bool | None = None):
        self.total = total
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._start_step = start
        self._start_time = time.perf_counter()
        self._last_draw = 0.0

    def rate(self, step: int) -> float:
        elapsed = time.perf_counter() - self._start_time
        return (step - self._start_step) / elapsed if elapsed > 0 else 0.0

    def update(self, step: int, force: bool = False) -> None:
        now = time.perf_counter()
        if not self.enabled or (not force and now - self._last_draw < 0.2):
            return
        self._last_draw = now
        rate = self.rate(step)
        eta = (self.total - step) / rate if rate > 0 else float("nan")
        width = 30
        filled = int(width * step / max(self.total, 1))
        bar = "#" * filled + "." * (width - filled)
        sys.stderr.write(
            f"\r[{bar}] {step}/{self.total} {rate:.1f} steps/s ETA {_clock(eta)}  "
        )
        sys.stderr.flush()

    def close(self, step: int) -> None:
        if self.enabled:
            self.update(step, force=True)
            sys.stderr.write("\n")
            sys.stderr.flush()


def _clock(seconds: float) -> str:
    if seconds != seconds:  # NaN before the first timed step
        return "--:--"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"
