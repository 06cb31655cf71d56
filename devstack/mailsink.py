"""A local SMTP server that keeps every message in a Maildir, for dev and tests.

    python -m devstack.mailsink start [--instance dev] [--port 1025]
    python -m devstack.mailsink stop [--instance dev]

Keycloak's verification mails and the portal's own mails land here; tests read them with
`mailbox.Maildir(maildir(instance))`.
"""

from __future__ import annotations

import argparse
import mailbox
import socket
import sys
from pathlib import Path

from devstack.process import cache_dir, running_pid, spawn, stop, wait_until


def root(instance: str) -> Path:
    return cache_dir() / "mail" / instance


def maildir(instance: str) -> Path:
    return root(instance) / "Maildir"


def is_listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def start(instance: str, port: int) -> None:
    pid_file = root(instance) / "mailsink.pid"
    if running_pid(pid_file) and is_listening(port):
        return
    if is_listening(port):
        raise RuntimeError(f"Something else already listens on port {port}")
    root(instance).mkdir(parents=True, exist_ok=True)
    mailbox.Maildir(maildir(instance), create=True)  # with its tmp/new/cur folders
    log_file = root(instance) / "mailsink.log"
    spawn(
        [
            sys.executable,
            "-m",
            "aiosmtpd",
            "-n",
            "-l",
            f"127.0.0.1:{port}",
            "-c",
            "aiosmtpd.handlers.Mailbox",
            str(maildir(instance)),
        ],
        pid_file=pid_file,
        log_file=log_file,
    )
    wait_until(lambda: is_listening(port), timeout=20, what="mail sink", log_file=log_file)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.mailsink")
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("--instance", default="dev")
    parser.add_argument("--port", type=int, default=1025)
    args = parser.parse_args(argv)
    if args.action == "start":
        start(args.instance, args.port)
        print(f"Mail sink on 127.0.0.1:{args.port}, messages in {maildir(args.instance)}")
    else:
        print("stopped" if stop(root(args.instance) / "mailsink.pid") else "not running")
    return 0


if __name__ == "__main__":
    sys.exit(main())
