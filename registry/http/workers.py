"""Worker processes forked from one that has imported and built the app (``http.workers`` > 1, uvicorn).

uvicorn's own multiprocess mode spawns fresh interpreters: each imports everything again and holds
its own copy (three processes held 217 MiB where one held 64). Here the supervisor builds the app once,
freezes the garbage collector's view of it (a collection in a worker would otherwise write to every
object's header and unshare the pages holding them) and forks: the workers share those pages until
they write to them. Each worker listens on its own ``SO_REUSEPORT`` socket, so the kernel spreads new
connections evenly over the workers by their addresses; with one shared socket the first worker to
wake accepts every connection waiting (uvloop accepts until the queue is empty), and keep-alive
clients stay on whichever worker took them.

The supervisor runs no event loop and no thread: it waits for signals. SIGTERM, SIGINT or SIGHUP is
passed on to every worker as SIGTERM (each drains as a single process does, ``http.draintimeout``); a
worker that has not exited ``KILL_GRACE`` seconds after that is killed. A worker that dies on its own is
replaced; one that dies before it listens (the port is taken, the app did not start) stops the whole
server with its exit status. Should the supervisor itself be killed, the kernel sends its workers SIGTERM
(``PR_SET_PDEATHSIG``): none is left serving on its own.

Once every worker listens, the supervisor gives back the read-only pages of the files it mapped
(``page_out_files``): the code and constants of the interpreter, the extension modules and the libraries
that importing and building the app touched. No worker needs most of them, yet they counted in the
supervisor's memory (10 MiB of its 28 MiB PSS with the default config); the kernel keeps the pages a
worker maps, and reads any other one back from its file should the supervisor touch it again.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger("moorage")

SIGNALS = (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
STOP = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP})
PR_SET_PDEATHSIG = 1  # prctl(2)
MADV_PAGEOUT = 21  # madvise(2), Linux 5.4: reclaim these pages now (those another process maps stay)
KILL_GRACE = 10.0  # after the drain time: lifespan shutdown (closing storage clients) gets this long
RESTART_DELAY = 1.0  # a worker that keeps dying is not forked in a tight loop
STARTUP_FAILURE = 3  # uvicorn's exit status when the server could not start

# runs in a worker: (its index, a callback to call once it listens) -> exit status
WorkerMain = Callable[[int, Callable[[], None]], int]


def listening_socket(host: str, port: int, reuse_port: bool = True) -> socket.socket:
    """A TCP socket listening on ``host:port``; with ``reuse_port`` others may listen there too."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                         flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.listen(2048)
        sock.set_inheritable(False)
    except OSError:
        sock.close()
        raise
    return sock


def check_free(host: str, port: int) -> None:
    """Raise OSError when something listens on the address already: another Moorage would otherwise
    join our ``SO_REUSEPORT`` group and take half of the connections."""
    listening_socket(host, port, reuse_port=False).close()


def die_with(supervisor: int) -> None:
    """SIGTERM for this process when the supervisor dies (Linux); exit now if it is gone already."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the supervisor's SIGTERM is the only way
        return
    if os.getppid() != supervisor:
        raise SystemExit(0)


def page_out_files() -> int:
    """Ask the kernel to reclaim this process's pages of read-only file mappings (see the module's
    docstring); returns how many mappings it accepted the advice for (0 before Linux 5.4, or off Linux)."""
    try:
        madvise = ctypes.CDLL(None, use_errno=True).madvise
        with open("/proc/self/maps") as maps:
            lines = maps.read().splitlines()
    except (OSError, AttributeError):
        return 0
    madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    accepted = 0
    for line in lines:
        fields = line.split(maxsplit=5)
        if len(fields) < 6 or not fields[5].startswith("/") or "w" in fields[1]:
            continue  # anonymous memory, or writable: only pages the file holds as they are
        start, end = (int(address, 16) for address in fields[0].split("-"))
        accepted += madvise(start, end - start, MADV_PAGEOUT) == 0
    return accepted


@dataclass
class Worker:
    index: int
    pid: int
    ready: bool = False


@dataclass
class Supervisor:
    """Forks ``count`` workers running ``main`` and keeps them running until SIGTERM/SIGINT."""

    count: int
    main: WorkerMain
    drain: float  # seconds a worker may take to finish its requests after SIGTERM
    on_exit: Callable[[int], None] = lambda pid: None  # a worker process is gone (its metrics files)
    workers: dict[int, Worker] = field(default_factory=dict)  # by pid
    _ready_r: int = -1
    _ready_w: int = -1
    _paged_out: bool = False

    def run(self) -> int:
        """Returns the exit status: 0 after a signal, a worker's status when one could not start."""
        self._ready_r, self._ready_w = os.pipe()
        os.set_blocking(self._ready_r, False)
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
        # every object so far (the app, its modules) stays out of the collector's generations: a worker's
        # collections then never write to the pages it shares with the others
        gc.collect()
        gc.freeze()
        try:
            for index in range(self.count):
                self._fork(index)
            return self._supervise()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
            os.close(self._ready_r)
            os.close(self._ready_w)

    def _fork(self, index: int) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        supervisor = os.getpid()
        pid = os.fork()
        if pid == 0:
            self._child(index, supervisor)  # never returns
        self.workers[pid] = Worker(index, pid)

    def _child(self, index: int, supervisor: int) -> None:
        status = 1
        try:
            os.close(self._ready_r)
            die_with(supervisor)
            signal.pthread_sigmask(signal.SIG_SETMASK, set())
            ready_w = self._ready_w

            def ready() -> None:
                os.write(ready_w, bytes([index]))

            status = self.main(index, ready)
        except SystemExit as e:
            status = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except BaseException:
            log.exception("worker %d failed", index)
        finally:
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status)  # not the supervisor's exit path: its clean-up is its own

    def _supervise(self) -> int:
        stopping_since: float | None = None
        while self.workers or stopping_since is None:
            received = signal.sigtimedwait(SIGNALS, 0.5)
            self._read_ready()
            if received is not None and received.si_signo in STOP:
                if stopping_since is None:
                    stopping_since = time.monotonic()
                    self._signal_all(signal.SIGTERM)
            failed = self._reap(restart=stopping_since is None)
            if failed is not None:
                log.error("a worker could not start (exit status %d): stopping", failed)
                self._signal_all(signal.SIGTERM)
                self._wait_all(self.drain + KILL_GRACE)
                return failed or STARTUP_FAILURE
            if stopping_since is not None and time.monotonic() - stopping_since > self.drain + KILL_GRACE:
                self._signal_all(signal.SIGKILL)
                self._wait_all(5.0)
                break
        return 0

    def _read_ready(self) -> None:
        try:
            indexes = os.read(self._ready_r, 256)
        except BlockingIOError:
            return
        for worker in self.workers.values():
            if worker.index in indexes:
                worker.ready = True
        if not self._paged_out and len(self.workers) == self.count and all(w.ready for w in self.workers.values()):
            self._paged_out = True  # every worker listens: what only starting needed can go
            log.debug("supervisor: reclaiming the pages of %d file mappings", page_out_files())

    def _reap(self, restart: bool) -> int | None:
        """Collect exited workers; replace them, or return the status of one that never listened."""
        while self.workers:
            pid, wait_status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                return None
            worker = self.workers.pop(pid, None)
            if worker is None:
                continue
            self.on_exit(pid)
            status = os.waitstatus_to_exitcode(wait_status)
            self._read_ready()
            if not worker.ready and restart:
                return status if status > 0 else STARTUP_FAILURE
            if restart:
                how = f"was killed by signal {-status}" if status < 0 else f"exited with status {status}"
                log.error("worker %d (pid %d) %s: starting another", worker.index, pid, how)
                time.sleep(RESTART_DELAY)
                self._fork(worker.index)
        return None

    def _signal_all(self, sig: int) -> None:
        for pid in list(self.workers):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def _wait_all(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.workers and time.monotonic() < deadline:
            signal.sigtimedwait((signal.SIGCHLD,), 0.2)
            self._reap(restart=False)
        self._signal_all(signal.SIGKILL)
        while self.workers:
            pid, _ = os.waitpid(-1, 0)
            if self.workers.pop(pid, None) is not None:
                self.on_exit(pid)
