"""Reading the mail sink's Maildir, where Keycloak and the portal deliver in tests.

The sink keeps every message it was ever sent, so a reader that parsed the whole folder on each
look spent most of the suite's time in Python's email parser. Each file is read once per test
session: its `To` header first, the whole message only when a test asks for it. Messages
delivered before this session started are no test's business and are skipped by their name
(the sink names them `<seconds>.M<microseconds>P<pid>…`, Python's Maildir format).
"""

from __future__ import annotations

import email
import email.parser
import email.policy
import os
import time
from email.message import EmailMessage
from pathlib import Path

_SESSION_START = time.time() - 5  # a little slack for a clock read before the first delivery
_recipients: dict[str, str] = {}  # a message's file name: its `To`, lower-case
_messages: dict[str, EmailMessage] = {}


def _delivered_at(name: str) -> tuple[int, int]:
    seconds, _, rest = name.partition(".")
    micros = rest[1:].partition("P")[0] if rest.startswith("M") else "0"
    if not seconds.isdigit():
        return 0, 0  # not the sink's name
    return int(seconds), int(micros) if micros.isdigit() else 0


def _files() -> list[Path]:
    folder = Path(os.environ["PORTAL_TEST_MAILDIR"])
    found = [entry for sub in ("new", "cur") for entry in (folder / sub).iterdir()]
    found = [path for path in found if _delivered_at(path.name)[0] >= _SESSION_START]
    return sorted(found, key=lambda path: _delivered_at(path.name))


def _recipient(path: Path) -> str:
    if path.name not in _recipients:
        with path.open("rb") as f:
            headers = email.parser.BytesHeaderParser(policy=email.policy.default).parse(f)
        _recipients[path.name] = str(headers["To"]).lower()
    return _recipients[path.name]


def _message(path: Path) -> EmailMessage:
    if path.name not in _messages:
        with path.open("rb") as f:
            parsed = email.message_from_binary_file(f, policy=email.policy.default)
        _messages[path.name] = parsed
    return _messages[path.name]


def messages_to(address: str) -> list[EmailMessage]:
    """The messages to `address` delivered in this session, oldest first."""
    wanted = address.lower()
    return [_message(path) for path in _files() if wanted in _recipient(path)]


def wait_for_message(address: str, *, timeout: float = 20) -> EmailMessage:
    """The first message to `address`, waiting for it to arrive."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = messages_to(address)
        if found:
            return found[0]
        time.sleep(0.25)
    raise AssertionError(f"No mail to {address} arrived within {timeout}s")


def plain_text(message: EmailMessage) -> str:
    body = message.get_body(preferencelist=("plain",))
    assert body is not None, "the message has no text part"
    return str(body.get_content())
