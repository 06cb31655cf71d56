"""The pages anyone may see: the landing page, the partners' guide, the error page."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET

from apikeys.http import problem
from apikeys.keycloak import desired
from apikeys.models import Api


@login_not_required
@require_GET
def landing(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("home")
    return render(request, "apikeys/landing.html", {"apis": Api.objects.open()})


@login_not_required
@require_GET
def partner_docs(request: HttpRequest) -> HttpResponse:
    """How partner applications use a key: public, filled in with this portal's endpoints."""
    context = partner_endpoints() | {"apis": Api.objects.all()}
    return render(request, "apikeys/partner_docs.html", context)


def server_error(request: HttpRequest) -> HttpResponse:
    """500: a problem document for the JSON API, the portal's page for everyone else."""
    if request.path.startswith("/api/v1/"):
        return problem(
            500,
            "The portal failed to answer. Look at your keys to see where things stand, then "
            "try again in a minute.",
        )
    return render(request, "500.html", status=500)


def partner_endpoints() -> dict[str, str]:
    """Where partners get tokens and call the sample API, for the pages that tell them."""
    return {
        "token_endpoint": settings.TOKEN_ENDPOINT,
        "whoami_url": f"{settings.PORTAL_URL}{reverse('whoami')}",
        "whoami_audience": settings.WHOAMI_AUDIENCE,
        "portal_url": settings.PORTAL_URL,
        "api_url": f"{settings.PORTAL_URL}/api/v1",
        # The `aud` of a private_key_jwt client assertion: the realm's issuer.
        "assertion_audience": settings.TOKEN_ISSUER,
        "assertion_max_age": str(desired.ASSERTION_MAX_AGE_SECONDS),
    }
