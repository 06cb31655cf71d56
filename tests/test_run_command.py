"""bin/run, the README's first command: it serves the portal and stops cleanly on a signal.

It runs as a newcomer runs it (the dev profile, SQLite, its own Keycloak and mail sink), on
ports of its own so that it can run beside the test services.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PORTAL, KEYCLOAK, MAIL = 8391, 8392, 1392
PORTS = (PORTAL, KEYCLOAK, KEYCLOAK + 920, MAIL)  # + Keycloak's management port


def listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback
            return bool(response.status == 200)
    except OSError:
        return False


def wait_for(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.5)
    return False


@pytest.fixture
def run_command(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    assert not any(listening(p) for p in PORTS), "the ports of this test are taken"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PORTAL_", "KEYCLOAK_", "EMAIL_", "DJANGO_", "DATABASE_"))
    }
    env |= {
        "PORTAL_DEV_INSTANCE": "runcheck",
        "PORTAL_PORT": str(PORTAL),
        "KEYCLOAK_PORT": str(KEYCLOAK),
        "MAIL_PORT": str(MAIL),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'portal.sqlite3'}",
    }
    with (tmp_path / "run.log").open("wb") as log:
        process = subprocess.Popen(
            ["bin/run"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        yield process
        if process.poll() is None:  # the test failed before stopping it: leave nothing running
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    for service in ("devstack.keycloak_server", "devstack.mailsink"):
        subprocess.run(
            [str(ROOT / ".venv/bin/python"), "-m", service, "stop", "--instance", "runcheck"],
            cwd=ROOT,
            check=False,
            capture_output=True,
        )


def test_sigterm_stops_the_portal_keycloak_and_the_mail_sink(
    run_command: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    up = wait_for(lambda: answers(f"http://127.0.0.1:{PORTAL}/health/"), timeout=300)
    assert up, (tmp_path / "run.log").read_text()[-3000:]
    assert all(listening(p) for p in PORTS)

    run_command.send_signal(signal.SIGTERM)

    assert wait_for(lambda: not any(listening(p) for p in PORTS), timeout=30), [
        p for p in PORTS if listening(p)
    ]
    assert run_command.wait(timeout=10) == 143
