"""Registration tokens: made and revoked by people, at the pages, the JSON API and the CLI.

What software registers with a token is apikeys/operations/registration.py (RFC 7591/7592).
They are apart because registering needs what making a token does not (keys, their
permissions, Keycloak): the doors that make tokens stay within the chain of imports that
tests/test_layout.py allows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from apikeys.credentials import networks
from apikeys.credentials.secret_format import REGISTRATION_PREFIX, is_well_formed, new_secret
from apikeys.models import (
    Api,
    AuditEntry,
    Permission,
    RegistrationToken,
    Team,
    User,
    WrongState,
)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class NewRegistrationToken:
    token: RegistrationToken
    secret: str = field(repr=False)  # the `kcrt_…` token itself, shown once


@sensitive_variables()
def create_token(
    owner: User,
    *,
    api: Api,
    name: str,
    max_registrations: int,
    expires_in_days: int,
    key_lifetime_days: int,
    permissions: Sequence[str] | None = None,
    allow_from: Sequence[str] = (),
    team: Team | None = None,
    ip_address: str | None = None,
) -> NewRegistrationToken:
    """A new registration token, within the administrators' bounds (its life, its count)."""
    if api.retired_at is not None:
        raise WrongState(f"{api.name} is retired and takes no new keys.")
    if not 1 <= expires_in_days <= settings.REGISTRATION_TOKEN_MAX_DAYS:
        raise WrongState(
            f"A registration token lives 1 to {settings.REGISTRATION_TOKEN_MAX_DAYS} days."
        )
    if not 1 <= key_lifetime_days <= api.max_key_lifetime_days:
        raise WrongState(
            f"Keys for {api.name} can be valid for at most {api.max_key_lifetime_days} days."
        )
    chosen = api.permissions_called(permissions)  # UnknownPermission names the ones there are
    secret = new_secret(REGISTRATION_PREFIX)
    with transaction.atomic():
        token = RegistrationToken(
            owner=owner,
            team=team,
            api=api,
            name=name,
            digest=digest(secret),
            max_registrations=max_registrations,
            networks=networks.parse(allow_from),
            key_lifetime_days=key_lifetime_days,
            expires_at=timezone.now() + timedelta(days=expires_in_days),
        )
        token.full_clean()
        token.save()
        token.permissions.set(chosen)
        AuditEntry.record(
            team if team is not None else owner,
            AuditEntry.Action.REGISTRATION_TOKEN_CREATED,
            actor=owner,
            ip_address=ip_address,
            reason=_describe(token, chosen),
        )
    return NewRegistrationToken(token, secret)


def _describe(token: RegistrationToken, chosen: Sequence[Permission]) -> str:
    where = ", ".join(token.networks) or "anywhere"
    held = ", ".join(p.name for p in chosen) or "none"
    return (
        f"“{token.name}” for {token.api.name}: up to {token.max_registrations} keys until "
        f"{token.expires_at:%Y-%m-%d}, from {where}; permissions: {held}."
    )


def revoke_token(
    token: RegistrationToken,
    *,
    actor: User | None,
    ip_address: str | None = None,
    reason: str = "",
) -> RegistrationToken:
    """It registers nothing more; the keys it registered stay (revoke them one by one).
    `reason`: why, if the person says (an administrator may)."""
    with transaction.atomic():
        token = RegistrationToken.objects.select_for_update().get(pk=token.pk)
        if token.revoked_at is None:
            token.revoked_at = timezone.now()
            token.save(update_fields=["revoked_at"])
            AuditEntry.record(
                token.team if token.team is not None else token.owner,
                AuditEntry.Action.REGISTRATION_TOKEN_REVOKED,
                actor=actor,
                ip_address=ip_address,
                reason=f"“{token.name}” ({token.registrations} keys registered with it)."
                + (f" {reason}" if reason else ""),
            )
    return token


@sensitive_variables()
def token_for(secret: str) -> RegistrationToken | None:
    """The registration token `secret` is, if it is one (well formed, and known)."""
    if not is_well_formed(secret, REGISTRATION_PREFIX):
        return None
    return (
        RegistrationToken.objects.select_related("api", "owner", "team")
        .filter(digest=digest(secret))
        .first()
    )
