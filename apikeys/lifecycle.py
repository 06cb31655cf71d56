"""Operations that span the portal's database and Keycloak: issue, rotate, revoke, expire, ...

Each operation is a short list of ordered steps. Three rules decide the order:

- Keycloak never holds a client that no record names. The record is committed first
  (status unfinished, with its clientId already fixed), and the client is made second.
  Whatever dies after that, the record leads to the client: a retry gets a 409 and takes
  the client over; a discard deletes it.
- A restrictive decision (revoke, reject, suspend) is recorded before Keycloak is told
  (`_decide`), then carried out (`carry_out`): whatever fails in between, the key is
  refused by strict APIs, cannot be rotated or reinstated, and the retry or reconcile
  completes the decision. The stronger one wins: a revocation overrides a suspension.
- A record never says a key has ended while its client can still get tokens: Keycloak is
  changed first and the record second (the end of a decision, expiry).

Each other step that changes a key holds its row lock (`ApiKey.objects.locked`) across the
Keycloak call. Two requests (or a request and the expiry job) acting on the same key
therefore take turns. Keycloak calls time out after KEYCLOAK_TIMEOUT seconds, so a lock
never waits longer than that. Which status allows which action is written once, on the
model (`ApiKey.require`); what the key's client should be, in `apikeys/desired.py`.
`crash_point(...)` marks each boundary between a Keycloak change and the database step
that records it, for the tests (`apikeys/crash_points.py`).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from apikeys import desired, keycloak, notifications
from apikeys.crash_points import crash_point
from apikeys.keycloak import (
    KeycloakFailure,
    KeycloakRejected,
    KeycloakUnavailable,
    Representation,
)
from apikeys.models import INTENTS, Api, ApiKey, AuditEntry, KeyStatus, User, WrongState
from apikeys.secret_format import new_secret

log = logging.getLogger(__name__)


# Why a key was suspended because of what was done to its client in Keycloak, outside the
# portal (an operator's restrictive action): reconcile and rotate find it out.
CLIENT_DISABLED = (
    "Its client was disabled in Keycloak, outside the portal. An administrator can reinstate it."
)
CLIENT_DELETED = (
    "Its client was deleted in Keycloak, outside the portal. Rotate its secret to make a new "
    "client; an administrator then decides whether to reinstate it."
)


class KeyNotIssued(Exception):
    """The key could not be made; the message is fit to show to the customer."""


class QuotaExceeded(KeyNotIssued):
    pass


class NameTaken(KeyNotIssued):
    pass


class AlreadySubmitted(Exception):
    """The same create form was submitted before: this is the key it made."""

    def __init__(self, key: ApiKey) -> None:
        super().__init__(f"{key.client_id} was already made from this form")
        self.key = key


@dataclass(frozen=True)
class Revealed:
    """A key together with the secret that is shown once and then forgotten."""

    key: ApiKey
    secret: str = field(repr=False)


@sensitive_variables()  # every local may hold the secret: none goes in an error report
def issue_key(
    owner: User,
    api: Api,
    *,
    name: str,
    description: str = "",
    justification: str = "",
    lifetime_days: int,
    ip_address: str | None = None,
    request_id: uuid.UUID | None = None,
) -> Revealed:
    """Make a key in three steps: reserve the record, create the client, mark it live.

    If Keycloak fails, the half-made key is taken apart again (client, then record), so the
    customer is left with nothing rather than with something broken. Only when Keycloak may
    have made the client and cannot be asked does the record stay unfinished; the key list
    shows it so, and the customer can finish or discard it.
    """
    api = Api.objects.get(pk=api.pk)  # as it is now: an admin may have just retired it
    if api.retired_at is not None:
        raise KeyNotIssued(f"{api.name} is retired and takes no new keys.")
    if api.requires_approval and not justification.strip():
        raise KeyNotIssued(f"{api.name} needs an administrator's approval: say why you need it.")
    key = _reserve(
        owner,
        api,
        name=name,
        description=description,
        justification=justification,
        lifetime_days=lifetime_days,
        request_id=request_id,
    )
    crash_point("issue:reserved")
    try:
        return finish_key(key, actor=owner, ip_address=ip_address)
    except KeycloakFailure as error:
        log.warning("Issuing %s failed: %s", key.client_id, error)
        if not (isinstance(error, KeycloakUnavailable) and error.reached):
            # Keycloak refused the client, or never heard of it: nothing to undo there.
            ApiKey.objects.filter(pk=key.pk, status=ApiKey.Status.UNFINISHED).delete()
        else:
            # The request got to Keycloak, so the client may exist: look, and remove it.
            try:
                discard_key(key, actor=None)
            except KeycloakFailure as cleanup_error:
                log.warning("%s stays unfinished: %s", key.client_id, cleanup_error)
                raise KeyNotIssued(
                    f"{error.for_people} The key was not finished: it is listed as "
                    "unfinished, and you can finish or discard it."
                ) from error
        raise KeyNotIssued(
            f"{error.for_people} No key was created; please try again in a minute."
        ) from error


def _reserve(
    owner: User,
    api: Api,
    *,
    name: str,
    description: str,
    justification: str,
    lifetime_days: int,
    request_id: uuid.UUID | None,
) -> ApiKey:
    """Step 1: the record, with its clientId fixed, within the owner's quota."""
    with transaction.atomic():
        # Lock the owner's row, so concurrent requests of one owner count their keys in turn.
        User.objects.select_for_update().get(pk=owner.pk)
        if made := owner.api_keys.made_by_request(request_id):
            raise AlreadySubmitted(made)
        live = owner.api_keys.live()
        if live.count() >= settings.MAX_LIVE_KEYS_PER_USER:
            raise QuotaExceeded(
                f"You already have {settings.MAX_LIVE_KEYS_PER_USER} live keys, the most "
                "allowed. Revoke one you no longer use, then create the new one."
            )
        if live.filter(name=name).exists():
            raise NameTaken(f"You already have a key called “{name}”. Choose another name.")
        day_ago = timezone.now() - timedelta(days=1)
        if owner.api_keys.filter(created_at__gt=day_ago).count() >= settings.MAX_KEYS_MADE_PER_DAY:
            raise QuotaExceeded(
                f"You have made {settings.MAX_KEYS_MADE_PER_DAY} keys in the last 24 hours, the "
                "most allowed in a day (revoked ones count too). Try again tomorrow."
            )
        try:
            return ApiKey.objects.create(
                owner=owner,
                api=api,
                name=name,
                description=description,
                justification=justification,
                expires_at=timezone.now() + timedelta(days=lifetime_days),
                request_id=request_id,
            )
        except IntegrityError as error:  # the unique constraint, if a check above was raced
            raise NameTaken(f"You already have a key called “{name}”.") from error


@sensitive_variables()  # every local may hold the secret: none goes in an error report
def finish_key(key: ApiKey, *, actor: User, ip_address: str | None = None) -> Revealed:
    """Steps 2 and 3: create the client with a new secret, then mark the key live.

    Also the retry of an unfinished key. If an earlier attempt made the client and died
    before step 3, the create answers 409. That client is then taken over with the new
    secret, because nobody ever saw the old one. No second client is made.
    """
    with transaction.atomic():
        key = ApiKey.objects.locked(key.pk)
        key.require("finish")
        if key.api.retired_at is not None:
            raise WrongState(f"{key.api.name} is retired and takes no new keys: discard this one.")
        secret = new_secret()
        client = desired.key_client(key, now=timezone.now(), secret=secret)
        conn = keycloak.portal_connection()
        try:
            client_uuid = keycloak.create_client(conn, client)
        except keycloak.AlreadyExists:
            made = _own_client(conn, key)
            if made is None:  # deleted again since the 409: let the caller retry
                raise
            client_uuid = made["id"]
            keycloak.update_client(conn, client_uuid, client)
        crash_point("issue:client-created")
        key.keycloak_id = client_uuid
        key.status = ApiKey.Status.PENDING if key.api.requires_approval else ApiKey.Status.ACTIVE
        key.save(update_fields=["keycloak_id", "status"])
        AuditEntry.record(key, AuditEntry.Action.CREATED, actor=actor, ip_address=ip_address)
    if key.status == ApiKey.Status.PENDING:
        notifications.request_arrived(key)
    return Revealed(key, secret)


def discard_key(key: ApiKey, *, actor: User | None = None, ip_address: str | None = None) -> None:
    """Take an unfinished key apart: its client if Keycloak has one, then the record.

    The client goes first, so a crash in between leaves a record pointing at nothing, and
    the next discard simply finds no client and deletes the record.
    """
    with transaction.atomic():
        key = ApiKey.objects.locked(key.pk)
        key.require("discard")
        conn = keycloak.portal_connection()
        if (client := _own_client(conn, key)) is not None:
            keycloak.delete_client(conn, client["id"])
            crash_point("discard:client-deleted")
        AuditEntry.record(
            key, AuditEntry.Action.DISCARDED, actor=actor, ip_address=ip_address, key_going=True
        )
        key.delete()


@sensitive_variables()  # every local may hold the secret: none goes in an error report
def rotate_secret(key: ApiKey, *, actor: User | None, ip_address: str | None = None) -> Revealed:
    """Replace the key's secret in Keycloak; the old one stops working at once.

    One remote step, then the record. If the process dies in between, the customer never
    saw the new secret and rotates again. If the key's client has vanished from Keycloak,
    it is made again here, with the new secret: the one case where recreating is safe,
    since the customer sees the secret it carries. But a client deleted outside the portal
    is an operator's restrictive action: an active key is suspended (audited) and its new
    client made disabled, for an administrator to reinstate.
    """
    with transaction.atomic():
        key = ApiKey.objects.locked(key.pk)
        key.require("rotate")
        secret = new_secret()
        conn = keycloak.portal_connection()
        reason = ""
        try:
            keycloak.update_client(conn, key.keycloak_id, {"secret": secret})
        except keycloak.NotFound:
            if key.status == ApiKey.Status.ACTIVE:
                key.status, key.status_reason = ApiKey.Status.SUSPENDED, CLIENT_DELETED
                key.save(update_fields=["status", "status_reason"])
                AuditEntry.record(
                    key, AuditEntry.Action.SUSPENDED, actor=None, reason=CLIENT_DELETED
                )
            client = desired.key_client(key, now=timezone.now(), secret=secret)
            key.keycloak_id = keycloak.create_client(conn, client)
            reason = "Its Keycloak client had vanished and was made again."
        crash_point("rotate:secret-set")
        key.secret_rotated_at = timezone.now()
        key.client_missing_since = None
        key.save(update_fields=["secret_rotated_at", "keycloak_id", "client_missing_since"])
        AuditEntry.record(
            key, AuditEntry.Action.ROTATED, actor=actor, ip_address=ip_address, reason=reason
        )
    return Revealed(key, secret)


def revoke_key(
    key: ApiKey, *, actor: User | None, ip_address: str | None = None, reason: str = ""
) -> ApiKey:
    """Record the revocation, delete the key's client (and its service account), then end it.

    The record stays, for history. A client that is already gone counts as deleted, since
    an earlier attempt may have died between the steps.
    """
    key = _decide(key, action="revoke", actor=actor, ip_address=ip_address, reason=reason)
    return carry_out(key)


def reject_key(key: ApiKey, *, actor: User, ip_address: str | None = None, reason: str) -> ApiKey:
    """Record the rejection, delete the pending key's client, then end it, with the reason."""
    key = _decide(key, action="reject", actor=actor, ip_address=ip_address, reason=reason)
    return carry_out(key)


def suspend_key(
    key: ApiKey, *, actor: User | None, ip_address: str | None = None, reason: str
) -> ApiKey:
    """Record the suspension, disable the key's client (it stops at once), then end the step."""
    key = _decide(key, action="suspend", actor=actor, ip_address=ip_address, reason=reason)
    return carry_out(key)


# For each restrictive action: the status that records the decision, the audit entry that
# records who took it and why, and the status it ends in.
_DECISIONS = {
    "revoke": (ApiKey.Status.REVOKING, AuditEntry.Action.REVOKED, ApiKey.Status.REVOKED),
    "reject": (ApiKey.Status.REJECTING, AuditEntry.Action.REJECTED, ApiKey.Status.REJECTED),
    "suspend": (ApiKey.Status.SUSPENDING, AuditEntry.Action.SUSPENDED, ApiKey.Status.SUSPENDED),
}


def _decide(
    key: ApiKey, *, action: str, actor: User | None, ip_address: str | None, reason: str
) -> ApiKey:
    """Step 1 of a restrictive action: record the decision (and who took it) before Keycloak.

    From here on the key is refused by strict APIs and can be neither rotated nor
    reinstated; whatever fails next, the retry or reconcile (`carry_out`) completes it. A
    decision already recorded (a retry) is not recorded twice.
    """
    deciding, audit_action, _ = _DECISIONS[action]
    with transaction.atomic():
        key = ApiKey.objects.locked(key.pk)
        key.require(action)
        if key.status == deciding:
            return key  # decided before; only Keycloak's step and the end are left
        # A revocation overrides a suspension still being carried out: the stronger wins.
        key.status = deciding
        key.status_reason = reason
        key.save(update_fields=["status", "status_reason"])
        AuditEntry.record(key, audit_action, actor=actor, ip_address=ip_address, reason=reason)
    return key


def carry_out(key: ApiKey) -> ApiKey:
    """Steps 2 and 3 of a recorded decision: tell Keycloak, then record the end, then mail.

    A client already gone counts as done: it cannot give tokens either way. Also what
    reconcile calls for decisions a crash or an outage left half done; a decision someone
    else completed meanwhile is left as it is. Runs without the key's row lock: the recorded
    decision already keeps every other action off the key.
    """
    if (action := INTENTS.get(ApiKey.Status(key.status))) is None:
        return key
    deciding, audit_action, final = _DECISIONS[action]
    conn = keycloak.portal_connection()
    try:
        if action == "suspend":
            keycloak.update_client(conn, key.keycloak_id, {"enabled": False})
        else:
            keycloak.delete_client(conn, key.keycloak_id)
    except keycloak.NotFound:
        log.info("%s had no client left to change", key.client_id)
    crash_point("suspend:client-disabled" if action == "suspend" else f"{action}:client-deleted")
    with transaction.atomic():
        key = ApiKey.objects.locked(key.pk)
        if key.status != deciding:
            return key  # completed by someone else meanwhile
        if final == ApiKey.Status.SUSPENDED:
            key.status = final
            key.save(update_fields=["status"])
        else:
            _end(key, final)
        decided = key.audit_entries.filter(action=audit_action).first()
    if decided is None or decided.actor is None or decided.actor != key.owner:
        notifications.decision(key, audit_action, key.status_reason)  # not their own action
    return key


def decision_pending(key: ApiKey, done: str) -> str:
    """What to tell a person whose restrictive action Keycloak failed to carry out."""
    key = ApiKey.objects.get(pk=key.pk)
    if key.status not in INTENTS:
        return "Nothing was changed."
    return (
        f"The decision is recorded: “{key.name}” is {key.get_status_display().lower()}. APIs "
        f"that check every token refuse it now, and it is {done} in Keycloak as soon as "
        "Keycloak answers (the reconcile job finishes it)."
    )


def approve_key(key: ApiKey, *, actor: User, ip_address: str | None = None) -> ApiKey:
    """Enable a pending key's client, then mark it active.

    The time spent waiting is added to the expiry, so the customer gets the lifetime they
    asked for, and Keycloak is told the new expiry with the enabling. If the process dies
    between the steps, the client works while the record still says pending; reconcile
    disables it again (the record wins), and approving again finishes.
    """
    with transaction.atomic():
        key = ApiKey.objects.locked(key.pk)
        key.require("approve")
        if actor == key.owner:
            raise WrongState("You cannot approve your own request: another administrator must.")
        if not key.owner.is_active:
            raise WrongState(f"The owner of {key.client_id} is disabled in Keycloak.")
        now = timezone.now()
        key.expires_at += now - key.created_at
        keycloak.update_client(
            keycloak.portal_connection(),
            key.keycloak_id,
            _standing(key, now=now, status=ApiKey.Status.ACTIVE),
        )
        crash_point("approve:client-enabled")
        key.status = ApiKey.Status.ACTIVE
        key.status_reason = ""
        key.save(update_fields=["expires_at", "status", "status_reason"])
        AuditEntry.record(key, AuditEntry.Action.APPROVED, actor=actor, ip_address=ip_address)
    notifications.decision(key, "approved")
    return key


def reinstate_key(
    key: ApiKey, *, actor: User | None, ip_address: str | None = None, reason: str = ""
) -> ApiKey:
    """Enable a suspended key's client again, then mark it active.

    Refused if the key expired meanwhile or its owner is disabled: the client would be
    enabled for nobody who may use it. If the process dies between the steps, reconcile
    disables the client again (the record says suspended) and reinstating again finishes.
    """
    with transaction.atomic():
        key = ApiKey.objects.locked(key.pk)
        key.require("reinstate")
        now = timezone.now()
        if key.expires_at <= now:
            raise WrongState(f"{key.client_id} has expired; it cannot be reinstated.")
        if not key.owner.is_active:
            raise WrongState(f"The owner of {key.client_id} is disabled; it cannot be reinstated.")
        keycloak.update_client(
            keycloak.portal_connection(),
            key.keycloak_id,
            _standing(key, now=now, status=ApiKey.Status.ACTIVE),
        )
        crash_point("reinstate:client-enabled")
        key.status = ApiKey.Status.ACTIVE
        key.status_reason = reason
        key.save(update_fields=["status", "status_reason"])
        AuditEntry.record(
            key, AuditEntry.Action.REINSTATED, actor=actor, ip_address=ip_address, reason=reason
        )
    notifications.decision(key, "reinstated", reason)
    return key


def _standing(key: ApiKey, *, now: datetime, status: str) -> Representation:
    """The part of the key's client that says whether, and until when, it may get tokens."""
    return {
        "enabled": desired.key_client_enabled(key, now, status=status),
        "attributes": desired.expiry_attributes(key),
    }


@dataclass
class ExpiryRun:
    expired: list[ApiKey]
    failed: list[tuple[ApiKey, str]]


def expire_due_keys(now: datetime | None = None) -> ExpiryRun:
    """Disable the clients of keys past their expiry, then mark the records expired.

    Rows locked by another run are skipped, so two copies of the job can run at once.
    A key whose Keycloak call fails stays as it is and is tried again next run.
    """
    now = now or timezone.now()
    run = ExpiryRun([], [])
    for pk in ApiKey.objects.due_to_expire(now).values_list("pk", flat=True):
        try:
            if (key := _expire(pk, now)) is not None:
                run.expired.append(key)
        except KeycloakFailure as error:
            run.failed.append((ApiKey.objects.get(pk=pk), str(error)))
    return run


def _expire(pk: uuid.UUID, now: datetime) -> ApiKey | None:
    with transaction.atomic():
        due = ApiKey.objects.due_to_expire(now).select_for_update(skip_locked=True)
        key = due.filter(pk=pk).first()
        if key is None:
            return None  # another run has it, or it changed since the list was read
        try:
            keycloak.update_client(
                keycloak.portal_connection(), key.keycloak_id, {"enabled": False}
            )
        except keycloak.NotFound:
            log.info("%s had no client left to disable", key.client_id)
        crash_point("expire:client-disabled")
        _end(key, ApiKey.Status.EXPIRED, now)
        reason = f"Reached its expiry date, {key.expires_at:%Y-%m-%d %H:%M} UTC."
        AuditEntry.record(key, AuditEntry.Action.EXPIRED, actor=None, reason=reason)
    return key


def _end(key: ApiKey, status: KeyStatus, when: datetime | None = None) -> None:
    key.status = status
    key.ended_at = when or timezone.now()
    key.save(update_fields=["status", "ended_at"])


def _own_client(conn: keycloak.Connection, key: ApiKey) -> Representation | None:
    """The client named by the key's clientId (None if there is none), if it is this key's."""
    client = keycloak.find_client(conn, key.client_id)
    if client is None:
        return None
    if not desired.is_key_client(client, key):
        # Not ours to take over or delete: someone made it by hand with our clientId.
        raise KeycloakRejected(409, f"client {key.client_id} exists but is not this key's")
    return client
