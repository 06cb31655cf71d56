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

from django.conf import settings
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
from apikeys.assurance import (
    recent_factor_required,
    require_recent_factor,
)
from apikeys.client_address import client_ip
from apikeys.forms import InviteForm, RoleForm, SecondFactorRuleForm, TeamForm
from apikeys.http import PageRequest
from apikeys.limits import rate_limited
from apikeys.models import AuditEntry, Invitation, Membership, Team, TeamRole, User
from apikeys.operations import teams
from apikeys.operations.identity import has_second_factor_if_known
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
    has_factor = _has_factor_for(request.user, team)
    context |= {
        "members": team.memberships.select_related("user").order_by("user__email"),
        "is_owner": context["role"] == TeamRole.OWNER,
        "invitations": team.invitations.select_related("invited_by")[:50],
        "invite_form": InviteForm(),
        "rename_form": TeamForm(initial={"name": team.name}),
        "second_factor_form": SecondFactorRuleForm(
            initial={"requires_second_factor": team.requires_second_factor}
        ),
        "roles": TeamRole.choices,
        "has_factor": has_factor,
        "can_change": context["can_change"] and has_factor is not False,
        "account_url": settings.KEYCLOAK_ACCOUNT_URL,
    }
    return render(request, "teams/team.html", context)


def _has_factor_for(person: User, team: Team) -> bool | None:
    """For a team that requires a second factor: whether `person` has one (None: Keycloak
    cannot say now), so the page says why they cannot act; True for other teams."""
    return has_second_factor_if_known(person) if team.requires_second_factor else True


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
@recent_factor_required
def set_second_factor_rule(request: PageRequest, team_id: uuid.UUID) -> HttpResponse:
    """Require a second factor of every member, or stop: an owner's act that decides who may
    change the team, so it needs their own second factor, recently used."""
    team = team_for(request.user, team_id, to=MANAGE)
    form = SecondFactorRuleForm(request.POST)
    required = form.is_valid() and form.cleaned_data["requires_second_factor"]
    teams.set_second_factor_rule(team, required, actor=request.user, ip_address=client_ip(request))
    if required:
        messages.success(request, "Every member now needs a second factor to change anything.")
    else:
        messages.success(request, "Members no longer need a second factor.")
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
    if form.cleaned_data["role"] == TeamRole.OWNER:  # a new owner, as a role change makes one
        require_recent_factor(request, request.user)
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
@recent_factor_required
def set_role(request: PageRequest, team_id: uuid.UUID, user_id: int) -> HttpResponse:
    team = team_for(request.user, team_id, to=MANAGE)
    member = _member(team, user_id).user
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
    leaving = user_id == request.user.pk
    team = team_for(request.user, team_id, to=SEE if leaving else MANAGE)
    member = _member(team, user_id)
    if not leaving and member.role == TeamRole.OWNER:  # who owns the team, as a role change
        require_recent_factor(request, request.user)
    teams.remove_member(team, member.user, actor=request.user, ip_address=client_ip(request))
    if leaving:
        messages.success(request, f"You left the team {team.name}. Its keys keep working.")
        return redirect("home")
    messages.success(
        request, f"{member.user.email} is out of the team. The team's keys keep working."
    )
    return redirect("team", team.pk)


def _member(team: Team, user_id: int) -> Membership:
    membership = team.memberships.select_related("user").filter(user_id=user_id).first()
    if membership is None:
        raise Http404("There is no such member.")
    return membership


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
