"""Test users in Keycloak."""

from __future__ import annotations

import time
from dataclasses import dataclass

from django.test import Client

from apikeys.assurance import SESSION_KEY
from apikeys.keycloak.desired import SECOND_FACTOR_LEVEL
from apikeys.models import User

PASSWORD = "correct horse battery staple"  # satisfies the realm's password policy


@dataclass
class KeycloakUser:
    id: str
    email: str
    password: str


def force_login_with_second_factor(client: Client, user: User) -> None:
    """`client.force_login`, with the session's sign-in at level 2 just now, as Keycloak's ID
    token says after a one-time password (the admin area needs it: apikeys/assurance.py)."""
    client.force_login(user)
    session = client.session
    session[SESSION_KEY] = {"acr": SECOND_FACTOR_LEVEL, "auth_time": int(time.time())}
    session.save()
