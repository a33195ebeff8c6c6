"""Running model-written Python in a separate, limited process: the execution side of code benchmarks (HumanEval).

`run_python(program)` writes the program to a fresh temporary directory and runs it there with `python -I` (no user
site, no PYTHON* variables) under `_sandbox_child.py`, which limits itself before it runs the program:

- a hard wall-clock limit (the whole process group is killed) and, as a backstop, a CPU-time limit one second above
  it (RLIMIT_CPU);
- memory (RLIMIT_AS), output and file size (RLIMIT_FSIZE: stdout, stderr and any file it writes), 64 open files,
  no core dumps;
- no new processes: RLIMIT_NPROC for a non-root user, a PID namespace whose processes all die with it when the
  kernel allows user namespaces, and `os.fork` / `subprocess` disabled at the Python level;
- no network: an empty network namespace when the kernel allows it, Landlock's TCP rules (ABI >= 4), and sockets
  disabled at the Python level;
- writes only inside its temporary directory: Landlock when the kernel has it, else a Python-level guard on `open`
  and the `os` functions that change files;
- a minimal environment (HOME and TMPDIR point into the temporary directory) and no standard input.

After the run, every process left in the child's session is killed and the directory is removed. The program passes
only when it ran to its end: a program that exits early (`sys.exit(0)`, `os._exit`, a signal) fails.

This is not a security boundary against code written to escape it (see the README's "What the sandbox does and does
not protect against"). Run untrusted code in a container or a VM.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

CHILD = Path(__file__).with_name("_sandbox_child.py")


@dataclass(frozen=True)
class SandboxLimits:
    """Limits of one run. `timeout` is wall-clock seconds for the whole process, interpreter start-up included."""

    timeout: float = 5.0
    memory_mb: int = 1024
    output_kb: int = 1024
    namespaces: bool = True  # user + network + PID namespaces when the kernel allows them
    landlock: bool = True  # Landlock file-system (and TCP) rules when the kernel has them

    def __post_init__(self) -> None:
        if not self.timeout > 0:
            raise ValueError(f"SandboxLimits.timeout must be > 0 seconds, got {self.timeout}")
        if self.memory_mb < 64:
            raise ValueError(f"SandboxLimits.memory_mb must be >= 64 (the interpreter needs it), got {self.memory_mb}")
        if self.output_kb < 1:
            raise ValueError(f"SandboxLimits.output_kb must be >= 1, got {self.output_kb}")


@dataclass
class RunResult:
    """What happened: `passed`, a one-line `outcome` ("passed", "failed: AssertionError", "timed out", ...), the
    wall time and the isolation the child managed to set up."""

    passed: bool
    outcome: str
    seconds: float
    isolation: str = ""


def _child_limits(limits: SandboxLimits) -> str:
    return json.dumps({
        "memory_bytes": limits.memory_mb * 1024 * 1024,
        # A backstop one second above the wall-clock limit: a busy loop is reported as "timed out" even when the
        # parent, on a loaded machine, checks its deadline late.
        "cpu_seconds": math.ceil(limits.timeout) + 1,
        "output_bytes": limits.output_kb * 1024,
        "namespaces": limits.namespaces,
        "landlock": limits.landlock,
    })


def _session_members(sid: int) -> list[int]:
    """PIDs of the processes in session `sid` (Linux /proc; empty elsewhere)."""
    members = []
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else []:
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()  # after "pid (comm) ": state ppid pgrp session ...
        if len(fields) > 3 and int(fields[3]) == sid:
            members.append(int(entry.name))
    return members


def _kill_session(proc: subprocess.Popen) -> None:
    """Kill the child's process group, then any process still in its session, and reap the child."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    for pid in _session_members(proc.pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def _read_until(fd: int, deadline: float, limit: int = 65536) -> tuple[bytes, bool]:
    """Read `fd` until EOF or `deadline`; returns (data, reached_eof)."""
    data = b""
    while len(data) < limit:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return data, False
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            return data, False
        chunk = os.read(fd, 4096)
        if not chunk:
            return data, True
        data += chunk
    return data, True


def _outcome(lines: list[str], timed_out: bool, returncode: int | None, limits: SandboxLimits) -> str:
    if lines and (lines[-1] == "passed" or lines[-1].startswith("failed:")):
        return lines[-1]
    if timed_out:
        return f"timed out after {limits.timeout:g} s"
    if returncode is not None and returncode < 0:
        name = signal.Signals(-returncode).name
        reason = {"SIGXCPU": "CPU time limit", "SIGXFSZ": "output/file size limit"}.get(name, name)
        return f"failed: killed ({reason})"
    return f"failed: the process ended before its tests finished (exit code {returncode})"


def run_python(program: str, limits: SandboxLimits | None = None) -> RunResult:
    """Run `program` (Python source) in a fresh sandboxed process; see the module docstring."""
    limits = limits or SandboxLimits()
    start = time.monotonic()
    workdir = tempfile.mkdtemp(prefix="prerl-sandbox-")
    read_fd, write_fd = os.pipe()
    proc = None
    try:
        Path(workdir, "program.py").write_text(program, encoding="utf-8")
        env = {"PATH": os.defpath, "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8", "OMP_NUM_THREADS": "1",
               "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"}
        with open(Path(workdir, "output.txt"), "wb") as output:
            proc = subprocess.Popen(
                [sys.executable, "-I", "-B", str(CHILD), "program.py", str(write_fd), _child_limits(limits)],
                cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=output, stderr=output,
                pass_fds=(write_fd,), start_new_session=True,
            )
        os.close(write_fd)
        write_fd = -1
        data, eof = _read_until(read_fd, start + limits.timeout)
        timed_out = not eof
        if eof:
            try:
                proc.wait(timeout=max(0.0, start + limits.timeout - time.monotonic()))
            except subprocess.TimeoutExpired:
                timed_out = True
        lines = data.decode("utf-8", "replace").splitlines()
        isolation = lines[0].removeprefix("sandbox: ") if lines and lines[0].startswith("sandbox: ") else ""
        outcome = _outcome(lines[1:], timed_out, proc.poll(), limits)
        return RunResult(outcome == "passed", outcome, time.monotonic() - start, isolation)
    finally:
        if proc is not None:
            _kill_session(proc)
        for fd in (read_fd, write_fd):
            if fd >= 0:
                os.close(fd)
        shutil.rmtree(workdir, ignore_errors=True)


def default_workers() -> int:
    """Concurrent sandboxes: the CPUs this process may use."""
    from ..rewards.pool import usable_cpus

    return usable_cpus()


def run_many(
    programs: Sequence[str],
    limits: SandboxLimits | None = None,
    *,
    workers: int | None = None,
    on_done: Callable[[], None] | None = None,
) -> list[RunResult]:
    """`run_python` over `programs`, `workers` at a time (default: one per usable CPU), results in input order."""
    workers = workers or default_workers()

    def one(program: str) -> RunResult:
        result = run_python(program, limits)
        if on_done is not None:
            on_done()
        return result

    if workers == 1:
        return [one(p) for p in programs]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, programs))


__all__ = ["RunResult", "SandboxLimits", "default_workers", "run_many", "run_python"]
