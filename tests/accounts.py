"""Test users in Keycloak."""

from __future__ import annotations

import contextlib
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.test import Client

from apikeys.assurance import SESSION_KEY
from apikeys.keycloak.desired import SECOND_FACTOR_LEVEL
from apikeys.models import User

if TYPE_CHECKING:
    from keycloak import KeycloakAdmin

PASSWORD = "correct horse battery staple"  # satisfies the realm's password policy


@dataclass
class KeycloakUser:
    id: str
    email: str
    password: str


def create_keycloak_user(
    admin: KeycloakAdmin, *, prefix: str = "user", roles: tuple[str, ...] = ()
) -> KeycloakUser:
    """A verified Keycloak user with `PASSWORD` and the realm roles named; the caller deletes
    it (conftest's `make_keycloak_user` does after each test)."""
    email = f"{prefix}-{uuid.uuid4().hex[:10]}@example.com"
    user_id = admin.create_user(
        {
            "username": email,
            "email": email,
            "emailVerified": True,
            "enabled": True,
            "firstName": "Test",
            "lastName": "User",
            "credentials": [{"type": "password", "value": PASSWORD, "temporary": False}],
        }
    )
    try:
        if roles:
            admin.assign_realm_roles(user_id, [admin.get_realm_role(r) for r in roles])
    except BaseException:
        with contextlib.suppress(Exception):  # the first error is the one to see
            admin.delete_user(user_id)  # the caller never learns its id: it would outlive the run
        raise
    return KeycloakUser(user_id, email, PASSWORD)


def force_login_with_second_factor(client: Client, user: User) -> None:
    """`client.force_login`, with the session's sign-in at level 2 just now, as Keycloak's ID
    token says after a one-time password (the admin area needs it: apikeys/assurance.py)."""
    client.force_login(user)
    session = client.session
    session[SESSION_KEY] = {"acr": SECOND_FACTOR_LEVEL, "auth_time": int(time.time())}
    session.save()
