"""The child side of `sandbox.run_python`: limit this process, then run an untrusted program and report its outcome.

Run as `python -I _sandbox_child.py PROGRAM_FILE RESULT_FD LIMITS_JSON` in a fresh temporary directory (the working
directory). Standard library only, and nothing from prerl_trl: this file is executed, not imported.

Order matters: read the program, set the resource limits, isolate the network and process tree (a user, network
and PID namespace when the kernel allows it), restrict file-system writes to the working directory (Landlock when
the kernel has it, else a Python-level guard), disable process creation at the Python level, and only then run the
program. The outcome goes to RESULT_FD as one line: `passed`, or `failed: <reason>`. A program that ends the process
before its tests finished (`sys.exit`, `os._exit`, a signal) writes nothing and so counts as failed.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import signal
import sys

CLONE_NEWUSER, CLONE_NEWNET, CLONE_NEWPID = 0x10000000, 0x40000000, 0x20000000
PR_SET_NO_NEW_PRIVS, PR_SET_PDEATHSIG = 38, 1
SYS_LANDLOCK = {"x86_64": (444, 445, 446), "aarch64": (444, 445, 446)}  # create_ruleset, add_rule, restrict_self
# Landlock file-system rights (ABI 1: bits 0-12; ABI 2: REFER; ABI 3: TRUNCATE); reading stays allowed everywhere.
LL_WRITE_RIGHTS_ABI1 = (1 << 1) | sum(1 << b for b in range(4, 13))  # WRITE_FILE, REMOVE_*, MAKE_*
LL_REFER, LL_TRUNCATE = 1 << 13, 1 << 14
LL_NET_BIND_TCP, LL_NET_CONNECT_TCP = 1 << 0, 1 << 1
LL_SCOPE_ABSTRACT_UNIX_SOCKET, LL_SCOPE_SIGNAL = 1 << 0, 1 << 1


def set_limits(limits: dict[str, int]) -> list[str]:
    """Set the resource limits; returns the names of those the system refused (macOS refuses RLIMIT_AS)."""
    memory, cpu, output = limits["memory_bytes"], limits["cpu_seconds"], limits["output_bytes"]
    refused = []
    for name, value in (("AS", (memory, memory)), ("CPU", (cpu, cpu + 1)),
                        ("FSIZE", (output, output)),  # stdout/stderr files and anything it writes
                        ("CORE", (0, 0)), ("NOFILE", (64, 64))):
        try:
            resource.setrlimit(getattr(resource, f"RLIMIT_{name}"), value)
        except (ValueError, OSError):
            refused.append(name)
    return refused


NOBODY = 65534


def _readable_by_others(path: str) -> bool:
    """Whether a user outside root's owner and group could read `path` (a directory: list and enter it), including
    every directory above it."""
    import stat

    path = path_leaf = os.path.realpath(path)
    while True:
        mode = os.stat(path).st_mode
        if not mode & stat.S_IXOTH or (path == path_leaf and not mode & stat.S_IROTH):
            return False
        if path == os.path.dirname(path):
            return True
        path = os.path.dirname(path)


def drop_root(workdir: str) -> str:
    """As root, become `nobody` when the interpreter's files are readable by it, so that RLIMIT_NPROC applies and
    root's file permissions do not. Returns the user the program runs as."""
    if os.geteuid() != 0:
        return "user"
    import sysconfig

    paths = {sysconfig.get_paths()[key] for key in ("stdlib", "platstdlib", "purelib", "platlib")}
    if not all(os.path.isdir(p) and _readable_by_others(p) for p in paths):
        return "root"
    os.chown(workdir, NOBODY, NOBODY)
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)
    return "nobody"


def forbid_new_processes() -> None:
    """No new processes or threads for a non-root user (root is exempt: the PID namespace and guards cover it)."""
    resource.setrlimit(resource.RLIMIT_NPROC, (1, 1))


def isolate_namespaces(libc: ctypes.CDLL, result_fd: int) -> str:
    """A new user + network namespace (no network at all) and a new PID namespace whose init runs the program: when
    this process dies, the kernel kills every process left in it. Returns what was set up."""
    if not sys.platform.startswith("linux"):
        return "none"
    if libc.unshare(CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWPID) != 0:
        if libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0:
            return "none"
        return "user+net"
    pid = os.fork()  # the child is PID 1 of the new namespace
    if pid == 0:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # the parent's death takes the whole namespace down
        return "user+net+pid"
    os.close(result_fd)  # only the namespace's init reports
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):  # end the same way, so that the caller sees the signal (CPU or file size limit)
        signal.signal(os.WTERMSIG(status), signal.SIG_DFL)
        os.kill(os.getpid(), os.WTERMSIG(status))
    os._exit(os.waitstatus_to_exitcode(status) & 0xFF)


def landlock(libc: ctypes.CDLL, workdir: str) -> str:
    """Allow writes only beneath `workdir` (and to /dev/null); with ABI >= 4 no TCP bind/connect, with ABI >= 6 no
    signals to processes outside the sandbox. Returns what was set up ("" when Landlock is unavailable)."""
    numbers = SYS_LANDLOCK.get(os.uname().machine)
    if numbers is None or not sys.platform.startswith("linux"):
        return ""
    create, add_rule, restrict = numbers
    abi = libc.syscall(create, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    if abi < 1:
        return ""
    write = LL_WRITE_RIGHTS_ABI1 | (LL_REFER if abi >= 2 else 0) | (LL_TRUNCATE if abi >= 3 else 0)

    class RulesetAttr(ctypes.Structure):
        _fields_ = [("fs", ctypes.c_uint64), ("net", ctypes.c_uint64), ("scoped", ctypes.c_uint64)]

    class PathBeneath(ctypes.Structure):
        _pack_ = 1
        _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]

    attr = RulesetAttr(write, LL_NET_BIND_TCP | LL_NET_CONNECT_TCP if abi >= 4 else 0,
                       LL_SCOPE_ABSTRACT_UNIX_SOCKET | LL_SCOPE_SIGNAL if abi >= 6 else 0)
    size = ctypes.sizeof(RulesetAttr) if abi >= 6 else (16 if abi >= 4 else 8)
    ruleset = libc.syscall(create, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if ruleset < 0:
        return ""
    try:
        for path, rights in ((workdir, write), ("/dev/null", (1 << 1) | (LL_TRUNCATE if abi >= 3 else 0))):
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            rule = PathBeneath(rights, fd)
            ok = libc.syscall(add_rule, ruleset, 1, ctypes.byref(rule), ctypes.c_uint32(0)) == 0
            os.close(fd)
            if not ok:
                return ""
        if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            return ""
        if libc.syscall(restrict, ruleset, ctypes.c_uint32(0)) != 0:
            return ""
    finally:
        os.close(ruleset)
    return f"landlock-abi{abi}"


def python_guards(workdir: str, guard_writes: bool) -> None:
    """Disable process creation, sockets and (without Landlock) writes outside `workdir` at the Python level.

    Not a security boundary (ctypes-free code could still find ways around it); the kernel-level limits above are."""
    import builtins
    import io
    import socket
    import subprocess

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError("not allowed in the sandbox")

    import posix

    for name in ("fork", "forkpty", "system", "popen", "posix_spawn", "posix_spawnp", "kill", "killpg", "setsid",
                 "execv", "execve", "execvp", "execvpe", "execl", "execle", "execlp", "execlpe",
                 "spawnv", "spawnve", "spawnvp", "spawnvpe", "spawnl", "spawnle", "spawnlp", "spawnlpe"):
        for module in (os, posix):
            if hasattr(module, name):
                setattr(module, name, refuse)
    subprocess.Popen = refuse  # type: ignore[assignment, misc]
    socket.socket = refuse  # type: ignore[assignment, misc]
    socket.create_connection = refuse  # type: ignore[assignment]
    if guard_writes:
        root = os.path.realpath(workdir)
        original_open = builtins.open

        def inside(path: object) -> bool:
            return isinstance(path, int) or os.path.realpath(os.fsdecode(path)).startswith(root + os.sep)

        def guarded_open(file: object, mode: str = "r", *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
            if any(c in mode for c in "wax+") and not inside(file):
                raise PermissionError(f"writing outside the sandbox: {file!r}")
            return original_open(file, mode, *args, **kwargs)  # type: ignore[call-overload]

        builtins.open = io.open = guarded_open  # type: ignore[assignment]
        for name in ("remove", "unlink", "rmdir", "rename", "replace", "mkdir", "makedirs", "symlink", "link",
                     "chmod", "chown", "truncate"):
            if hasattr(os, name):
                setattr(os, name, refuse)
    for name in ("ctypes", "_ctypes", "_posixsubprocess", "resource"):
        sys.modules[name] = None  # type: ignore[assignment]


def main() -> None:
    program_file, result_fd, limits = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
    with open(program_file, encoding="utf-8") as f:
        program = f.read()
    workdir = os.getcwd()
    libc = ctypes.CDLL(None, use_errno=True)
    refused = set_limits(limits)
    user = drop_root(workdir)
    namespaces = isolate_namespaces(libc, result_fd) if limits.get("namespaces", True) else "off"
    forbid_new_processes()
    fs = landlock(libc, workdir) if limits.get("landlock", True) else ""
    python_guards(workdir, guard_writes=not fs)
    del libc
    result = os.fdopen(result_fd, "w", encoding="utf-8")
    refused_text = f" refused-limits={','.join(refused)}" if refused else ""
    result.write(f"sandbox: user={user} namespaces={namespaces} filesystem={fs or 'python-guard'}{refused_text}\n")
    result.flush()
    try:
        code = compile(program, "<completion>", "exec")
        exec(code, {"__name__": "__main__", "__builtins__": __builtins__})
    except BaseException as err:  # SystemExit and KeyboardInterrupt included: the tests did not finish
        message = str(err).splitlines()[0][:200] if str(err) else ""
        outcome = f"failed: {type(err).__name__}{': ' + message if message else ''}"
    else:
        outcome = "passed"
    result.write(outcome + "\n")
    result.flush()
    os._exit(0)  # no atexit handlers or finalizers of the program


if __name__ == "__main__":
    main()
