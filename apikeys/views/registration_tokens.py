"""Registration tokens on the pages: a space's list (/registration-tokens/, a team's with
`?team=`), a new one, one token with the keys it registered, revoking one; and the admin
area's list of every token (/manage/registration-tokens/).

Each action calls the operation in `apikeys/operations/registration_tokens.py`, as the JSON API
does;
who reaches which token is decided in `apikeys/access.py`. A token appears once, on the page
that answers its creation (never cached, never in a message); the portal keeps its SHA-256.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import Prefetch, QuerySet
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_GET, require_http_methods

from apikeys.access import (
    CHANGE,
    IN_TOKENS_SPACE,
    SEE,
    any_registration_token,
    keys_registered_with,
    registration_token_for,
    registration_tokens_of,
    role_in,
    team_for,
    teams_of,
)
from apikeys.assurance import recent_factor_required
from apikeys.client_address import client_ip
from apikeys.credentials.networks import BadRanges
from apikeys.forms import OptionalReasonForm, RegistrationTokenForm, RegistrationTokenSearchForm
from apikeys.http import PageRequest
from apikeys.limits import rate_limited
from apikeys.models import (
    ApiKey,
    RegistrationToken,
    Team,
    TeamRole,
    UnknownPermission,
    User,
    WrongState,
)
from apikeys.operations import registration_tokens
from apikeys.views.manage import admin_required, search_refused

PAGE_SIZE = 50
KEYS_SHOWN = 5  # of each token's keys, in the list; its page has them all


@require_GET
def token_list(request: PageRequest) -> HttpResponse:
    """One space's registration tokens: the person's own, or a team's (`?team=`)."""
    team = _asked_team(request, to=SEE)
    role = role_in(request.user, team) if team is not None else TeamRole.OWNER
    tokens = _with_details(registration_tokens_of(request.user, team))
    page = Paginator(tokens, PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        "page": page,
        "rows": _rows(page.object_list),
        "team": team,
        "teams": teams_of(request.user),
        "can_change": role is not None and role != TeamRole.VIEWER,
        "new_url": _space_url("registration_token_new", team),
        "keys_shown": KEYS_SHOWN,
        "query": f"team={team.pk}" if team is not None else "",
    }
    return render(request, "registration/tokens.html", context)


@sensitive_variables()  # holds the new token: never in an error page or report
@sensitive_post_parameters()
@rate_limited("keys")
@never_cache
@require_http_methods(["GET", "POST"])
@recent_factor_required
def token_new(request: PageRequest) -> HttpResponse:
    team = _asked_team(request, to=CHANGE)
    form = RegistrationTokenForm(request.POST or None, team=team)
    if request.method == "POST" and form.is_valid():
        try:
            made = registration_tokens.create_token(
                request.user, **form.order(), ip_address=client_ip(request)
            )
        except (WrongState, UnknownPermission, BadRanges) as refused:
            form.add_error(None, str(refused))
        except ValidationError as invalid:
            form.add_error(None, " ".join(invalid.messages))
        else:
            return _reveal(request, made)
    context = {"form": form, "team": team, "back": _space_url("registration_tokens", team)}
    return render(request, "registration/token_form.html", context)


@require_GET
def token_detail(request: PageRequest, token_id: uuid.UUID) -> HttpResponse:
    """One token, and every key it registered that its space holds."""
    token = registration_token_for(request.user, token_id, to=SEE)
    role = role_in(request.user, token.team) if token.team is not None else TeamRole.OWNER
    keys = keys_registered_with(token).select_related("api")
    context = {
        "token": token,
        "refusal": token.refusal(timezone.now()),
        "page": Paginator(keys, PAGE_SIZE).get_page(request.GET.get("page")),
        "can_change": role is not None and role != TeamRole.VIEWER,
        "back": _space_url("registration_tokens", token.team),
    }
    return render(request, "registration/token_detail.html", context)


@rate_limited("keys")
@require_http_methods(["GET", "POST"])
def token_revoke(request: PageRequest, token_id: uuid.UUID) -> HttpResponse:
    token = registration_token_for(request.user, token_id)
    back = _space_url("registration_tokens", token.team)
    if request.method == "POST":
        _revoke(request, token, request.user)
        return redirect(back)
    context = {"token": token, "back": back, "action": request.path}
    return render(request, "registration/confirm_revoke.html", context)


@admin_required
@require_GET
def manage_list(request: PageRequest) -> HttpResponse:
    """Every registration token, newest first; `q` finds the maker, the team or the name."""
    tokens = _with_details(RegistrationToken.objects.select_related("owner", "team"))
    form = RegistrationTokenSearchForm({"q": request.GET.get("q", "")})
    if not form.is_valid():  # nothing listed, rather than every token as if it matched
        return search_refused(request, "registration/manage_tokens.html", form)
    tokens, q = form.filter(tokens), form.cleaned_data["q"].strip()
    page = Paginator(tokens, PAGE_SIZE).get_page(request.GET.get("page"))
    query = urlencode({"q": q}) if q else ""
    context = {"page": page, "rows": _rows(page.object_list), "q": q, "query": query}
    return render(request, "registration/manage_tokens.html", context)


@admin_required
@require_http_methods(["GET", "POST"])
def manage_revoke(request: PageRequest, token_id: uuid.UUID) -> HttpResponse:
    """Revoke any token; the reason, if given, goes into the audit trail its space reads."""
    token = any_registration_token(token_id)
    form = OptionalReasonForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        _revoke(request, token, request.user, reason=form.cleaned_data["reason"])
        return redirect("manage_registration_tokens")
    back = reverse("manage_registration_tokens")
    context = {"token": token, "back": back, "action": request.path, "reason_form": form}
    return render(request, "registration/confirm_revoke.html", context)


def _revoke(
    request: PageRequest, token: RegistrationToken, actor: User, *, reason: str = ""
) -> None:
    if token.revoked_at is not None:
        messages.info(request, f"“{token.name}” was revoked already.")
        return
    registration_tokens.revoke_token(
        token, actor=actor, ip_address=client_ip(request), reason=reason
    )
    messages.success(
        request,
        f"“{token.name}” is revoked: it registers nothing more. The {token.registrations} keys "
        "it registered keep working; revoke them on their pages if they should stop.",
    )


@sensitive_variables()  # the token itself
def _reveal(request: PageRequest, made: registration_tokens.NewRegistrationToken) -> HttpResponse:
    """The one response that shows a registration token: never cached, never a message."""
    context = {
        "token": made.token,
        "secret": made.secret,
        "endpoint": f"{settings.PORTAL_URL}{reverse('software_registration')}",
        "back": _space_url("registration_tokens", made.token.team),
    }
    return render(request, "registration/reveal.html", context)


def _asked_team(request: PageRequest, *, to: TeamRole) -> Team | None:
    """The space asked for (`?team=`), if the person may `to` there; None: their own."""
    team_id = request.GET.get("team")
    return team_for(request.user, team_id, to=to) if team_id else None


def _space_url(name: str, team: Team | None) -> str:
    url = reverse(name)
    return f"{url}?team={team.pk}" if team is not None else url


def _with_details(tokens: QuerySet[RegistrationToken]) -> QuerySet[RegistrationToken]:
    """Tokens with their API, permissions and newest keys fetched in a few queries."""
    newest = ApiKey.objects.filter(IN_TOKENS_SPACE).order_by("-created_at")[:KEYS_SHOWN]
    return tokens.select_related("api").prefetch_related(
        "permissions", Prefetch("keys", queryset=newest, to_attr="newest_keys")
    )


def _rows(tokens: Any) -> list[tuple[RegistrationToken, str | None]]:
    """Each token with why it registers nothing now (None: it registers)."""
    now = timezone.now()
    return [(token, token.refusal(now)) for token in tokens]
