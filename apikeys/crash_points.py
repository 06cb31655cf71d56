"""Crash points: the step boundaries where a process may die mid-operation, for the tests.

An operation that spans the database and Keycloak calls `crash_point(name)` after each
Keycloak change and before the database commits its record of it. Tests arm a point to prove that a
retry, or reconcile, converges from there. Armed only in the test profile: in tests by
`armed[name] = ...`, in their subprocesses by PORTAL_FAULTS (e.g. "issue:client-created=exit").
"""

from __future__ import annotations

import os

POINTS = (
    "issue:reserved",
    "issue:client-created",
    "discard:client-deleted",
    "rotate:secret-set",
    "revoke:client-deleted",
    "approve:client-enabled",
    "reject:client-deleted",
    "suspend:client-disabled",
    "reinstate:client-enabled",
    "expire:client-disabled",
)


class SimulatedCrash(BaseException):
    """Raised at an armed point. A BaseException, so no `except Exception` stops it."""


class InjectedError(Exception):
    """An unexpected error raised at an armed point, as a bug would raise one."""


# Point -> "raise" (SimulatedCrash), "error" (InjectedError) or "exit" (the process dies).
armed: dict[str, str] = (
    dict(item.split("=", 1) for item in os.environ.get("PORTAL_FAULTS", "").split(",") if item)
    if os.environ.get("PORTAL_PROFILE") == "test"
    else {}
)


def crash_point(name: str) -> None:
    """Mark a step boundary; when a test armed it, crash here."""
    action = armed.get(name)
    if action == "exit":
        os._exit(137)  # as if killed: no cleanup, the open transaction is lost
    if action == "raise":
        raise SimulatedCrash(name)
    if action == "error":
        raise InjectedError(name)
