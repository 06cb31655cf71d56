"""Who calls the API: a Keycloak access token of a signed-in user, issued to the CLI's client.

The token must be valid for the portal API's audience (the `portal-api` client scope that
bootstrap makes and gives the CLI's client), issued to that client (`azp`: a key's own
service account gets no user access), and name a user the portal knows and has not
deactivated. A user who has signed in to Keycloak but not yet to the portal's pages is made
as the sign-in would make them. Admin routes need the `portal-admin` role in the token.
No new kind of long-lived secret exists for the API: its credentials are Keycloak's tokens.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from ninja.security import HttpBearer

from apikeys import assurance
from apikeys.api.problems import Problem
from apikeys.credentials.bearer import realm_validator
from apikeys.credentials.challenge import TokenError
from apikeys.models import User
from apikeys.operations.identity import holds_admin_role


class PortalToken(HttpBearer):
    """An access token of the CLI's client for the portal API; `admin` routes need the role."""

    def __init__(self, *, admin: bool = False) -> None:
        super().__init__()
        self.admin = admin

    def __call__(self, request: HttpRequest) -> Any:
        header = request.headers.get("Authorization", "")
        if not header.lower().startswith("bearer "):
            raise Problem(
                401,
                "Send a Keycloak access token: Authorization: Bearer <token> (apikeys login).",
                headers={"WWW-Authenticate": f'Bearer realm="{settings.PORTAL_API_AUDIENCE}"'},
            )
        return super().__call__(request)

    def authenticate(self, request: HttpRequest, token: str) -> User:
        try:
            claims = realm_validator().validate(token, settings.PORTAL_API_AUDIENCE)
        except TokenError as error:
            raise Problem(401, error.description, headers=_challenge("invalid_token")) from None
        if claims.get("azp") != settings.CLI_CLIENT_ID:
            raise Problem(401, "The token was not issued to the portal's command-line client.")
        user = _portal_user(claims)
        claimed = settings.OIDC_ADMIN_ROLE in claims.get(settings.OIDC_ROLES_CLAIM, [])
        admin = claimed and holds_admin_role(user.username)  # the claim alone can be forged
        if user.is_staff != admin:
            # As of the token's issue: a role change Keycloak reported since outranks it.
            issued_ms = int(claims.get("iat") or 0) * 1000
            user.set_admin_role(granted=admin, how="in Keycloak (seen by the API)", at_ms=issued_ms)
            user.refresh_from_db(fields=["is_staff"])
        if self.admin and not user.is_staff:
            raise Problem(403, "This needs the portal-admin role.")
        request.user = user
        assurance.attach(request, assurance.Assurance.of_claims(claims))
        if self.admin:
            assurance.require_admin_level(request)
        elif request.method not in ("GET", "HEAD", "OPTIONS"):
            assurance.require_factor_used_if_any(request, user)
        return user


def _portal_user(claims: dict[str, Any]) -> User:
    sub = str(claims.get("sub", ""))
    user = User.objects.filter(username=sub).first()
    if user is None:
        if not sub or claims.get("email_verified") is not True:
            raise Problem(403, "Verify your email address in Keycloak first.")
        user = User(username=sub)
    elif not user.is_active:
        raise Problem(403, "Your account is disabled.")
    verified = claims.get("email_verified") is True  # an unverified address is not taken
    profile = {
        "email": str(claims.get("email", user.email)) if verified else user.email,
        "first_name": str(claims.get("given_name", user.first_name))[:150],
        "last_name": str(claims.get("family_name", user.last_name))[:150],
    }
    new = user._state.adding
    if new or any(getattr(user, k) != v for k, v in profile.items()):
        for name, value in profile.items():
            setattr(user, name, value)
        if new:
            user.set_unusable_password()
        try:
            with transaction.atomic():
                user.save()
        except IntegrityError:  # a concurrent first request made them a moment ago
            return User.objects.get(username=sub)
    return user


def _challenge(error: str) -> dict[str, str]:
    return {"WWW-Authenticate": f'Bearer realm="{settings.PORTAL_API_AUDIENCE}", error="{error}"'}
