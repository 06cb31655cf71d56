"""Teams, for scripts: the same operations and the same access rule as the team pages.

Who may do what is `apikeys/access.py`'s: outside a team, it and everything in it is 404; a
member below the role an act needs is 403 (`NotAllowed`); what the operation refuses
(`TeamRefused`: the last owner leaving, an invitation used twice) is 409, all turned into
problem documents in `__init__.py`. An invitation's token is never in an answer: it is in
the invitation's mail only.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlsplit

from ninja import Query, Router, Status

from apikeys.access import MANAGE, SEE, role_in, team_for, teams_of
from apikeys.api.auth import PortalToken
from apikeys.api.paging import PageQuery, audit_out, paginate
from apikeys.api.problems import FAILURES, Problem, form_errors, refuse_over_limit
from apikeys.api.schemas import (
    AcceptIn,
    AuditPage,
    InvitationOut,
    InvitationSent,
    InviteIn,
    MemberOut,
    RoleIn,
    TeamChangeIn,
    TeamIn,
    TeamOut,
    TeamSummary,
)
from apikeys.assurance import recent_factor_required, require_recent_factor
from apikeys.client_address import client_ip
from apikeys.forms import InviteForm, TeamForm
from apikeys.http import ApiRequest
from apikeys.models import ApiKey, AuditEntry, Membership, Team, TeamRole
from apikeys.operations import teams

router = Router(auth=PortalToken(), tags=["teams"])


@router.get("/teams", response={200: list[TeamSummary], **FAILURES}, summary="Your teams")
def list_teams(request: ApiRequest) -> Any:
    return [_summary(team, role) for team, role in teams_of(request.auth)]


@router.post("/teams", response={201: TeamOut, **FAILURES}, summary="Make a team (you its owner)")
def create_team(request: ApiRequest, body: TeamIn) -> Any:
    _limit(request)
    form = TeamForm(body.dict())
    if not form.is_valid():
        raise Problem(422, "No team was made: see errors.", errors=form_errors(form))
    team = teams.create_team(request.auth, form.cleaned_data["name"], ip_address=client_ip(request))
    return Status(201, _team_out(team, TeamRole.OWNER))


@router.get("/teams/{team_id}", response={200: TeamOut, **FAILURES}, summary="One of your teams")
def show_team(request: ApiRequest, team_id: uuid.UUID) -> Any:
    team = team_for(request.auth, team_id, to=SEE)
    return _team_out(team, _role(request, team))


@router.patch(
    "/teams/{team_id}",
    response={200: TeamOut, **FAILURES},
    summary="Change a team's settings (owners): its name, whether members need a second factor",
)
def change_team(request: ApiRequest, team_id: uuid.UUID, body: TeamChangeIn) -> Any:
    team = team_for(request.auth, team_id, to=MANAGE)
    _limit(request)
    form = TeamForm({"name": body.name})
    if body.name is not None and not form.is_valid():
        raise Problem(422, "Nothing was changed: see errors.", errors=form_errors(form))
    ip_address = client_ip(request)
    if body.requires_second_factor is not None:
        # Like a role, this decides who may change the team: it needs the owner's second
        # factor, recently used (`recent_factor_required` on the page's own view). A rename
        # alone does not.
        require_recent_factor(request, request.auth)
        team = teams.set_second_factor_rule(
            team, body.requires_second_factor, actor=request.auth, ip_address=ip_address
        )
    if body.name is not None:
        team = teams.rename_team(
            team, form.cleaned_data["name"], actor=request.auth, ip_address=ip_address
        )
    return _team_out(team, TeamRole.OWNER)


@router.get(
    "/teams/{team_id}/members", response={200: list[MemberOut], **FAILURES}, summary="Members"
)
def members(request: ApiRequest, team_id: uuid.UUID) -> Any:
    team = team_for(request.auth, team_id, to=SEE)
    return team.memberships.select_related("user")


@router.patch(
    "/teams/{team_id}/members/{user_id}",
    response={200: MemberOut, **FAILURES},
    summary="Give a member another role (owners); the last owner stays one",
)
@recent_factor_required
def change_role(request: ApiRequest, team_id: uuid.UUID, user_id: int, body: RoleIn) -> Any:
    team = team_for(request.auth, team_id, to=MANAGE)
    member = _member(team, user_id)
    return teams.change_role(
        team, member.user, body.role, actor=request.auth, ip_address=client_ip(request)
    )


@router.delete(
    "/teams/{team_id}/members/{user_id}",
    response={204: None, **FAILURES},
    summary="Remove a member (owners), or leave (your own id); the last owner cannot",
)
def remove_member(request: ApiRequest, team_id: uuid.UUID, user_id: int) -> Any:
    leaving = user_id == request.auth.pk
    team = team_for(request.auth, team_id, to=SEE if leaving else MANAGE)
    member = _member(team, user_id)
    if not leaving and member.role == TeamRole.OWNER:  # who owns the team, as a role change
        require_recent_factor(request, request.auth)
    teams.remove_member(team, member.user, actor=request.auth, ip_address=client_ip(request))
    return Status(204, None)


@router.get(
    "/teams/{team_id}/invitations",
    response={200: list[InvitationOut], **FAILURES},
    summary="The team's invitations, newest first (owners)",
)
def invitations(request: ApiRequest, team_id: uuid.UUID) -> Any:
    team = team_for(request.auth, team_id, to=MANAGE)
    return team.invitations.select_related("invited_by")


@router.post(
    "/teams/{team_id}/invitations",
    response={201: InvitationSent, **FAILURES},
    summary="Invite someone by email (owners); the link is in the mail only",
)
def invite(request: ApiRequest, team_id: uuid.UUID, body: InviteIn) -> Any:
    team = team_for(request.auth, team_id, to=MANAGE)
    _limit(request)
    form = InviteForm(body.dict())
    if not form.is_valid():
        raise Problem(422, "No one was invited: see errors.", errors=form_errors(form))
    if form.cleaned_data["role"] == TeamRole.OWNER:  # a new owner, as a role change makes one
        require_recent_factor(request, request.auth)
    sent = teams.invite(
        team, **form.cleaned_data, actor=request.auth, ip_address=client_ip(request)
    )
    return Status(201, {"invitation": sent.invitation, "mailed": sent.mailed})


@router.delete(
    "/teams/{team_id}/invitations/{invitation_id}",
    response={200: InvitationOut, **FAILURES},
    summary="Revoke a pending invitation (owners): its link stops working",
)
def revoke_invitation(request: ApiRequest, team_id: uuid.UUID, invitation_id: uuid.UUID) -> Any:
    team = team_for(request.auth, team_id, to=MANAGE)
    invitation = team.invitations.filter(pk=invitation_id).first()
    if invitation is None:
        raise Problem(404, "The team has no invitation with this id.")
    return teams.revoke_invitation(invitation, actor=request.auth, ip_address=client_ip(request))


@router.post(
    "/invitations/accept",
    response={200: TeamOut, **FAILURES},
    summary="Accept an invitation: its link, or the token in it (signed in as the invited email)",
)
def accept_invitation(request: ApiRequest, body: AcceptIn) -> Any:
    _limit(request)
    joined = teams.accept(token_of(body.token), request.auth, ip_address=client_ip(request))
    return _team_out(joined.team, TeamRole(joined.role))


@router.get(
    "/teams/{team_id}/activity",
    response={200: AuditPage, **FAILURES},
    summary="What happened in the team: its keys, members and invitations",
)
def activity(request: ApiRequest, team_id: uuid.UUID, query: Query[PageQuery]) -> Any:
    viewer = request.auth
    team = team_for(viewer, team_id, to=SEE)
    entries = AuditEntry.objects.of_team(team).select_related("key", "api")
    return paginate(entries, query, lambda entry: audit_out(entry, viewer=viewer))


def token_of(given: str) -> str:
    """The token of an invitation link (…/invitations/<token>/), or the token as given."""
    text = given.strip()
    if "/" not in text:
        return text
    parts = [part for part in urlsplit(text).path.split("/") if part]
    return parts[-1] if parts else ""


def _limit(request: ApiRequest) -> None:
    refuse_over_limit(
        request, "keys", "Too many team actions in a short time: try again in a minute."
    )


def _member(team: Team, user_id: int) -> Membership:
    member = team.memberships.select_related("user").filter(user_id=user_id).first()
    if member is None:
        raise Problem(404, f"The team {team.name} has no member with this id.")
    return member


def _role(request: ApiRequest, team: Team) -> TeamRole:
    """The caller's role in a team `team_for` just let them into."""
    return role_in(request.auth, team) or TeamRole.VIEWER


def _summary(team: Team, role: TeamRole) -> dict[str, Any]:
    return {"id": team.pk, "name": team.name, "role": role.value, "created_at": team.created_at}


def _team_out(team: Team, role: TeamRole) -> dict[str, Any]:
    return _summary(team, role) | {
        "key_quota": team.key_quota,
        "live_keys": ApiKey.objects.filter(team=team).live().count(),
        "ownerless_since": team.ownerless_since,
        "requires_second_factor": team.requires_second_factor,
    }
