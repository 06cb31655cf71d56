"""What follows in the portal when a user's Keycloak account changes.

One implementation for every feed that learns of a change: the `sync_users` job (Keycloak's
stored events), and the sign-in session check (`apikeys/views/signin.py`). Keycloak does not touch a
user's key clients when the user goes, so the portal must:

- deleted (admin API or console, or the user's own "delete account"): the portal user is
  deactivated, every live personal key revoked and unfinished ones discarded; that is final.
  Their team memberships end (apikeys/operations/teams.py); the keys they made for a team
  stay the team's and keep working.
- disabled: the portal user is deactivated (their portal session ends, and with it their
  access to their teams) and active personal keys suspended with OWNER_DISABLED.
- enabled again: the portal user is reactivated, and the keys suspended with
  OWNER_DISABLED are reinstated, unless they expired meanwhile. Keys an admin suspended
  stay suspended.
- the `portal-admin` role granted or removed: the portal user's admin rights follow.

The user's new state is committed first: from that moment their keys are refused by strict
APIs and reconcile never enables them again, whatever fails next. Each key is then its own
unit of work; a key whose Keycloak call fails is reported and left to the next run (or to
reconcile), and the others go on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from django.db import DatabaseError, transaction

from apikeys.keycloak import client as keycloak
from apikeys.keycloak.client import KeycloakFailure
from apikeys.models import ApiKey, AuditEntry, User, WrongState
from apikeys.operations import lifecycle, teams

log = logging.getLogger(__name__)

# Keys suspended because their owner was disabled in Keycloak carry this reason, so that
# enabling the owner again reinstates exactly those (not ones an admin suspended).
OWNER_DISABLED = "The owner's account was disabled in Keycloak."
OWNER_DELETED = "The owner's account was deleted in Keycloak."
OWNER_ENABLED = "The owner's account is enabled again."

ACCOUNT_CHANGES = ("deleted", "disabled", "enabled")
ROLE_CHANGES = ("admin granted", "admin removed")


@dataclass
class Outcome:
    keys_changed: int = 0
    failures: list[str] = field(default_factory=list)  # what could not be done, and why


def apply_change(sub: str, change: str, at_ms: int | None = None) -> Outcome:
    """Apply one change of the Keycloak user `sub` (see ACCOUNT_CHANGES and ROLE_CHANGES).

    `at_ms`, the event's time: an account change older than one already applied is stale
    (a pushed batch that arrived late) and changes nothing.
    """
    outcome = Outcome()
    user = User.objects.filter(username=sub).first()
    if user is None:
        return outcome  # never signed in to the portal: no keys, no rights
    if change in ROLE_CHANGES:
        user.set_admin_role(granted=change == "admin granted", how="in Keycloak", at_ms=at_ms)
        return outcome
    if not _set_active(user, change == "enabled", change, at_ms):
        return outcome
    keys = user.api_keys.filter(team__isnull=True)  # a team's keys are not theirs to lose
    if change == "deleted":
        _leave_teams(outcome, user)  # a failure there is reported; the keys go on below
        for key in keys.allowing("revoke"):
            _each(outcome, key, lambda k: lifecycle.revoke_key(k, actor=None, reason=OWNER_DELETED))
        for key in keys.allowing("discard"):
            _each(outcome, key, lambda k: lifecycle.discard_key(k, actor=None))
    elif change == "disabled":
        for key in keys.allowing("suspend"):
            _each(outcome, key, lambda k: lifecycle.suspend_key(k, actor=None, reason=_why(k)))
    else:
        for key in keys.allowing("reinstate").filter(status_reason=OWNER_DISABLED):
            _each(
                outcome,
                key,
                lambda k: lifecycle.reinstate_key(k, actor=None, reason=OWNER_ENABLED),
            )
    return outcome


def _why(key: ApiKey) -> str:
    """Why the key of a disabled owner is suspended. If an operator had already disabled or
    deleted its client, that stays the reason: enabling the owner must not undo it."""
    try:
        client = keycloak.get_key_client(keycloak.portal_connection(), key.keycloak_id)
    except keycloak.NotFound:
        return lifecycle.client_deleted(key)
    return OWNER_DISABLED if client.enabled else lifecycle.CLIENT_DISABLED


def _set_active(user: User, active: bool, change: str, at_ms: int | None) -> bool:
    """Record the account's state; False if the change is stale (nothing to do)."""
    with transaction.atomic():
        user = User.objects.select_for_update().get(pk=user.pk)
        if at_ms is not None:
            if user.account_event_at is not None and at_ms < user.account_event_at:
                log.info("user %s: a %s older than what was applied; ignored", user.pk, change)
                return False
            user.account_event_at = at_ms
            user.save(update_fields=["account_event_at"])
        if user.is_active == active:
            return True
        user.is_active = active
        user.save(update_fields=["is_active"])
        action = (
            AuditEntry.Action.USER_REACTIVATED if active else AuditEntry.Action.USER_DEACTIVATED
        )
        reason = f"The account was {change} in Keycloak."
        AuditEntry.record(user, action, actor=None, reason=reason)
    return True


def _leave_teams(outcome: Outcome, user: User) -> None:
    """A deleted account's memberships end; a failure is reported (the next feed of the
    event, or the polling backstop, tries again) and never stops its keys' revocation."""
    try:
        teams.account_deleted(user)
    except DatabaseError as error:
        log.warning("user %s: memberships not ended: %s", user.pk, error)
        outcome.failures.append(f"memberships of {user.email or user.username}: {error}")


def _each(outcome: Outcome, key: ApiKey, act: Callable[[ApiKey], object]) -> None:
    """One key's change, as a unit of work: a failure is reported, the other keys go on."""
    try:
        act(key)
    except WrongState:
        return  # someone acted on the key meanwhile, or it expired: nothing to do
    except (KeycloakFailure, DatabaseError) as error:
        log.warning("%s: %s", key.client_id, error)
        outcome.failures.append(f"{key.client_id}: {error}")
        return
    outcome.keys_changed += 1
