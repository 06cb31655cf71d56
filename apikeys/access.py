"""Who may reach what: the one rule every door uses (pages, the JSON API, the CLI through the
API, the admin area for its own objects).

A key, webhook endpoint, registration token or team is either someone's personal one or a
team's:

- personal: its owner reaches it; for everyone else it does not exist.
- a team's: its members reach it, each as their role allows (`TeamRole`): a viewer sees, a
  developer also changes keys, webhooks and registration tokens, an owner also the team
  itself. A member whose role falls short is refused with `NotAllowed` (403 in the API, a
  message on the page); for anyone outside the team, an ex-member from their next request
  on, it does not exist.

"Does not exist" is `Http404`, which the pages show as their 404 page and the API turns into
its 404 problem document (apikeys/api/__init__.py). Every query starts from the person asking.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db.models import F, Q, QuerySet
from django.http import Http404

from apikeys.models import (
    ApiKey,
    Membership,
    RegistrationToken,
    Team,
    TeamRole,
    User,
    WebhookEndpoint,
)
from apikeys.operations.identity import has_second_factor_if_known

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


def registration_token_for(
    person: User, token_id: uuid.UUID, *, to: TeamRole = CHANGE
) -> RegistrationToken:
    """The registration token `token_id`, if `person` may `to` it; else Http404 or NotAllowed."""
    tokens = RegistrationToken.objects.select_related("api", "owner", "team")
    token = tokens.filter(pk=token_id).first()
    missing = "You have no registration token with this id."
    if token is None or (token.team_id is None and token.owner_id != person.pk):
        raise Http404(missing)
    if token.team is not None:
        _require(person, token.team, to, missing=missing)
    return token


def registration_tokens_of(person: User, team: Team | None) -> QuerySet[RegistrationToken]:
    """The registration tokens of one space: `team`'s (the caller checked `person` is in it),
    or `person`'s personal ones."""
    if team is not None:
        return team.registration_tokens.all()
    return person.registration_tokens.filter(team__isnull=True)


# A key in the space of the token that registered it: the same team, or both personal, of
# the same person.
IN_TOKENS_SPACE = Q(team=F("registered_with__team")) | Q(
    team__isnull=True, registered_with__team__isnull=True, owner=F("registered_with__owner")
)


def keys_registered_with(token: RegistrationToken) -> QuerySet[ApiKey]:
    """The keys `token` registered that its space still holds, newest first: who may see the
    token may see them (a key moved to another space since is that space's business)."""
    return ApiKey.objects.filter(IN_TOKENS_SPACE, registered_with=token).order_by("-created_at")


def any_registration_token(token_id: uuid.UUID) -> RegistrationToken:
    """Any registration token, for administrators (their doors let only them through)."""
    tokens = RegistrationToken.objects.select_related("api", "owner", "team")
    found = tokens.filter(pk=token_id).first()
    if found is None:
        raise Http404("There is no registration token with this id.")
    return found


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
    if to != SEE and team.requires_second_factor:
        _require_second_factor(person, team)


def _require_second_factor(person: User, team: Team) -> None:
    """A team that requires a second factor: its members read, but act only with one."""
    has = has_second_factor_if_known(person)
    if has is None:
        raise NotAllowed(
            f"The team {team.name} requires a second factor, and Keycloak cannot say now "
            "whether you have one. Try again in a minute."
        )
    if not has:
        raise NotAllowed(
            f"The team {team.name} requires its members to have a second factor before they "
            "change anything. Add a one-time password or a passkey under Signing in in your "
            f"Keycloak account ({settings.KEYCLOAK_ACCOUNT_URL}), then try again."
        )
