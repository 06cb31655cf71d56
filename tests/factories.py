"""What the tests build their data with, written once: people, keys, and whether a key works."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from django.test import Client
from django.urls import reverse
from django.utils import timezone

from apikeys.models import Api, ApiKey, User
from apikeys.operations import lifecycle
from apikeys.operations.lifecycle import KeyOrder
from tests.accounts import KeycloakUser
from tests.tokens import request_token


def unique_user(*, staff: bool = False, **fields: Any) -> User:
    """A portal user of their own (a `sub` and an email no other test has)."""
    name = uuid.uuid4().hex[:10]
    return User.objects.create(
        **{
            "username": str(uuid.uuid4()),
            "email": f"{name}@example.com",
            "first_name": "Pat",
            "last_name": name,
            "is_staff": staff,
            **fields,
        }
    )


def portal_user(account: KeycloakUser, **fields: Any) -> User:
    """The portal's record of a real Keycloak user, as their first sign-in makes it."""
    return User.objects.create(username=account.id, email=account.email, **fields)


def issue(
    owner: User, api: Api, name: str = "app", *, lifetime_days: int = 30, **order: Any
) -> lifecycle.Revealed:
    """A key issued the way every door issues one (`lifecycle.issue_key`)."""
    return lifecycle.issue_key(
        owner, KeyOrder(api=api, name=name, lifetime_days=lifetime_days, **order)
    )


def record_key(owner: User, api: Api, status: str = "active", **fields: Any) -> ApiKey:
    """A key's record alone, with no client in Keycloak (for what reads only records)."""
    return ApiKey.objects.create(
        **{
            "owner": owner,
            "api": api,
            "name": f"key {uuid.uuid4().hex[:6]}",
            "client_id": f"apikey-{uuid.uuid4().hex}",
            "status": status,
            "expires_at": timezone.now() + timedelta(days=9),
            **fields,
        }
    )


def works(revealed: lifecycle.Revealed) -> bool:
    """Whether the key gets a token with the secret it was revealed with."""
    return secret_works(revealed.key, revealed.secret)


def secret_works(key: ApiKey, secret: str) -> bool:
    """Whether Keycloak gives the key a token for `secret`."""
    return request_token(key.client_id, secret).status_code == 200


def submit_key_form(
    client: Client,
    name: str = "billing",
    *,
    lifetime_days: str = "90",
    headers: dict[str, str] | None = None,
    **fields: str | list[str],
) -> Any:
    """The create form, filled in and sent as a browser does (htmx or not: `headers`)."""
    data = {"name": name, "api": "sample", "lifetime_days": lifetime_days, **fields}
    return client.post(reverse("new_key"), data, headers=headers)


def invitation_link(address: str, *, besides: tuple[str, ...] = (), timeout: float = 20) -> str:
    """The link of a team invitation mailed to `address` (one not in `besides`), from the
    mail sink, waiting for it to arrive."""
    import re
    import time

    from tests.mail import messages_to, plain_text

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for message in messages_to(address):
            found = re.search(r"https?://\S+/invitations/[^/\s]+/", plain_text(message))
            if found and found.group(0) not in besides:
                return found.group(0)
        time.sleep(0.25)
    raise AssertionError(f"No new invitation to {address} arrived within {timeout}s")
