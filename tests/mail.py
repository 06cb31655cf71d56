"""Reading the mail sink's Maildir, where Keycloak and the portal deliver in tests."""

from __future__ import annotations

import email
import email.policy
import mailbox
import os
import time
from email.message import EmailMessage
from typing import BinaryIO


def _parse(f: BinaryIO) -> EmailMessage:
    return email.message_from_binary_file(f, policy=email.policy.default)


def messages_to(address: str) -> list[EmailMessage]:
    box = mailbox.Maildir(os.environ["PORTAL_TEST_MAILDIR"], factory=_parse, create=False)  # type: ignore[arg-type]
    return [m for m in box if address.lower() in str(m["To"]).lower()]  # type: ignore[misc]


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
