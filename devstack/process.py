"""Start, find and stop a background server through a pid file."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path


def cache_dir() -> Path:
    """Where downloads and server state live: outside git, shared by clones."""
    root = os.environ.get("PORTAL_CACHE_DIR") or Path.home() / ".cache" / "apikey-portal"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def running_pid(pid_file: Path) -> int | None:
    """The pid recorded in `pid_file` if that process is still alive."""
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, 0)
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return None
    except PermissionError:
        return pid
    return pid


_children: dict[int, subprocess.Popen[bytes]] = {}


def spawn(
    args: Sequence[str], *, pid_file: Path, log_file: Path, env: Mapping[str, str] | None = None
) -> int:
    """Start `args` in its own session, detached, logging to `log_file`."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        proc = subprocess.Popen(
            list(args),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            start_new_session=True,
        )
    pid_file.write_text(str(proc.pid))
    _children[proc.pid] = proc  # kept, so that stopping it here can reap it (no zombie)
    return proc.pid


def stop(pid_file: Path, *, timeout: float = 30) -> bool:
    """Stop the process group recorded in `pid_file`: TERM, then KILL after `timeout`."""
    pid = running_pid(pid_file)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return False
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.2)
    if _alive(pid):
        _signal_group(pid, signal.SIGKILL)
        while _alive(pid):
            time.sleep(0.1)
    pid_file.unlink(missing_ok=True)
    return True


def kill(pid_file: Path) -> bool:
    """SIGKILL the process group recorded in `pid_file` at once (a crash, for tests)."""
    pid = running_pid(pid_file)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return False
    _signal_group(pid, signal.SIGKILL)
    while _alive(pid):  # reaps it if it is our own child
        time.sleep(0.1)
    pid_file.unlink(missing_ok=True)
    return True


def _alive(pid: int) -> bool:
    child = _children.get(pid)
    if child is not None:  # our own child: reap it, or it lingers as a zombie
        if child.poll() is None:
            return True
        del _children[pid]
        return False
    try:  # a child of another process (e.g. bin/test's shell), or reaped by it
        finished, _ = os.waitpid(pid, os.WNOHANG)
        if finished:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def wait_until(check: Callable[[], bool], *, timeout: float, what: str, log_file: Path) -> float:
    """Poll `check` until true; return the seconds waited, or fail with the log's tail."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(0.5)
    tail = log_file.read_text(errors="replace")[-3000:] if log_file.exists() else ""
    raise RuntimeError(f"{what} was not ready after {timeout:.0f}s. Log tail:\n{tail}")


def http_ok(url: str) -> bool:
    """True if `url` answers 2xx."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback URL
            return bool(200 <= response.status < 300)
    except (urllib.error.URLError, OSError):
        return False


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)
