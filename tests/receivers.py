"""A customer's webhook receiver: a real HTTP server on loopback that records what arrives."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Receiver:
    """Answers `answers` in turn (then 200); `hang` seconds on the first request first."""

    port: int = 0
    answers: list[int] = field(default_factory=list)
    hang: float = 0.0
    delay: float = 0.0  # before every answer
    trickle: bool = False  # answer one byte every 0.2 s, for ever
    location: str = ""  # for 3xx answers
    received: list[Received] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def ids(self) -> list[str]:
        return [r.headers["webhook-id"] for r in self.received]

    def start(self) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                outer.received.append(Received(headers, body, time.monotonic()))
                if outer.hang:
                    hang, outer.hang = outer.hang, 0.0
                    time.sleep(hang)
                time.sleep(outer.delay)
                if outer.trickle:
                    self.send_response(200)
                    self.send_header("Content-Length", "100000")
                    self.end_headers()
                    for _ in range(500):
                        try:
                            self.wfile.write(b"x")
                            self.wfile.flush()
                        except OSError:
                            return
                        time.sleep(0.2)
                    return
                status = outer.answers.pop(0) if outer.answers else 200
                self.send_response(status)
                if outer.location:
                    self.send_header("Location", outer.location)
                reply = b'{"ok": true}' if status < 300 else b"not now"
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_port
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


@contextmanager
def receiver(**options: Any) -> Iterator[Receiver]:
    listening = Receiver(**options)
    listening.start()
    try:
        yield listening
    finally:
        listening.stop()


def free_port() -> int:
    """A port nothing listens on (yet): a receiver that is down."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
