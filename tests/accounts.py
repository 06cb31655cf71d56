"""Test users in Keycloak."""

from __future__ import annotations

from dataclasses import dataclass

PASSWORD = "correct horse battery staple"  # satisfies the realm's password policy


@dataclass
class KeycloakUser:
    id: str
    email: str
    password: str
