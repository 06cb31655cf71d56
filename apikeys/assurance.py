"""How sure the portal is of who acts, and what each kind of act needs: the one rule every
door uses (the pages, the JSON API, the CLI through the API).

Keycloak says how someone signed in, and the portal only reads it: the `acr` of their token
names the level reached (`desired.ACR_LEVELS`: a password, or a second factor as well) and
`auth_time` says when they last proved it. The pages read both from the session's ID token
(at sign-in and at every session check, apikeys/views/signin.py), the API from the access
token. Nothing about anyone's factor is stored in the portal.

- The admin area, pages and API, needs level 2 (`require_admin_level`).
- A customer's sensitive act (rotate, revoke, add a public key, change a key's permissions or
  networks, add a webhook endpoint or change its URL, make a registration token, change who
  owns a team: a role, inviting an owner, removing one) needs a second factor used within
  `STEP_UP_WINDOW_SECONDS`, of everyone who has one (`require_recent_factor`).
- A team may require a second factor of its members before they change anything
  (apikeys/access.py asks Keycloak, through apikeys/operations/identity.py).

A refusal is `StepUpRequired`: the pages send the person through Keycloak again, asking for
the level (`acr_values`) and a recent sign-in (`max_age`), and back to what they were doing;
the API answers with RFC 9470's `insufficient_user_authentication` challenge, which the CLI
answers by signing in again the same way.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest

from apikeys.client_address import client_ip
from apikeys.keycloak.client import KeycloakFailure
from apikeys.keycloak.desired import SECOND_FACTOR_LEVEL
from apikeys.models import AuditEntry, User
from apikeys.operations.identity import has_second_factor, second_factors

log = logging.getLogger(__name__)

# Where the pages keep the level and time of the session's last sign-in (from its ID token).
SESSION_KEY = "oidc_assurance"


@dataclass(frozen=True)
class Assurance:
    """What Keycloak said of a sign-in: the level reached (`acr`) and when (`auth_time`)."""

    level: str = ""
    authenticated_at: int = 0

    @classmethod
    def of_claims(cls, claims: dict[str, Any]) -> Assurance:
        """From a token Keycloak issued (its signature checked, or from its token endpoint)."""
        when = claims.get("auth_time")
        return cls(str(claims.get("acr") or ""), when if isinstance(when, int) else 0)

    @property
    def second_factor(self) -> bool:
        return self.level == SECOND_FACTOR_LEVEL

    def second_factor_within(self, seconds: int) -> bool:
        return self.second_factor and time.time() - self.authenticated_at <= seconds


class StepUpRequired(Exception):
    """The act needs a stronger or more recent sign-in: `max_age` set when it must be recent."""

    def __init__(self, message: str, *, max_age: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.acr_values = SECOND_FACTOR_LEVEL
        self.max_age = max_age


def of(request: HttpRequest) -> Assurance:
    """The assurance of the request's caller: the API's token, or the page session's sign-in."""
    attached = getattr(request, "assurance", None)
    if isinstance(attached, Assurance):
        return attached
    stored = request.session.get(SESSION_KEY) if hasattr(request, "session") else None
    if isinstance(stored, dict):
        return Assurance.of_claims(stored)
    return Assurance()


def attach(request: HttpRequest, assurance: Assurance) -> None:
    """The API's authentication hands the token's assurance to the rules below."""
    request.assurance = assurance  # type: ignore[attr-defined]


def require_admin_level(request: HttpRequest) -> None:
    """Administrators act only after a second factor in this sign-in."""
    assurance = of(request)
    if assurance.second_factor:
        _audit_api_step_up(request, request.user, assurance)  # type: ignore[arg-type]
        return
    raise StepUpRequired(
        "The admin area needs a second factor: confirm with your one-time password or "
        "passkey (Keycloak asks administrators who have none to set one up)."
    )


def require_factor_used_if_any(request: HttpRequest, person: User) -> None:
    """A change through the API by a sign-in that did not use the person's second factor
    (the device grant cannot ask for it; or they added one since) is refused with a step-up.
    People without one go on; so does everyone if Keycloak cannot say (their act's own rules
    still apply)."""
    if of(request).second_factor:
        return
    try:
        if not has_second_factor(person, briefly_cached=True):
            return
    except KeycloakFailure as error:
        log.warning("Could not ask Keycloak whether %s has a second factor: %s", person, error)
        return
    raise StepUpRequired(
        "Your account has a second factor, and this sign-in did not use it: sign in again "
        "with it (apikeys login, not --device) to change anything.",
        max_age=settings.STEP_UP_WINDOW_SECONDS,  # a fresh one serves a sensitive act too
    )


class FactorUnknown(Exception):
    """Keycloak cannot say now whether the person has a second factor: the act waits (a
    message on the page; 503 in the API)."""


def require_recent_factor(
    request: HttpRequest, person: User, *, keycloak_decides: bool = False
) -> None:
    """A sensitive act: if the person has a second factor, it must have been used within the
    window.

    If Keycloak cannot say whether they have one, the act is refused (`FactorUnknown`), unless
    `keycloak_decides`: acts whose own next step is in Keycloak (rotate, revoke, a key's
    permissions, networks or public keys) go on under the session's sign-in, for a step-up
    needs Keycloak too, a revocation must stay possible in an outage (the restrictive
    decision wins), and the others fail at Keycloak anyway.
    """
    window = settings.STEP_UP_WINDOW_SECONDS
    assurance = of(request)
    if assurance.second_factor_within(window):
        _audit_api_step_up(request, person, assurance)
        return
    if not assurance.second_factor:  # their sign-in did not use one: do they have one?
        try:
            if not has_second_factor(person):
                return
        except KeycloakFailure as error:
            log.warning("Could not ask Keycloak whether %s has a second factor: %s", person, error)
            if keycloak_decides:
                return
            raise FactorUnknown(
                "Keycloak cannot say now whether your account has a second factor, which this "
                "needs if it has one: nothing was done. Try again in a minute."
            ) from None
    minutes = max(window // 60, 1)
    raise StepUpRequired(
        f"This needs your second factor within the last {minutes} minutes: confirm with your "
        "one-time password or passkey, then it goes ahead.",
        max_age=window,
    )


def second_factors_to_show(person: User) -> list[str] | None:
    """The kinds of second factor `person` has (`otp`, `webauthn`), for them to see on their
    account page and in the API's `/me`; None if Keycloak cannot be asked now."""
    try:
        return second_factors(person)
    except KeycloakFailure as error:
        log.warning("Could not ask Keycloak which second factors %s has: %s", person, error)
        return None


def recent_factor_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """A sensitive act's view, page or API: `require_recent_factor` before anything but a read
    (a page's GET shows what the act will do)."""
    return _guard(view, keycloak_decides=False)


def recent_factor_required_keycloak_decides(view: Callable[..., Any]) -> Callable[..., Any]:
    """`recent_factor_required` for an act whose next step is in Keycloak: in an outage it
    goes on, and Keycloak decides (`require_recent_factor`)."""
    return _guard(view, keycloak_decides=True)


def _guard(view: Callable[..., Any], *, keycloak_decides: bool) -> Callable[..., Any]:
    @wraps(view)
    def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            person = request.user
            require_recent_factor(request, person, keycloak_decides=keycloak_decides)  # type: ignore[arg-type]
        return view(request, *args, **kwargs)

    # django-ninja reads an operation's parameters from this wrapper and resolves their
    # annotations (strings here) in the wrapper's module: give it the view's, resolved in its own.
    guarded.__signature__ = inspect.signature(view, eval_str=True)  # type: ignore[attr-defined]
    return guarded


def _audit_api_step_up(request: HttpRequest, person: User, assurance: Assurance) -> None:
    """A token's second factor seen by the API for the first time (once per sign-in: its
    `auth_time`), audited as the pages audit a step-up's return (apikeys/views/step_up.py)."""
    if not isinstance(getattr(request, "assurance", None), Assurance):
        return  # a page session: audited when Keycloak sent it back
    if not cache.add(f"step-up:{person.pk}:{assurance.authenticated_at}", 1, 86400):
        return
    record_step_up(
        request, person, f"Used a token of a sign-in at level {assurance.level} (the API)"
    )


def record_step_up(request: HttpRequest, person: User, reason: str) -> None:
    """The audit trail's entry for a second factor used for a sensitive act (either door)."""
    AuditEntry.record(
        person,
        AuditEntry.Action.STEPPED_UP,
        actor=person,
        ip_address=client_ip(request),
        reason=reason,
    )
