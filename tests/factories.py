"""What the tests build their data with, written once: people, keys, and whether a key works."""

from __future__ import annotations

from typing import Any

from apikeys.models import Api, User
from apikeys.operations import lifecycle
from apikeys.operations.lifecycle import KeyOrder


def issue(
    owner: User, api: Api, *, name: str = "app", lifetime_days: int = 30, **order: Any
) -> lifecycle.Revealed:
    """A key issued the way every door issues one (`lifecycle.issue_key`)."""
    return lifecycle.issue_key(
        owner, KeyOrder(api=api, name=name, lifetime_days=lifetime_days, **order)
    )
