"""Server CPU time and memory from /proc, summed over a process and its live descendants; stopping one.

Memory of several processes (a supervisor and its forked workers) is counted as PSS: a page shared by n
processes counts 1/n in each, so pages the workers share count once in the sum. PSS also divides pages
shared with processes outside the server (libpython, shared libraries) among them, so ``resident_once``
counts the server's resident pages once each, whoever else maps them (from ``/proc/PID/pagemap``; root
only, else None).
"""

from __future__ import annotations

import os
import struct
import subprocess
import threading
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces; everything after the last ')' is fixed.
    return raw[raw.rindex(")") + 2 :].split()


def descendants(pid: int) -> list[int]:
    """``pid`` and every live process below it."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        cur = todo.pop()
        found.append(cur)
        todo.extend(children.get(cur, []))
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of the tree, including reaped children."""
    total = 0
    for p in descendants(pid):
        fields = _stat_fields(p)
        if fields:
            # fields[11..14] = utime, stime, cutime, cstime (proc(5) fields 14-17)
            total += sum(int(x) for x in fields[11:15])
    return total / _TICK


def _status_kib(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def peak_rss_mib(pid: int) -> float:
    """Sum of VmHWM (peak resident set) over the tree, in MiB."""
    return sum(_status_kib(p, "VmHWM") for p in descendants(pid)) / 1024


def rss_mib(pid: int) -> float:
    """Sum of current VmRSS over the tree, in MiB."""
    return sum(_status_kib(p, "VmRSS") for p in descendants(pid)) / 1024


def pss_mib(pid: int) -> float:
    """Sum of the proportional set size over the tree, in MiB (see the module's docstring)."""
    total = 0
    for p in descendants(pid):
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
                    break
        except OSError:
            pass
    return total / 1024


def resident_once_mib(pid: int) -> float | None:
    """The tree's resident pages, each counted once, in MiB; None when page frames are hidden (not root)."""
    frames: set[int] = set()
    for p in descendants(pid):
        try:
            with open(f"/proc/{p}/maps") as maps, open(f"/proc/{p}/pagemap", "rb") as pagemap:
                for line in maps:
                    start, end = (int(x, 16) for x in line.split()[0].split("-"))
                    pagemap.seek(start // 4096 * 8)
                    for (entry,) in struct.iter_unpack("Q", pagemap.read((end - start) // 4096 * 8)):
                        if entry >> 63:  # present
                            frames.add(entry & ((1 << 55) - 1))
        except OSError:
            continue
    if not frames or frames == {0}:  # without CAP_SYS_ADMIN every frame number reads 0
        return None
    return len(frames) * 4096 / (1 << 20)


class PeakPss:
    """Samples the tree's PSS every ``interval`` seconds while the block runs; ``peak`` is the largest."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.pid = pid
        self.interval = interval
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakPss:
        self.peak = pss_mib(self.pid)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, pss_mib(self.pid))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, pss_mib(self.pid))


def reset_peak(pid: int) -> bool:
    """Reset VmHWM to the current RSS for the tree (``clear_refs`` 5); False if the kernel refused."""
    ok = True
    for p in descendants(pid):
        try:
            Path(f"/proc/{p}/clear_refs").write_text("5")
        except OSError:
            ok = False
    return ok


def stop(proc: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM ``proc``, SIGKILL it if it has not exited after ``grace`` seconds (one already gone is left)."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
