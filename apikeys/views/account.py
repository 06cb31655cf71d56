"""Your account: who you are signed in as, and your second factor as Keycloak holds it.

Keycloak keeps the factors and its account console changes them; the portal only reads them
(apikeys/assurance.py), each time this page is shown, and stores nothing about them.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from apikeys import assurance
from apikeys.http import PageRequest
from apikeys.operations.identity import NAMES


@require_GET
def account_page(request: PageRequest) -> HttpResponse:
    """Email, the kinds of second factor the account has (or that Keycloak cannot say now),
    whether this sign-in used one, and where to add or remove one."""
    kinds = assurance.second_factors_to_show(request.user)
    context = {
        "second_factors": None if kinds is None else [NAMES[kind] for kind in kinds],
        "used_in_this_session": assurance.of(request).second_factor,
        "signing_in_url": f"{settings.KEYCLOAK_ACCOUNT_URL}account-security/signing-in",
    }
    return render(request, "apikeys/account.html", context)
