"""Sign-in through Keycloak: users are matched on the token's `sub`, never on email."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth.middleware import (
    LoginRequiredMiddleware as DjangoLoginRequiredMiddleware,
)
from django.http import HttpRequest, HttpResponse
from django.shortcuts import resolve_url
from django_htmx.http import HttpResponseClientRedirect
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.views import OIDCAuthenticationRequestView

from apikeys.models import User

Claims = dict[str, Any]


class KeycloakBackend(OIDCAuthenticationBackend):  # type: ignore[misc]
    """The portal user is the Keycloak user with the same `sub`; the rest is refreshed."""

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
        user.is_staff = settings.OIDC_ADMIN_ROLE in claims.get(settings.OIDC_ROLES_CLAIM, [])
        user.set_unusable_password()
        user.save()
        return user


class RegistrationRequestView(OIDCAuthenticationRequestView):  # type: ignore[misc]
    """Like sign-in, with the same state, nonce and PKCE, but to Keycloak's registration page."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.OIDC_OP_AUTH_ENDPOINT = settings.OIDC_OP_REGISTRATION_ENDPOINT


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
