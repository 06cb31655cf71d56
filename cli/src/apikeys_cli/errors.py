"""What can go wrong, each kind with the exit code scripts see (the list is in main's docstring)."""

from __future__ import annotations

import re
from typing import Any


class Failure(Exception):
    """A request that did not succeed; `exit_code` tells scripts what kind of failure."""

    exit_code = 1

    def __init__(self, message: str, *, status: int = 0, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class Usage(Failure):
    exit_code = 2


class NotSignedIn(Failure):
    exit_code = 3


class StepUpNeeded(NotSignedIn):
    """RFC 9470: the portal wants a stronger or more recent sign-in (`acr_values`, `max_age`)."""

    def __init__(
        self, message: str, *, status: int = 0, body: Any = None, challenge: str = ""
    ) -> None:
        super().__init__(message, status=status, body=body)
        found = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        self.acr_values = found.get("acr_values", "")
        self.max_age = found.get("max_age", "")


class NotFound(Failure):
    exit_code = 4


class Refused(Failure):
    exit_code = 5


class Unavailable(Failure):
    exit_code = 6
