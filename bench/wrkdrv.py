"""Optional cross-check with ``wrk`` (Debian package ``wrk``) for GET request rates."""

from __future__ import annotations

import re
import subprocess
import tempfile

from bench.report import Measure

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    return float(m.group(1)) * _UNITS[m.group(2)] if m else 0.0


def run_wrk(wrk: str, url: str, conc: int, seconds: float, threads: int,
            headers: dict[str, str] | None = None, method: str = "GET") -> Measure:
    """Run wrk and parse req/s, p50/p99 and error counts."""
    cmd = [wrk, f"-t{min(threads, conc)}", f"-c{conc}", f"-d{max(1, round(seconds))}s", "--latency"]
    for k, v in (headers or {}).items():
        cmd += ["-H", f"{k}: {v}"]
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(f'wrk.method = "{method}"\n')
        script.flush()
        cmd += ["-s", script.name, url]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    done = re.search(r"(\d+) requests in", out)
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = int(non2xx.group(1)) if non2xx else 0
    errors += sum(int(x) for x in sock.groups()) if sock else 0
    if not rate:
        return Measure(0.0, errors=1, note="wrk: " + out.strip()[-120:])
    return Measure(float(rate.group(1)), work=float(done.group(1)) if done else 0.0,
                   p50=_ms(p50.group(1)) if p50 else None, p99=_ms(p99.group(1)) if p99 else None,
                   errors=errors, note="wrk")
