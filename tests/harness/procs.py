"""Start and stop control-plane processes by PID, each in its own process group.

A stop works the same whether the process is our child (tests) or was started by
another Python process that has since exited (``python -m tests.harness up`` then
``down``): that is why everything is keyed by PID plus the binary path recorded in
the cluster's state file, never by process name.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

PR_SET_PDEATHSIG = 1
STOP_TIMEOUT_S = 15.0


@dataclass
class Component:
    """One running process: enough to find it, stop it and read its log from anywhere."""

    name: str
    argv: list[str]
    log: str
    pid: int = 0
    ports: list[int] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def _die_with_parent(parent_pid: int) -> Callable[[], None]:
    """preexec_fn: SIGTERM the child when the thread that started it dies (pytest killed)."""

    libc = ctypes.CDLL(None, use_errno=True)  # loaded before fork: the hook only calls it

    def hook() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent_pid:  # parent died before prctl took effect
            os._exit(1)

    return hook


def spawn(
    component: Component, *, daemon: bool, env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``component`` in a new session with output appended to its log file.

    ``daemon=True`` (``up``): survives this Python process. Otherwise the child is tied
    to this process with PDEATHSIG, so even a SIGKILLed pytest leaves nothing behind;
    that is only safe from the main thread (PDEATHSIG follows the creating thread).
    """
    tie = not daemon and threading.current_thread() is threading.main_thread()
    with open(component.log, "ab") as log:
        proc = subprocess.Popen(
            component.argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            env=env,
            preexec_fn=_die_with_parent(os.getpid()) if tie else None,  # noqa: PLW1509
        )
    component.pid = proc.pid
    return proc


def _proc_state(pid: int) -> str | None:
    """The state letter from /proc/<pid>/stat, or None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def is_alive(pid: int) -> bool:
    """Running and not a zombie (a zombie holds no ports and is gone for our purposes)."""
    return pid > 0 and _proc_state(pid) not in (None, "Z", "X")


def is_ours(component: Component) -> bool:
    """The PID still runs the recorded binary (guards against PID reuse after a reboot)."""
    if not is_alive(component.pid):
        return False
    try:
        exe = os.readlink(f"/proc/{component.pid}/exe")
    except OSError:
        return False
    return os.path.realpath(component.argv[0]) == exe.removesuffix(" (deleted)")


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _wait_gone(pid: int, proc: subprocess.Popen[bytes] | None, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return True
        if proc is None and not is_alive(pid):
            return True
        time.sleep(0.05)
    return False


def terminate(
    component: Component,
    proc: subprocess.Popen[bytes] | None = None,
    timeout: float = STOP_TIMEOUT_S,
) -> None:
    """SIGTERM the process group (so logs are flushed), SIGKILL it after ``timeout``."""
    pid = component.pid
    if proc is None and not is_ours(component):
        return
    if proc is not None and proc.poll() is not None:
        return
    _signal_group(pid, signal.SIGTERM)
    if not _wait_gone(pid, proc, timeout):
        print(
            f"[harness] {component.name} ignored SIGTERM for {timeout:.0f} s: SIGKILL",
            file=sys.stderr,
            flush=True,
        )
        _signal_group(pid, signal.SIGKILL)
        _wait_gone(pid, proc, 5.0)
    # Leftover members of the group (none expected): the group id is the leader's PID.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def log_tail(path: str | Path, lines: int = 40) -> str:
    """The last lines of a component's log, for error messages."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 64 * 1024))
            text = handle.read().decode(errors="replace")
    except FileNotFoundError:
        return "(no log file)"
    return "\n".join(text.splitlines()[-lines:])


def stop_all(components: Sequence[Component], procs: dict[str, subprocess.Popen[bytes]]) -> None:
    """Stop in reverse start order (controller-manager, apiserver, etcd)."""
    for component in reversed(components):
        terminate(component, procs.get(component.name))
