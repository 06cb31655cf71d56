"""Teams: their members and roles, invitations, and keys moved between spaces.

Membership lives in the portal's database, not in Keycloak's Organizations: adding or
removing an organization member through Keycloak's admin API needs `manage-users` on that
user (realm-wide without fine-grained permissions: reset anyone's password, impersonate
them), and managing organizations `manage-organizations` or `manage-realm`, over every
organization in the realm. The portal's service account keeps neither (docs/security.md).

Rules kept here:

- A team never loses its last owner by anyone's act: every change of membership locks the
  team's row and counts its owners under that lock, so two owners demoting each other at
  once take turns, and the second is refused.
- When an account is deleted in Keycloak, its memberships end (audited); a team left with no
  owner is flagged for the administrators (`Team.ownerless_since`), who appoint one. Its keys
  keep working throughout.
- A team may require a second factor of its members (apikeys/access.py enforces it); only
  an owner who has one turns that on, or they would lock themselves out.
- An invitation is single use: accepting it locks its row; it is accepted only by a signed-in
  person whose verified email is the invited one.
- Moving a key (into a team, or by an administrator to another owner) changes who reaches it,
  never its secret: the record first, then the marks on its client, in one transaction.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial

from django.conf import settings
from django.db import transaction
from django.template.defaultfilters import pluralize
from django.utils import timezone

from apikeys.keycloak import client as keycloak
from apikeys.keycloak import desired
from apikeys.keycloak.client import KeycloakFailure
from apikeys.models import (
    KEY_EVENTS,
    ApiKey,
    AuditEntry,
    Invitation,
    Membership,
    Team,
    TeamRole,
    User,
    WebhookEndpoint,
    WebhookMessage,
    key_payload,
)
from apikeys.operations import notifications
from apikeys.operations.identity import has_second_factor


class TeamRefused(Exception):
    """What was asked cannot be done; the message is fit to show."""


def create_team(person: User, name: str, *, ip_address: str | None = None) -> Team:
    """A new team, with `person` as its first owner (at most MAX_TEAMS_PER_USER they own)."""
    with transaction.atomic():
        User.objects.select_for_update().get(pk=person.pk)
        owned = Membership.objects.filter(user=person, role=TeamRole.OWNER).count()
        if owned >= settings.MAX_TEAMS_PER_USER:
            raise TeamRefused(
                f"You own {owned} teams, the most allowed: leave or hand over one first."
            )
        team = Team.objects.create(name=name)
        Membership.objects.create(team=team, user=person, role=TeamRole.OWNER)
        AuditEntry.record(team, AuditEntry.Action.TEAM_CREATED, actor=person, ip_address=ip_address)
    return team


def rename_team(team: Team, name: str, *, actor: User, ip_address: str | None = None) -> Team:
    with transaction.atomic():
        team = Team.objects.select_for_update().get(pk=team.pk)
        was, team.name = team.name, name
        team.save(update_fields=["name"])
        reason = f"Renamed from “{was}”."
        AuditEntry.record(
            team, AuditEntry.Action.TEAM_CHANGED, actor=actor, ip_address=ip_address, reason=reason
        )
    return team


def set_second_factor_rule(
    team: Team, required: bool, *, actor: User, ip_address: str | None = None
) -> Team:
    """Require a second factor of every member before they change anything (or stop
    requiring it). The owner who turns it on must have one: without, they would lock
    themselves out of the team they manage. Keycloak is asked before the team's row is
    locked: no lock is held while waiting on it.
    """
    if required:
        _require_own_factor(actor)
    with transaction.atomic():
        team = Team.objects.select_for_update().get(pk=team.pk)
        if team.requires_second_factor == required:
            return team
        team.requires_second_factor = required
        team.save(update_fields=["requires_second_factor"])
        reason = (
            "A second factor is required of every member before they change anything."
            if required
            else "A second factor is no longer required of the members."
        )
        AuditEntry.record(
            team, AuditEntry.Action.TEAM_CHANGED, actor=actor, ip_address=ip_address, reason=reason
        )
    return team


def _require_own_factor(actor: User) -> None:
    signing_in = f"{settings.KEYCLOAK_ACCOUNT_URL}account-security/signing-in"
    try:
        has = has_second_factor(actor)
    except KeycloakFailure as error:
        raise TeamRefused(
            "Keycloak cannot say now whether you have a second factor, and the team would "
            "need one of you too: nothing was changed. Try again in a minute."
        ) from error
    if not has:
        raise TeamRefused(
            "Add a second factor to your own account first: a one-time password or a passkey, "
            f"in your Keycloak account ({signing_in}). The team would require one of you too, "
            "and without it you could no longer change anything in it. Nothing was changed."
        )


def set_quota(team: Team, quota: int | None, *, actor: User, reason: str = "") -> Team:
    """An administrator's: the team's own quota of live keys (None: MAX_LIVE_KEYS_PER_TEAM)."""
    with transaction.atomic():
        team = Team.objects.select_for_update().get(pk=team.pk)
        team.max_live_keys = quota
        team.save(update_fields=["max_live_keys"])
        said = f"Quota of live keys set to {quota or f'the default ({team.key_quota})'}."
        AuditEntry.record(
            team, AuditEntry.Action.TEAM_CHANGED, actor=actor, reason=f"{said} {reason}".strip()
        )
    return team


# --- Invitations -------------------------------------------------------------------------


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Invited:
    invitation: Invitation
    token: str = field(repr=False)  # in the mail's link only
    mailed: bool = True


def invite(
    team: Team, email: str, role: str, *, actor: User, ip_address: str | None = None
) -> Invited:
    """Invite `email` into `team` as `role`: a mail with a single-use link. A pending
    invitation of the same address is replaced (the old link stops working)."""
    email = email.strip()
    with transaction.atomic():
        team = Team.objects.select_for_update().get(pk=team.pk)
        if Membership.objects.filter(team=team, user__email__iexact=email).exists():
            raise TeamRefused(f"{email} is in the team already.")
        now = timezone.now()
        for old in team.invitations.filter(
            email__iexact=email, accepted_at__isnull=True, revoked_at__isnull=True
        ):
            old.revoked_at = now
            old.save(update_fields=["revoked_at"])
        token = secrets.token_urlsafe(32)
        invitation = Invitation.objects.create(
            team=team,
            email=email,
            role=role,
            token_digest=_digest(token),
            invited_by=actor,
            expires_at=now + timedelta(days=settings.TEAM_INVITATION_DAYS),
        )
        reason = f"{email} invited as {TeamRole(role).label.lower()}."
        AuditEntry.record(
            team, AuditEntry.Action.INVITED, actor=actor, ip_address=ip_address, reason=reason
        )
    mailed = notifications.invitation(invitation, token)
    return Invited(invitation, token, mailed)


def revoke_invitation(
    invitation: Invitation, *, actor: User, ip_address: str | None = None
) -> Invitation:
    with transaction.atomic():
        invitation = Invitation.objects.select_for_update().get(pk=invitation.pk)
        if invitation.state != "pending":
            raise TeamRefused(f"This invitation is {invitation.state}: nothing to revoke.")
        invitation.revoked_at = timezone.now()
        invitation.save(update_fields=["revoked_at"])
        AuditEntry.record(
            invitation.team,
            AuditEntry.Action.INVITATION_REVOKED,
            actor=actor,
            ip_address=ip_address,
            reason=f"The invitation of {invitation.email} was revoked.",
        )
    return invitation


def invitation_by_token(token: str) -> Invitation | None:
    return (
        Invitation.objects.select_related("team", "invited_by")
        .filter(token_digest=_digest(token))
        .first()
    )


def accept(token: str, person: User, *, ip_address: str | None = None) -> Membership:
    """Join the team the invitation `token` is for, as its role: once, before it expires,
    and only as the person whose verified email was invited."""
    found = invitation_by_token(token)
    if found is None:
        raise TeamRefused("This invitation link is not valid. Ask for a new invitation.")
    with transaction.atomic():
        Team.objects.select_for_update().get(pk=found.team_id)
        invitation = Invitation.objects.select_for_update().get(pk=found.pk)
        state = invitation.state
        if state == "accepted":
            raise TeamRefused("This invitation was used already: each works once.")
        if state == "revoked":
            raise TeamRefused("This invitation was revoked by an owner of the team.")
        if state == "expired":
            raise TeamRefused("This invitation has expired. Ask an owner of the team for another.")
        if not person.email or person.email.lower() != invitation.email.lower():
            raise TeamRefused(
                f"This invitation is for {invitation.email}; you are signed in as "
                f"{person.email or 'someone with no verified email'}. Sign in with the invited "
                "address (its email verified) to accept it."
            )
        if Membership.objects.filter(team=invitation.team, user=person).exists():
            raise TeamRefused(f"You are in the team {invitation.team.name} already.")
        membership = Membership.objects.create(
            team=invitation.team, user=person, role=invitation.role
        )
        invitation.accepted_at, invitation.accepted_by = timezone.now(), person
        invitation.save(update_fields=["accepted_at", "accepted_by"])
        reason = f"Joined as {TeamRole(invitation.role).label.lower()}, invited by " + (
            f"{invitation.invited_by.email}."
        )
        AuditEntry.record(
            person,
            AuditEntry.Action.MEMBER_JOINED,
            actor=person,
            ip_address=ip_address,
            reason=reason,
            team=invitation.team,
        )
    return membership


# --- Members -----------------------------------------------------------------------------


def _locked_member(team: Team, user: User) -> tuple[Team, Membership]:
    team = Team.objects.select_for_update().get(pk=team.pk)
    membership = Membership.objects.filter(team=team, user=user).first()
    if membership is None:
        raise TeamRefused(f"{user.email or user.username} is not in the team {team.name}.")
    return team, membership


def _other_owners(team: Team, user: User) -> int:
    """The team's other owners whose accounts work (a disabled one cannot act for it)."""
    owners = team.memberships.filter(role=TeamRole.OWNER, user__is_active=True)
    return owners.exclude(user=user).count()


def _revoke_invitations_of(team: Team, user: User) -> None:
    """Pending invitations `user` sent stop working when they stop being an owner: nobody
    gets back in, or in, on the word of someone who may no longer invite."""
    team.invitations.filter(
        invited_by=user, accepted_at__isnull=True, revoked_at__isnull=True
    ).update(revoked_at=timezone.now())


def change_role(
    team: Team, user: User, role: str, *, actor: User, ip_address: str | None = None
) -> Membership:
    """Give a member another role; the last owner cannot be made anything less."""
    with transaction.atomic():
        team, membership = _locked_member(team, user)
        if membership.role == role:
            return membership
        if membership.role == TeamRole.OWNER and not _other_owners(team, user):
            raise TeamRefused(
                f"{user.email} is the team's last owner: make another member an owner first."
            )
        was = TeamRole(membership.role).label.lower()
        membership.role = role
        membership.save(update_fields=["role"])
        if role != TeamRole.OWNER:
            _revoke_invitations_of(team, user)
        reason = f"{user.email}: {was} → {TeamRole(role).label.lower()}."
        AuditEntry.record(
            user,
            AuditEntry.Action.ROLE_CHANGED,
            actor=actor,
            ip_address=ip_address,
            reason=reason,
            team=team,
        )
    return membership


def remove_member(team: Team, user: User, *, actor: User, ip_address: str | None = None) -> None:
    """Take a member out of the team (an owner's act, or the member leaving). Their access
    ends with this request; the keys they made stay the team's and keep working."""
    with transaction.atomic():
        team, membership = _locked_member(team, user)
        if membership.role == TeamRole.OWNER and not _other_owners(team, user):
            raise TeamRefused(
                f"{user.email} is the team's last owner: make another member an owner first."
            )
        membership.delete()
        _revoke_invitations_of(team, user)
        how = "Left the team." if actor == user else f"Removed by {actor.email}."
        AuditEntry.record(
            user,
            AuditEntry.Action.MEMBER_REMOVED,
            actor=actor,
            ip_address=ip_address,
            reason=f"{user.email}: {how} The team's keys keep working.",
            team=team,
        )


def appoint_owner(team: Team, user: User, *, actor: User, reason: str) -> Membership:
    """An administrator's: make `user` an owner of `team` (added if not a member)."""
    if not user.is_active:
        raise TeamRefused(f"{user.email} is deactivated: appoint someone whose account works.")
    with transaction.atomic():
        team = Team.objects.select_for_update().get(pk=team.pk)
        membership, _ = Membership.objects.update_or_create(
            team=team, user=user, defaults={"role": TeamRole.OWNER}
        )
        if team.ownerless_since is not None:
            team.ownerless_since = None
            team.save(update_fields=["ownerless_since"])
        AuditEntry.record(
            user,
            AuditEntry.Action.OWNER_APPOINTED,
            actor=actor,
            reason=f"{user.email} appointed owner. {reason}".strip(),
            team=team,
        )
    return membership


def account_deleted(user: User) -> list[Team]:
    """End the memberships of an account deleted in Keycloak; the teams it leaves ownerless
    are flagged and the administrators mailed. Returns those teams."""
    ownerless = []
    for membership in Membership.objects.filter(user=user).select_related("team"):
        with transaction.atomic():
            team = Team.objects.select_for_update().get(pk=membership.team_id)
            was_owner = membership.role == TeamRole.OWNER
            Membership.objects.filter(pk=membership.pk).delete()
            _revoke_invitations_of(team, user)
            AuditEntry.record(
                user,
                AuditEntry.Action.MEMBER_REMOVED,
                actor=None,
                reason=f"{user.email}: the account was deleted in Keycloak. The team's keys "
                "keep working.",
                team=team,
            )
            if was_owner and not _other_owners(team, user):
                team.ownerless_since = timezone.now()
                team.save(update_fields=["ownerless_since"])
                AuditEntry.record(
                    team,
                    AuditEntry.Action.TEAM_OWNERLESS,
                    actor=None,
                    reason=f"Its last owner ({user.email}) was deleted in Keycloak: an "
                    "administrator must appoint one.",
                )
                ownerless.append(team)
                transaction.on_commit(partial(notifications.team_ownerless, team))
    return ownerless


# --- Moving keys -------------------------------------------------------------------------


def move_key(
    key: ApiKey,
    *,
    owner: User | None,
    team: Team | None,
    actor: User,
    reason: str = "",
    ip_address: str | None = None,
) -> ApiKey:
    """Give `key` to another holder: `team` (made by `owner`), or `owner`'s personal keys;
    `owner` None: its maker as it is under the lock stays its maker.

    Nothing changes for partners: same client, same secret. The record changes first, then
    the client's marks (so recovery after a restore puts it where it is now), under the key's
    lock; if Keycloak fails, nothing changed. Audited, and sent as `key.transferred` to the
    old space's webhooks and the new one's.
    """
    with transaction.atomic():
        key = ApiKey.objects.locked(key.pk)
        owner = owner or key.owner
        if not key.is_live:
            raise TeamRefused(f"{key.client_id} has ended: there is nothing to move.")
        if not key.is_own:
            raise TeamRefused(f"{key.client_id} was made by another portal deployment.")
        if team is None and not owner.is_active:
            raise TeamRefused(f"{owner.email} is deactivated: give the key to someone active.")
        old_holder: Team | User = key.team or key.owner
        old_endpoints = list(WebhookEndpoint.objects.of_space(key))
        if key.team == team and (team is not None or key.owner == owner):
            holder = f"the team {team.name}'s" if team else f"a personal key of {owner.email}"
            raise TeamRefused(f"{key.client_id} is already {holder}.")
        if team is not None:
            team = _taking(team, maker=owner)
        clash = ApiKey.objects.held_by(owner, team).live().filter(name=key.name)
        if clash.exclude(pk=key.pk).exists():
            where = f"the team {team.name}" if team is not None else owner.email
            raise TeamRefused(f"{where} has a live key called “{key.name}” already: rename one.")
        said = _moved(key, owner, team)
        key.owner, key.team = owner, team
        key.save(update_fields=["owner", "team"])
        entry = AuditEntry.record(
            key,
            AuditEntry.Action.TRANSFERRED,
            actor=actor,
            ip_address=ip_address,
            reason=f"{said} {reason}".strip(),
        )
        _tell_old_space(key, old_endpoints, entry, reason=f"Moved to another holder. {reason}")
        # It left them (the checks above refused a move to where it is).
        _record_leaving(old_holder, key, actor=actor, ip_address=ip_address, reason=reason)
        if key.keycloak_id:
            keycloak.update_client(
                keycloak.portal_connection(), key.keycloak_id, desired.holder_marks(key)
            )
    return key


def _taking(team: Team, *, maker: User) -> Team:
    """The team that takes a key made by `maker`, locked (its quota counted in turn): a
    member's key, within its quota."""
    team = Team.objects.select_for_update().get(pk=team.pk)
    if not team.memberships.filter(user=maker).exists():
        raise TeamRefused(
            f"{maker.email} is not a member of the team {team.name}: give a member of the team "
            "as the key's maker."
        )
    if team.keys.live().count() >= (quota := team.key_quota):
        raise TeamRefused(
            f"The team {team.name} is at its quota of {quota} live key{pluralize(quota)}."
        )
    return team


def _moved(key: ApiKey, owner: User, team: Team | None) -> str:
    """The move in words, for the key's audit entry, which its new holder reads: where it
    went, and only what it was before (a team's key, a personal one), not whose."""
    source = "a team" if key.team is not None else "personal keys"
    if team is None:
        return f"Moved from {source} to the personal keys of {owner.email}."
    made_by = f", made by {owner.email}" if owner != key.owner else ""
    return f"Moved from {source} to the team {team.name}{made_by}."


def _record_leaving(
    holder: Team | User, key: ApiKey, *, actor: User, ip_address: str | None, reason: str
) -> None:
    """The team or the person whose personal key it was keeps an entry of its leaving in
    their activity (only they and administrators read it), with the key's client id, not
    who holds it now."""
    if isinstance(holder, Team):
        left = f"the team {holder.name}"
    else:
        left = f"the personal keys of {holder.email}"
    AuditEntry.record(
        holder,
        AuditEntry.Action.TRANSFERRED,
        actor=actor,
        ip_address=ip_address,
        reason=f"Moved out of {left}. {reason}".strip(),
        client_id=key.client_id,
    )


def _tell_old_space(
    key: ApiKey, endpoints: list[WebhookEndpoint], entry: AuditEntry, *, reason: str
) -> None:
    """The space a key left hears of it too (the new one heard through the audit entry), with
    `reason`: not who holds it now."""
    new = {e.pk for e in WebhookEndpoint.objects.of_space(key)}
    event = KEY_EVENTS[AuditEntry.Action.TRANSFERRED]
    data = {"key": key_payload(key), "reason": reason.strip(), "via": entry.via}
    for endpoint in endpoints:
        if endpoint.pk not in new and endpoint.wants(event):
            WebhookMessage.objects.create(endpoint=endpoint, event_type=event, data=data)
