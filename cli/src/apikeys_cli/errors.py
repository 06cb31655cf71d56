"""What can go wrong, each kind with the exit code scripts see (the list is in main's docstring)."""

from __future__ import annotations

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


class NotFound(Failure):
    exit_code = 4


class Refused(Failure):
    exit_code = 5


class Unavailable(Failure):
    exit_code = 6
