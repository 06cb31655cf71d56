"""The team pages: the teams a person is in, one team's keys, members and invitations, and
accepting an invitation.

Who may do what is decided in `apikeys/access.py` (`team_for` with SEE, CHANGE or MANAGE);
what an act does, in `apikeys/operations/teams.py`. A refusal by the team rules (the last
owner leaving, an invitation used twice) is a message on the page
(`apikeys.views.outcomes.RefusalMiddleware`).
"""

from __future__ import annotations

import uuid
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.models import AnonymousUser
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apikeys.access import MANAGE, SEE, team_for, teams_of
from apikeys.client_address import client_ip
from apikeys.forms import InviteForm, RoleForm, TeamForm
from apikeys.http import PageRequest
from apikeys.limits import rate_limited
from apikeys.models import AuditEntry, Invitation, Membership, TeamRole, User
from apikeys.operations import teams
from apikeys.views.exports import audit_csv
from apikeys.views.keys import key_list_context


@rate_limited("keys")
@require_http_methods(["GET", "POST"])
def team_list(request: PageRequest) -> HttpResponse:
    """The person's teams, and a new one."""
    form = TeamForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        team = teams.create_team(
            request.user, form.cleaned_data["name"], ip_address=client_ip(request)
        )
        messages.success(request, f"The team {team.name} is made; you are its owner.")
        return redirect("team", team.pk)
    return render(request, "teams/list.html", {"teams": teams_of(request.user), "form": form})


@require_GET
def team_page(request: PageRequest, team_id: uuid.UUID) -> HttpResponse:
    """A team's keys (the key list, as for personal keys), members and invitations."""
    team = team_for(request.user, team_id, to=SEE)
    context = key_list_context(request.user, team, request.GET.get("page"))
    context |= {
        "members": team.memberships.select_related("user").order_by("user__email"),
        "is_owner": context["role"] == TeamRole.OWNER,
        "invitations": team.invitations.select_related("invited_by")[:50],
        "invite_form": InviteForm(),
        "rename_form": TeamForm(initial={"name": team.name}),
        "roles": TeamRole.choices,
    }
    return render(request, "teams/team.html", context)


@require_GET
def team_activity(request: PageRequest, team_id: uuid.UUID) -> HttpResponseBase:
    team = team_for(request.user, team_id, to=SEE)
    entries = AuditEntry.objects.of_team(team).select_related("key", "api")
    if request.GET.get("format") == "csv":
        return audit_csv(entries, "team-activity.csv", viewer=request.user)
    page = Paginator(entries, 50).get_page(request.GET.get("page"))
    return render(request, "teams/activity.html", {"team": team, "page": page})


@rate_limited("keys")
@require_POST
def rename(request: PageRequest, team_id: uuid.UUID) -> HttpResponse:
    team = team_for(request.user, team_id, to=MANAGE)
    form = TeamForm(request.POST)
    if form.is_valid():
        teams.rename_team(
            team, form.cleaned_data["name"], actor=request.user, ip_address=client_ip(request)
        )
        messages.success(request, "Renamed.")
    else:
        messages.error(request, "Give the team a name (printable, at most 100 characters).")
    return redirect("team", team.pk)


@rate_limited("keys")
@require_POST
def invite(request: PageRequest, team_id: uuid.UUID) -> HttpResponse:
    team = team_for(request.user, team_id, to=MANAGE)
    form = InviteForm(request.POST)
    if not form.is_valid():
        problems = "; ".join(str(e) for errors in form.errors.values() for e in errors)
        messages.error(request, f"Nobody was invited: {problems}")
        return redirect("team", team.pk)
    invited = teams.invite(
        team, **form.cleaned_data, actor=request.user, ip_address=client_ip(request)
    )
    email = invited.invitation.email
    if invited.mailed:
        messages.success(request, f"Invited {email}: the link is in their mail.")
    else:
        messages.error(
            request,
            f"The invitation of {email} is made, but its mail failed: "
            "revoke it and invite again in a while.",
        )
    return redirect("team", team.pk)


@require_POST
def revoke_invitation(
    request: PageRequest, team_id: uuid.UUID, invitation_id: uuid.UUID
) -> HttpResponse:
    team = team_for(request.user, team_id, to=MANAGE)
    invitation = get_object_or_404(Invitation, pk=invitation_id, team=team)
    teams.revoke_invitation(invitation, actor=request.user, ip_address=client_ip(request))
    messages.success(request, f"The invitation of {invitation.email} is revoked.")
    return redirect("team", team.pk)


@require_POST
def set_role(request: PageRequest, team_id: uuid.UUID, user_id: int) -> HttpResponse:
    team = team_for(request.user, team_id, to=MANAGE)
    member = _member(team_id, user_id)
    form = RoleForm(request.POST)
    if form.is_valid():
        teams.change_role(
            team,
            member,
            form.cleaned_data["role"],
            actor=request.user,
            ip_address=client_ip(request),
        )
        messages.success(request, f"{member.email} is {form.cleaned_data['role']} now.")
    return redirect("team", team.pk)


@require_POST
def remove(request: PageRequest, team_id: uuid.UUID, user_id: int) -> HttpResponse:
    """An owner takes a member out; anyone may take themselves out (leave)."""
    member = _member(team_id, user_id)
    leaving = member == request.user
    team = team_for(request.user, team_id, to=SEE if leaving else MANAGE)
    teams.remove_member(team, member, actor=request.user, ip_address=client_ip(request))
    if leaving:
        messages.success(request, f"You left the team {team.name}. Its keys keep working.")
        return redirect("home")
    messages.success(request, f"{member.email} is out of the team. The team's keys keep working.")
    return redirect("team", team.pk)


def _member(team_id: uuid.UUID, user_id: int) -> User:
    membership = Membership.objects.filter(team_id=team_id, user_id=user_id).first()
    if membership is None:
        raise Http404("There is no such member.")
    return membership.user


@login_not_required
@never_cache
@rate_limited("keys")
@require_http_methods(["GET", "POST"])
def invitation(request: HttpRequest, token: str) -> HttpResponse:
    """The invitation's link: who invites whom to what, and the button that accepts it. A
    visitor not signed in is offered to sign in, or to register first, and comes back here."""
    found = teams.invitation_by_token(token)
    here = reverse("invitation", args=[token])
    if isinstance(request.user, AnonymousUser):
        if request.method == "POST":
            return redirect(f"{reverse('oidc_authentication_init')}?{urlencode({'next': here})}")
        context = {
            "invitation": found,
            "sign_in_url": f"{reverse('oidc_authentication_init')}?{urlencode({'next': here})}",
            "register_url": f"{reverse('register')}?{urlencode({'next': here})}",
        }
        return render(request, "teams/invitation.html", context)
    if request.method == "POST":
        membership = teams.accept(token, request.user, ip_address=client_ip(request))
        team = membership.team
        messages.success(request, f"Welcome to the team {team.name}.")
        return redirect("team", team.pk)
    return render(request, "teams/invitation.html", {"invitation": found})
