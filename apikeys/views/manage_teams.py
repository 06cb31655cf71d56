"""The admin area's teams (/manage/teams/): every team, the ones without an owner first; a
team's members and keys; appointing an owner; a team's quota; moving a key to another holder.

Admins only (`admin_required`, 404 for everyone else), each act with a reason, audited.
"""

from __future__ import annotations

import uuid
from urllib.parse import urlencode

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Count, Q
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apikeys.access import any_key
from apikeys.client_address import client_ip
from apikeys.forms import AdminMoveForm, AppointForm, TeamSearchForm
from apikeys.http import PageRequest
from apikeys.keycloak.client import KeycloakFailure
from apikeys.models import LIVE_STATUSES, Team, User
from apikeys.operations import teams
from apikeys.views.manage import PAGE_SIZE, admin_required, key_page, search_refused


@admin_required
@require_GET
def team_list(request: PageRequest) -> HttpResponse:
    form = TeamSearchForm(request.GET)
    if not form.is_valid():  # nothing listed, rather than every team as if it matched
        return search_refused(request, "manage/teams.html", form)
    q = form.cleaned_data["q"].strip()
    found = Team.objects.for_admins(q).annotate(
        live_keys=Count("keys", filter=Q(keys__status__in=LIVE_STATUSES), distinct=True),
        members=Count("memberships", distinct=True),
    )
    page = Paginator(found, PAGE_SIZE).get_page(request.GET.get("page"))
    query = urlencode({"q": q}) if q else ""
    return render(request, "manage/teams.html", {"page": page, "q": q, "query": query})


@admin_required
@require_GET
def team_detail(request: PageRequest, team_id: uuid.UUID) -> HttpResponse:
    team = get_object_or_404(Team, pk=team_id)
    context = {
        "team": team,
        "members": team.memberships.select_related("user").order_by("role", "user__email"),
        "live_keys": team.keys.filter(status__in=LIVE_STATUSES).count(),
        "keys_url": f"{reverse('manage_keys')}?team={team.pk}",
        "appoint_form": AppointForm(),
    }
    return render(request, "manage/team_detail.html", context)


@admin_required
@require_POST
def appoint(request: PageRequest, team_id: uuid.UUID) -> HttpResponse:
    team = get_object_or_404(Team, pk=team_id)
    form = AppointForm(request.POST)
    person = None
    if form.is_valid():
        person = User.objects.filter(email__iexact=form.cleaned_data["email"]).first()
    if person is None:
        messages.error(request, "Give the email of a person with a portal account, and a reason.")
        return redirect("manage_team", team.pk)
    teams.appoint_owner(team, person, actor=request.user, reason=form.cleaned_data["reason"])
    messages.success(request, f"{person.email} owns the team {team.name} now.")
    return redirect("manage_team", team.pk)


@admin_required
@require_POST
def set_quota(request: PageRequest, team_id: uuid.UUID) -> HttpResponse:
    team = get_object_or_404(Team, pk=team_id)
    raw = request.POST.get("max_live_keys", "").strip()
    if raw and not (raw.isascii() and raw.isdigit() and 1 <= int(raw) <= 100_000):
        messages.error(request, "The quota is a whole number from 1 to 100000, or empty.")
        return redirect("manage_team", team.pk)
    teams.set_quota(team, int(raw) if raw else None, actor=request.user)
    messages.success(request, "Quota saved.")
    return redirect("manage_team", team.pk)


@admin_required
@require_http_methods(["GET", "POST"])
def move_key(request: PageRequest, key_id: uuid.UUID) -> HttpResponse:
    """Give a key to another person or team, with a reason; same client, same secret. A move
    refused comes back on the key's page with what was typed (at this address, which opened
    again goes to the key's page)."""
    key = any_key(key_id)
    if request.method == "GET":
        return redirect("manage_key", key.pk)
    form = AdminMoveForm(request.POST)
    if not key.is_live:  # ended since the page was read: no form on its page any more
        messages.error(request, f"{key.client_id} has ended: there is nothing to move.")
        return key_page(request, key, status=409)
    if not form.is_valid():
        return key_page(request, key, move=form, status=400)
    given = form.cleaned_data
    try:
        teams.move_key(
            key,
            owner=given["owner"],
            team=given["team"],
            actor=request.user,
            reason=given["reason"],
            ip_address=client_ip(request),
        )
    except teams.TeamRefused as refused:  # ended meanwhile, a team at its quota, a name taken
        key = any_key(key.pk)
        if key.is_live:  # said by the form, not at the top of the page
            form.add_error(None, str(refused))
        else:  # no form any more
            messages.error(request, str(refused))
        return key_page(request, key, move=form, status=409)
    except KeycloakFailure as failure:
        messages.error(request, f"{failure.for_people} The key was not moved.")
        return key_page(request, key, move=form, status=503)
    messages.success(request, "Moved. Its client and secret are unchanged.")
    return redirect("manage_key", key.pk)
