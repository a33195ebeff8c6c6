"""A bounded, lazily created, thread-safe pool of supervised verifier processes.

Each worker is a plain ``python -c`` subprocess that loads ``equivalence.py`` by path and answers
``[id, gold, pred]`` JSON lines with ``[id, verdict]``. A worker that runs past its deadline is
killed and replaced; one warm spare stands by so the replacement is never waited for. No signals
are used, so this works off the main thread, in DataLoader workers (daemonic processes, which may
not start ``multiprocessing`` children) and under ``accelerate launch``. Linux and macOS only (the
pool waits on pipes with ``selectors``).
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import selectors
import subprocess
import sys
import threading
import time
from collections import deque

from . import equivalence
from .equivalence import ERROR, TIMEOUT

logger = logging.getLogger(__name__)

#: Seconds a freshly started worker may take to import math-verify before it is replaced.
WORKER_BOOT_TIMEOUT: float = 60.0

_BOOTSTRAP = (
    "import sys, importlib.util as u\n"
    "sys.path[:] = [p for p in sys.path if p not in ('', '.')]\n"
    "s = u.spec_from_file_location('_prerl_verify_worker', sys.argv[1])\n"
    "m = u.module_from_spec(s); sys.modules[s.name] = m; s.loader.exec_module(m)\n"
    "m.worker_main()\n"
)


# --------------------------------------------------------------------------------------------------
# Parent side: a bounded, lazily created, thread-safe pool of supervised workers
# --------------------------------------------------------------------------------------------------


class _Worker:
    """One verifier subprocess, owned by at most one calling thread at a time."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _BOOTSTRAP, os.path.abspath(equivalence.__file__), str(os.getpid())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,  # Ctrl-C in the terminal goes to the trainer, not to workers
            close_fds=True,
        )
        assert self.proc.stdout is not None and self.proc.stdin is not None
        self.fd = self.proc.stdout.fileno()
        os.set_blocking(self.fd, False)
        self.buffer = b""
        self.born = time.monotonic()
        self.ready = False
        self.task: int | None = None
        self.started: float | None = None

    def send(self, task: int, gold: str, pred: str) -> None:
        assert self.proc.stdin is not None
        self.task, self.started = task, (time.monotonic() if self.ready else None)
        try:
            self.proc.stdin.write(json.dumps([task, gold, pred]).encode() + b"\n")
            self.proc.stdin.flush()
        except OSError:  # the worker died; the next read sees EOF and replaces it
            pass

    def read(self) -> list | None:
        """Complete messages available now; None on EOF (the worker died)."""
        try:
            chunk = os.read(self.fd, 1 << 16)
        except BlockingIOError:
            return []
        if not chunk:
            return None
        self.buffer += chunk
        *lines, self.buffer = self.buffer.split(b"\n")
        return [json.loads(line) for line in lines if line.strip()]

    def deadline(self, timeout: float) -> float | None:
        if not self.ready:
            return self.born + WORKER_BOOT_TIMEOUT
        if self.task is not None and self.started is not None:
            return self.started + timeout
        return None

    def kill(self) -> None:
        try:
            self.proc.kill()
            self.proc.wait(timeout=5)
        except Exception:  # noqa: BLE001 - already gone
            pass
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()  # type: ignore[union-attr]
            except Exception:  # noqa: BLE001
                pass


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover (macOS)
        return max(1, os.cpu_count() or 1)


def _default_workers() -> int:
    env = os.environ.get("PRERL_VERIFY_WORKERS")
    if env:
        return max(1, int(env))
    cpus = usable_cpus()
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    return max(1, min(8, cpus // max(1, local_world)))


class VerifierPool:
    """Runs at most ``size`` verifications at once, on ``size + 1`` worker processes.

    Calls check workers out, so concurrent threads never share one. The extra process is a warm
    spare: when a worker is killed after a timeout, the next verification takes a ready worker
    instead of waiting for the replacement to boot.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.capacity = size + 1
        self.pid = os.getpid()
        self.cond = threading.Condition()
        self.idle: list[_Worker] = []
        self.count = 0  # live worker processes
        self.busy = 0  # workers checked out by calls
        self.boot_failures = 0

    def _checkout(self, wanted: int, block: bool) -> list[_Worker]:
        with self.cond:
            while True:
                self._poll_idle()
                self.idle.sort(key=lambda w: w.ready)  # ready workers last, so they are popped first
                allowed = min(wanted, self.size - self.busy)
                taken = [self.idle.pop() for _ in range(min(allowed, len(self.idle)))]
                while len(taken) < allowed and self.count < self.capacity:
                    taken.append(_Worker())
                    self.count += 1
                if not self.idle and self.count < self.capacity:
                    self.idle.append(_Worker())  # keep the spare booting in the background
                    self.count += 1
                self.busy += len(taken)
                if taken or not block:
                    return taken
                self.cond.wait(0.05)

    def _poll_idle(self) -> None:
        """Notice idle workers that finished booting, and replace idle workers that died."""
        for i, w in enumerate(self.idle):
            if not w.ready:
                messages = w.read()
                if messages is None or time.monotonic() > w.born + WORKER_BOOT_TIMEOUT:
                    self.boot_failures += 1
                    self.idle[i] = self._replace(w)
                elif "ready" in messages:
                    w.ready, self.boot_failures = True, 0

    def _release(self, workers: list[_Worker]) -> None:
        with self.cond:
            self.idle.extend(workers)
            self.busy -= len(workers)
            self.cond.notify_all()

    def _replace(self, worker: _Worker) -> _Worker:
        worker.kill()
        return _Worker()

    def run(self, pairs: list[tuple[str, str]], timeout: float) -> list[int]:
        """Verdict code for each (gold, pred) pair, each one bounded by ``timeout`` seconds of work."""
        results = [ERROR] * len(pairs)
        pending = deque(range(len(pairs)))
        held: list[_Worker] = []
        try:
            while pending or any(w.task is not None for w in held):
                if pending and self.boot_failures >= 3:
                    logger.error("math verifier workers fail to start; scoring %d answers 0.0", len(pending))
                    self.boot_failures = 0
                    pending.clear()
                    continue
                free = [w for w in held if w.task is None]
                if len(pending) > len(free):
                    held += self._checkout(len(pending) - len(free), block=not held)
                for w in held:
                    if w.task is None and pending:
                        task = pending.popleft()
                        w.send(task, *pairs[task])
                if not pending:  # give back what this call no longer needs
                    spare = [w for w in held if w.task is None]
                    held = [w for w in held if w.task is not None]
                    self._release(spare)
                self._wait(held, timeout, results, pending)
        finally:
            busy = [w for w in held if w.task is not None]
            for w in busy:  # interrupted mid-task (KeyboardInterrupt): never reuse a busy worker
                held.remove(w)
                w.kill()
                with self.cond:
                    self.count -= 1
                    self.busy -= 1
            self._release(held)
        return results

    def _wait(self, held: list[_Worker], timeout: float, results: list[int], pending: deque) -> None:
        """Wait for the first message or deadline among ``held``; update results; replace bad workers."""
        now = time.monotonic()
        deadlines = [d for w in held if (d := w.deadline(timeout)) is not None]
        wait_for = max(0.0, min(deadlines) - now) if deadlines else 0.05
        if pending:
            wait_for = min(wait_for, 0.05)  # poll the pool for workers released by other threads
        with selectors.DefaultSelector() as sel:
            for w in held:
                sel.register(w.fd, selectors.EVENT_READ, w)
            events = sel.select(wait_for) if held else (time.sleep(wait_for) or [])
        for key, _ in events:
            w = key.data
            messages = w.read()
            if messages is None:  # the worker died (segfault, OOM kill)
                self._fail(w, held, results, pending, ERROR)
                continue
            for msg in messages:
                if msg == "ready":
                    w.ready, self.boot_failures = True, 0
                    if w.task is not None:
                        w.started = time.monotonic()
                elif isinstance(msg, list) and msg[0] == w.task:
                    results[msg[0]] = msg[1]
                    w.task = w.started = None
        now = time.monotonic()
        for w in list(held):
            deadline = w.deadline(timeout)
            if deadline is not None and now > deadline:
                self._fail(w, held, results, pending, TIMEOUT)

    def _fail(self, w: _Worker, held: list[_Worker], results: list[int], pending: deque, code: int) -> None:
        """Kill ``w``; its task gets ``code`` (or is retried when the worker never started)."""
        if not w.ready:
            self.boot_failures += 1
            if w.task is not None:
                pending.appendleft(w.task)
        elif w.task is not None:
            results[w.task] = code
        held[held.index(w)] = self._replace(w)

    def shutdown(self) -> None:
        with self.cond:
            workers, self.idle = self.idle, []
            self.count -= len(workers)
        if os.getpid() == self.pid:  # never kill a parent's workers from a forked child
            for w in workers:
                w.kill()


_POOL: VerifierPool | None = None
_POOL_LOCK = threading.Lock()


def get_pool() -> VerifierPool:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL.pid != os.getpid():  # lazily, and afresh after a fork
            _POOL = VerifierPool(_default_workers())
        return _POOL


def shutdown_verifier() -> None:
    """Kill the verifier workers (also registered with ``atexit``); the next call starts new ones."""
    global _POOL
    with _POOL_LOCK:
        pool, _POOL = _POOL, None
    if pool is not None:
        pool.shutdown()


atexit.register(shutdown_verifier)


def warmup_verifier(timeout: float = WORKER_BOOT_TIMEOUT) -> None:
    """Start every worker of the pool (and the spare) and wait until each has imported math-verify."""
    pool = get_pool()
    deadline = time.monotonic() + timeout
    pool.run([("1", f"\\frac{{{i + 2}}}{{{i + 2}}}") for i in range(pool.size)], timeout)
    while time.monotonic() < deadline:
        with pool.cond:
            pool._poll_idle()
            if all(w.ready for w in pool.idle):
                return
        time.sleep(0.02)
