"""Server CPU time and peak RSS from /proc, summed over a process and its live descendants; stopping one."""

from __future__ import annotations

import os
import subprocess
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
