"""Sign-in through Keycloak: users are matched on the token's `sub`, never on email.

A portal session follows the Keycloak session it came from. Every
KEYCLOAK_SESSION_CHECK_SECONDS (60) a signed-in request asks Keycloak, on the back channel,
for fresh tokens with the refresh token kept in the (server-side) session: if Keycloak
refuses (its session was ended or revoked, the user disabled or deleted), the portal session
ends too; if it answers, the admin role is read again from the new ID token, so a role
removed in Keycloak takes effect within a minute. If Keycloak cannot be asked, the user stays
signed in but loses admin rights once the last confirmation is two intervals old.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import requests
from django.conf import settings
from django.contrib.auth import logout
from django.contrib.auth.middleware import (
    LoginRequiredMiddleware as DjangoLoginRequiredMiddleware,
)
from django.http import HttpRequest, HttpResponse
from django.shortcuts import resolve_url
from django_htmx.http import HttpResponseClientRedirect
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.views import OIDCAuthenticationRequestView

from apikeys import assurance
from apikeys.limits import over_limit, too_many_requests
from apikeys.models import User
from apikeys.operations.identity import holds_admin_role
from apikeys.views import step_up

log = logging.getLogger(__name__)

Claims = dict[str, Any]
# Session keys: the refresh token of the Keycloak session, and when Keycloak last confirmed it.
REFRESH_TOKEN = "oidc_refresh_token"  # noqa: S105 - a session key's name
CONFIRMED_AT = "oidc_confirmed_at"


class KeycloakBackend(OIDCAuthenticationBackend):  # type: ignore[misc]
    """The portal user is the Keycloak user with the same `sub`; the rest is refreshed."""

    def get_token(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The sign-in's tokens; the refresh token is kept for the session checks."""
        tokens: dict[str, Any] = super().get_token(payload)
        self.request.session[REFRESH_TOKEN] = tokens.get("refresh_token", "")
        self.request.session[CONFIRMED_AT] = time.time()
        return tokens

    def get_or_create_user(self, access_token: str, id_token: str, payload: Claims) -> Any:
        """The user; and the level and time of this sign-in, from its verified ID token."""
        user = super().get_or_create_user(access_token, id_token, payload)
        if user is not None:
            keep_assurance(self.request, payload)
            step_up.record(self.request, user, payload)
        return user

    def verify_claims(self, claims: Claims) -> bool:
        # Keycloak enforces email verification before sign-in completes; check it anyway.
        return bool(claims.get("sub")) and claims.get("email_verified") is True

    def get_user(self, user_id: Any) -> User | None:
        """The session's user, unless deactivated since (disabled or deleted in Keycloak)."""
        return User.objects.filter(pk=user_id, is_active=True).first()

    def filter_users_by_claims(self, claims: Claims) -> Any:
        return User.objects.filter(username=claims["sub"])

    def create_user(self, claims: Claims) -> User:
        user = User(username=claims["sub"])
        return self.update_user(user, claims)

    def update_user(self, user: User, claims: Claims) -> User:
        """Copy the profile and the admin role from Keycloak, at every sign-in."""
        user.email = claims.get("email", "")
        user.first_name = claims.get("given_name", "")[:150]
        user.last_name = claims.get("family_name", "")[:150]
        if user.has_usable_password():  # once: a new one changes the session's hash, and a
            user.set_unusable_password()  # step-up's sign-in (no new login) would sign them out
        user.save()
        user.set_admin_role(
            granted=_is_admin(claims), how="(seen at sign-in)", at_ms=_issued_ms(claims)
        )
        user.refresh_from_db(fields=["is_staff"])
        return user


class RegistrationRequestView(OIDCAuthenticationRequestView):  # type: ignore[misc]
    """Like sign-in, with the same state, nonce and PKCE, but to Keycloak's registration page."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.OIDC_OP_AUTH_ENDPOINT = settings.OIDC_OP_REGISTRATION_ENDPOINT

    def get(self, request: HttpRequest) -> HttpResponse:
        # Keycloak's own registration page needs a limit at the proxy too
        # (docs/customers-and-partners.md, "Limits at the proxy").
        if over_limit(request, "register", method="GET"):
            return too_many_requests(request, "Too many accounts were started from your address.")
        response: HttpResponse = super().get(request)
        return response


def keycloak_logout_url(request: HttpRequest) -> str:
    """Keycloak's end-session URL, so that signing out ends the Keycloak session too."""
    params = {
        "client_id": settings.OIDC_RP_CLIENT_ID,
        "post_logout_redirect_uri": f"{settings.PORTAL_URL}/",
    }
    id_token = request.session.get("oidc_id_token")
    if id_token:
        params["id_token_hint"] = id_token
    return f"{settings.OIDC_OP_LOGOUT_ENDPOINT}?{urlencode(params)}"


class LoginRequiredMiddleware(DjangoLoginRequiredMiddleware):
    """Django's deny-by-default middleware, with a full-page redirect for htmx requests.

    A 302 to Keycloak inside an htmx request would be followed by the XHR and its login
    page swapped into the panel; `HX-Redirect` makes the browser itself go there.
    """

    def handle_no_permission(  # type: ignore[override]
        self, request: HttpRequest, view_func: Any
    ) -> HttpResponse:
        htmx = getattr(request, "htmx", None)
        if htmx:
            current = htmx.current_url_abs_path or resolve_url(settings.LOGIN_REDIRECT_URL)
            return HttpResponseClientRedirect(
                f"{resolve_url(settings.LOGIN_URL)}?{urlencode({'next': current})}"
            )
        return super().handle_no_permission(request, view_func)


def _issued_ms(claims: Claims) -> int:
    """When the token saying so was issued (epoch ms, as Keycloak's event times)."""
    return int(claims.get("iat") or 0) * 1000


def _is_admin(claims: Claims) -> bool:
    """The role in the ID token, confirmed by Keycloak's role mappings (a claim alone can be
    made by any mapper someone who manages clients adds)."""
    claimed = settings.OIDC_ADMIN_ROLE in claims.get(settings.OIDC_ROLES_CLAIM, [])
    return claimed and holds_admin_role(str(claims.get("sub", "")))


class KeycloakSessionMiddleware:
    """End portal sessions that Keycloak ended, and keep admin rights as Keycloak has them."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        refresh_token = request.session.get(REFRESH_TOKEN)
        if (
            request.user.is_authenticated
            and not refresh_token
            and request.session.get("oidc_id_token")
        ):
            logout(request)  # signed in before sessions were checked: it cannot be; sign in again
            return self.get_response(request)
        if request.user.is_authenticated and refresh_token:
            confirmed = float(request.session.get(CONFIRMED_AT, 0))
            now = time.time()
            if now - confirmed >= settings.KEYCLOAK_SESSION_CHECK_SECONDS:
                try:
                    claims = _refresh(request, refresh_token)
                except SessionEnded:
                    logout(request)  # LoginRequiredMiddleware sends them to sign in again
                    return self.get_response(request)
                user = request.user
                if claims is not None:
                    user.set_admin_role(
                        granted=_is_admin(claims), how="in Keycloak", at_ms=_issued_ms(claims)
                    )
                    user.refresh_from_db(fields=["is_staff"])
                elif now - confirmed > 2 * settings.KEYCLOAK_SESSION_CHECK_SECONDS:
                    user.is_staff = False  # unconfirmed for too long: no admin rights
        return self.get_response(request)


class SessionEnded(Exception):
    """Keycloak refused the session's refresh token: its session is over."""


def _refresh(request: HttpRequest, refresh_token: str) -> Claims | None:
    """Ask Keycloak for fresh tokens: the new ID token's claims, or None if it could not be
    asked. SessionEnded if Keycloak ended the session (it refuses the refresh token)."""
    try:
        response = requests.post(
            settings.OIDC_OP_TOKEN_ENDPOINT,
            data={
                "grant_type": "refresh_token",
                "refresh_token": refresh_token,
                "client_id": settings.OIDC_RP_CLIENT_ID,
                "client_secret": settings.OIDC_RP_CLIENT_SECRET,
                "scope": settings.OIDC_RP_SCOPES,
            },
            timeout=settings.KEYCLOAK_TIMEOUT,
        )
    except requests.RequestException as error:
        log.warning("Could not confirm a session with Keycloak: %s", error)
        return None
    if response.status_code == 400:  # invalid_grant: the Keycloak session is gone
        raise SessionEnded
    if response.status_code != 200:
        log.warning("Keycloak answered %s to a session refresh", response.status_code)
        return None
    tokens = response.json()
    request.session[REFRESH_TOKEN] = tokens.get("refresh_token", refresh_token)
    request.session["oidc_id_token"] = tokens.get("id_token", "")
    claims = _payload(tokens.get("id_token", ""))
    if not claims.get("sub"):
        log.warning("Keycloak's session refresh carried no ID token")
        return None
    request.session[CONFIRMED_AT] = time.time()
    keep_assurance(request, claims)  # Keycloak keeps the level in the refreshed tokens
    return claims


def keep_assurance(request: HttpRequest, claims: Claims) -> None:
    """The session's level (`acr`) and time of sign-in (`auth_time`), for apikeys/assurance.py."""
    request.session[assurance.SESSION_KEY] = {
        "acr": claims.get("acr", ""),
        "auth_time": claims.get("auth_time", 0),
    }


def _payload(jwt: str) -> Claims:
    """A JWT's claims, unverified: it came straight from Keycloak's token endpoint, over the
    back channel the portal authenticated to (OpenID Connect Core 3.1.3.7)."""
    try:
        segment = jwt.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (IndexError, ValueError):
        return {}
    return claims if isinstance(claims, dict) else {}
