"""Who may reach what: the one rule every door uses (pages, the JSON API, the CLI through the
API, the admin area for its own objects).

A key, webhook endpoint or team is either someone's personal one or a team's:

- personal: its owner reaches it; for everyone else it does not exist.
- a team's: its members reach it, each as their role allows (`TeamRole`): a viewer sees, a
  developer also changes keys and webhooks, an owner also the team itself. A member whose
  role falls short is refused with `NotAllowed` (403 in the API, a message on the page); for
  anyone outside the team, an ex-member from their next request on, it does not exist.

"Does not exist" is `Http404`, which the pages show as their 404 page and the API turns into
its 404 problem document (apikeys/api/__init__.py). Every query starts from the person asking.
"""

from __future__ import annotations

import uuid

from django.core.exceptions import PermissionDenied
from django.http import Http404

from apikeys.models import (
    ApiKey,
    Membership,
    Team,
    TeamRole,
    User,
    WebhookEndpoint,
)

# What each kind of act needs of a team member.
SEE = TeamRole.VIEWER
CHANGE = TeamRole.DEVELOPER
MANAGE = TeamRole.OWNER

_NEEDS = {
    TeamRole.VIEWER: "see",
    TeamRole.DEVELOPER: "change its keys and webhooks (a developer's or owner's right)",
    TeamRole.OWNER: "manage its members, invitations and settings (an owner's right)",
}


class NotAllowed(PermissionDenied):
    """A member of the team, whose role does not allow this act."""


def key_for(person: User, key_id: uuid.UUID, *, to: TeamRole = CHANGE) -> ApiKey:
    """The key `key_id`, if `person` may `to` it (SEE, CHANGE); else Http404 or NotAllowed."""
    key = ApiKey.objects.select_related("api", "owner", "team").filter(pk=key_id).first()
    if key is None or (key.team_id is None and key.owner_id != person.pk):
        raise Http404("You have no key with this id.")
    if key.team is not None:
        _require(person, key.team, to, missing="You have no key with this id.")
    return key


def any_key(key_id: uuid.UUID) -> ApiKey:
    """Any key, for administrators (their doors let only them through); else Http404."""
    key = ApiKey.objects.select_related("api", "owner", "team").filter(pk=key_id).first()
    if key is None:
        raise Http404("There is no key with this id.")
    return key


def endpoint_for(person: User, endpoint_id: uuid.UUID, *, to: TeamRole = CHANGE) -> WebhookEndpoint:
    """The webhook endpoint `endpoint_id`, if `person` may `to` it; else Http404 or NotAllowed."""
    endpoint = WebhookEndpoint.objects.select_related("team").filter(pk=endpoint_id).first()
    missing = "You have no webhook endpoint with this id."
    if endpoint is None or (endpoint.team_id is None and endpoint.owner_id != person.pk):
        raise Http404(missing)
    if endpoint.team is not None:
        _require(person, endpoint.team, to, missing=missing)
    return endpoint


def team_for(person: User, team_id: uuid.UUID | str, *, to: TeamRole = SEE) -> Team:
    """The team `team_id`, if `person` is a member whose role allows `to`."""
    try:
        team = Team.objects.filter(pk=uuid.UUID(str(team_id))).first()
    except ValueError:
        team = None
    if team is None:
        raise Http404("You are in no team with this id.")
    _require(person, team, to, missing="You are in no team with this id.")
    return team


def role_in(person: User, team: Team) -> TeamRole | None:
    """`person`'s role in `team`, if they are a member (and their account active)."""
    if not person.is_active:
        return None
    role = Membership.objects.filter(team=team, user=person).values_list("role", flat=True)
    found = next(iter(role), None)
    return TeamRole(found) if found else None


def teams_of(person: User) -> list[tuple[Team, TeamRole]]:
    """The teams `person` is in, with their role in each: the team switcher."""
    memberships = Membership.objects.filter(user=person).select_related("team")
    return [(m.team, TeamRole(m.role)) for m in memberships.order_by("team__name", "team__id")]


def _require(person: User, team: Team, to: TeamRole, *, missing: str) -> None:
    role = role_in(person, team)
    if role is None:
        raise Http404(missing)
    member = Membership(role=role)
    if not member.allows(to):
        raise NotAllowed(
            f"You are a {role.label.lower()} in the team {team.name}: you may not "
            f"{_NEEDS[to]}. Ask one of its owners."
        )
