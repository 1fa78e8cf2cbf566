"""Progress of a long maintenance command: a bar on a terminal, plain lines otherwise (logs, CI)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

BAR_WIDTH = 30
TTY_REFRESH = 0.1  # seconds between redraws of the bar
LINE_EVERY = 10.0  # seconds between plain lines within a phase


class TerminalProgress:
    def __init__(self, stream: TextIO | None = None, prefix: str = "gc") -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.prefix = prefix
        self.name = ""
        self.total: int | None = None
        self.count = 0
        self._shown = 0.0
        self._started = 0.0

    def phase(self, name: str, total: int | None) -> None:
        self.close()
        self.name, self.total, self.count = name, total, 0
        self._started = self._shown = time.monotonic()
        if not self.tty:
            self._line(f"{self.prefix}: {name}" + (f": {total}" if total is not None else ""))
        else:
            self._draw()

    def advance(self, count: int = 1) -> None:
        self.count += count
        now = time.monotonic()
        if self.tty and now - self._shown >= TTY_REFRESH:
            self._draw()
            self._shown = now
        elif not self.tty and now - self._shown >= LINE_EVERY:
            self._line(f"{self.prefix}: {self.name}: {self._counter()}")
            self._shown = now

    def close(self) -> None:
        """End the current phase (its final count on its own line)."""
        if not self.name:
            return
        elapsed = time.monotonic() - self._started
        if self.tty:
            self._draw()
            self.stream.write("\n")
            self.stream.flush()
        else:
            self._line(f"{self.prefix}: {self.name}: {self._counter()} done in {elapsed:.1f}s")
        self.name = ""

    def _counter(self) -> str:
        return f"{self.count}/{self.total}" if self.total is not None else str(self.count)

    def _draw(self) -> None:
        if self.total:
            filled = min(BAR_WIDTH, BAR_WIDTH * self.count // self.total)
            bar = "#" * filled + "-" * (BAR_WIDTH - filled)
            text = f"{self.prefix}: {self.name:<18} [{bar}] {self._counter()} {100 * self.count // self.total:3d}%"
        else:
            text = f"{self.prefix}: {self.name:<18} {self.count}"
        self.stream.write("\r\x1b[2K" + text)
        self.stream.flush()

    def _line(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()
