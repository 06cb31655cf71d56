"""What Keycloak says of a person that decides what they may do: whether they hold the
`portal-admin` role, and which second factors they have. Asked of Keycloak (view-users),
never taken from a claim alone nor stored in the portal. The rules that ask (the sign-in and
the API's authentication, apikeys/assurance.py, apikeys/access.py, a team's own rule in
apikeys/operations/teams.py) each decide what Keycloak's silence means for them.
"""

from __future__ import annotations

import logging
import time

from django.conf import settings

from apikeys.keycloak import client as keycloak
from apikeys.keycloak.client import KeycloakFailure
from apikeys.keycloak.desired import SECOND_FACTORS
from apikeys.models import User

log = logging.getLogger(__name__)

# How each kind of second factor is called on the pages.
NAMES = {"otp": "one-time password", "webauthn": "passkey"}


def second_factors(user: User) -> list[str]:
    """The kinds of second factor the person has in Keycloak (`SECOND_FACTORS`, in
    that order): KeycloakFailure if Keycloak cannot be asked."""
    try:
        kinds = keycloak.credential_types(keycloak.portal_connection(), user.username)
    except keycloak.NotFound:
        return []  # no account in Keycloak (any more): no factor either
    return [kind for kind in SECOND_FACTORS if kind in kinds]


# How long a "no second factor" answer is reused for the API's writes, per process: someone
# who adds one is asked for it within this.
NO_FACTOR_SECONDS = 30
_no_factor: dict[str, float] = {}


def has_second_factor(user: User, *, briefly_cached: bool = False) -> bool:
    """Whether the person has a one-time password or a passkey in Keycloak (KeycloakFailure
    if Keycloak cannot be asked); `briefly_cached`: a "no" of the last NO_FACTOR_SECONDS."""
    now = time.monotonic()
    if (
        briefly_cached
        and now - _no_factor.get(user.username, -NO_FACTOR_SECONDS) < NO_FACTOR_SECONDS
    ):
        return False
    has = bool(second_factors(user))
    if not has:
        if len(_no_factor) > 10_000:
            _no_factor.clear()
        _no_factor[user.username] = now
    return has


def has_second_factor_if_known(user: User) -> bool | None:
    """`has_second_factor`, or None if Keycloak cannot say now (logged): a team that requires
    a factor refuses its members' changes then (apikeys/access.py), and its page says why."""
    try:
        return has_second_factor(user)
    except KeycloakFailure as error:
        log.warning("Could not ask Keycloak whether %s has a second factor: %s", user, error)
        return None


# How long Keycloak's answer to "is this person an administrator?" is reused, per process.
ADMIN_ROLE_SECONDS = 30
_admin_answers: dict[str, tuple[float, bool]] = {}


def holds_admin_role(sub: str) -> bool:
    """Whether Keycloak maps the `portal-admin` realm role to the user `sub`.

    Asked of Keycloak's role mappings, not taken from a token's claim: a claim is whatever
    the client's and scopes' mappers put there, and anyone who may manage clients can add a
    mapper. If Keycloak cannot be asked, the answer is no (admin rights fail closed).
    """
    now = time.monotonic()
    known = _admin_answers.get(sub)
    if known is not None and now - known[0] < ADMIN_ROLE_SECONDS:
        return known[1]
    try:
        roles = keycloak.realm_roles_of(keycloak.portal_connection(), sub)
    except KeycloakFailure as error:
        log.warning("Could not ask Keycloak whether %s is an administrator: %s", sub, error)
        return False
    if len(_admin_answers) > 10_000:
        _admin_answers.clear()
    _admin_answers[sub] = (now, settings.OIDC_ADMIN_ROLE in roles)
    return _admin_answers[sub][1]


def forget_admin_answers() -> None:
    """Ask Keycloak afresh (the tests, after they change a role)."""
    _admin_answers.clear()
