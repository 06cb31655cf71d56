"""Operations that span the portal's database and Keycloak: issue, rotate, revoke, expire.

Each operation is a short list of ordered steps. Two rules decide the order:

- Keycloak never holds a client that no record names. The record is committed first
  (status `provisioning`, with its clientId already fixed), and the client is made second.
  Whatever dies after that, the record leads to the client: a retry gets a 409 and takes
  the client over; a discard deletes it.
- A record never says a key has ended while its client can still get tokens. Revoke and
  expire change Keycloak first and the record second. If the process dies in between,
  the record still says live, and the retry finds the work already done.

Each step that changes a key holds its row lock (`select_for_update`) across the Keycloak
call. Two requests (or a request and the expiry job) acting on the same key therefore
take turns. Keycloak calls time out after KEYCLOAK_TIMEOUT seconds, so a lock never waits
longer than that.
"""

from __future__ import annotations

import logging
import os
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from apikeys import keycloak, notifications
from apikeys.keycloak import KeycloakRejected, KeycloakUnavailable, Representation
from apikeys.models import Api, ApiKey, AuditEntry, User
from apikeys.realm_setup import EXTRA_GRANTS_OFF, FLOWS_OFF
from apikeys.secret_format import new_secret

log = logging.getLogger(__name__)

# Client attributes that tie a Keycloak client to its portal record.
MANAGED_ATTRIBUTE = "portal.managed"
KEY_ATTRIBUTE = "portal.key"
OWNER_ATTRIBUTE = "portal.owner"
API_ATTRIBUTE = "portal.api"


class SimulatedCrash(BaseException):
    """Raised at an armed fault point. A BaseException, so no `except Exception` stops it."""


class InjectedError(Exception):
    """An unexpected error raised at an armed fault point, as a bug would raise one."""


# Step boundaries where a process may die: after a Keycloak change, before the database
# records it. Tests arm them (`armed_faults`) to prove that a retry or reconcile converges.
FAULT_POINTS = (
    "issue:reserved",
    "issue:client-created",
    "discard:client-deleted",
    "rotate:secret-set",
    "revoke:client-deleted",
    "approve:client-enabled",
    "reject:client-deleted",
    "suspend:client-disabled",
    "reinstate:client-enabled",
    "expire:client-disabled",
)
# Fault point -> "raise", "error" or "exit". Subprocesses of the tests arm them with PORTAL_FAULTS,
# e.g. "issue:client-created=exit"; only ever in the test profile.
armed_faults: dict[str, str] = (
    dict(item.split("=", 1) for item in os.environ.get("PORTAL_FAULTS", "").split(",") if item)
    if os.environ.get("PORTAL_PROFILE") == "test"
    else {}
)


def step(point: str) -> None:
    """Mark a step boundary; when a test armed it, crash here (raise, or end the process)."""
    action = armed_faults.get(point)
    if action == "exit":
        os._exit(137)  # as if killed: no cleanup, the open transaction is lost
    if action == "raise":
        raise SimulatedCrash(point)
    if action == "error":
        raise InjectedError(point)


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


class WrongState(Exception):
    """The key is not in a state that allows this action (someone else acted first)."""


@dataclass(frozen=True)
class Revealed:
    """A key together with the secret that is shown once and then forgotten."""

    key: ApiKey
    secret: str = field(repr=False)


@sensitive_variables()  # every local may hold the secret: none goes in an error report
def key_client_representation(key: ApiKey, secret: str) -> Representation:
    """The whole Keycloak client of a key, sent in one POST.

    Only client-credentials is on. `fullScopeAllowed` is off and no role is in scope, so
    tokens carry no roles. Default scopes are the API's audience scope, `basic` (for `sub`)
    and `service_account`, which Keycloak attaches to every service-account client anyway.
    No customer input goes in: names and descriptions stay in the portal.
    """
    api = key.api
    return {
        "clientId": key.client_id,
        "name": f"API key for {api.name}",
        "description": "Managed by the API key portal; change it there, not here.",
        "protocol": "openid-connect",
        "enabled": not api.requires_approval,
        "publicClient": False,
        "bearerOnly": False,
        "consentRequired": False,
        "clientAuthenticatorType": "client-secret",
        "secret": secret,
        **FLOWS_OFF,
        "serviceAccountsEnabled": True,
        "fullScopeAllowed": False,
        "frontchannelLogout": False,
        "redirectUris": [],
        "webOrigins": [],
        "attributes": {
            **EXTRA_GRANTS_OFF,
            "access.token.lifespan": str(api.access_token_lifespan),
            "use.refresh.tokens": "false",
            "client_credentials.use_refresh_token": "false",
            MANAGED_ATTRIBUTE: "true",
            KEY_ATTRIBUTE: str(key.pk),
            OWNER_ATTRIBUTE: key.owner.username,
            API_ATTRIBUTE: api.slug,
        },
        "defaultClientScopes": [api.scope_name, "basic", "service_account"],
        "optionalClientScopes": [],
        "protocolMappers": [],
    }


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
    have made the client and cannot be asked does the record stay `provisioning`; the key
    list shows it as unfinished, and the customer can finish or discard it.
    """
    api = Api.objects.get(pk=api.pk)  # as it is now: an admin may have just retired it
    if api.retired_at is not None:
        raise KeyNotIssued(f"{api.name} is retired and takes no new keys.")
    if api.requires_approval and not justification.strip():
        raise KeyNotIssued(f"{api.name} needs an administrator's approval: say why you need it.")
    key = _reserve(owner, api, name, description, justification, lifetime_days, request_id)
    step("issue:reserved")
    try:
        return finish_provisioning(key, actor=owner, ip_address=ip_address)
    except (KeycloakUnavailable, KeycloakRejected) as error:
        log.warning("Issuing %s failed: %s", key.client_id, error)
        if isinstance(error, KeycloakRejected) or not error.reached:
            # Keycloak refused the client, or never heard of it: nothing to undo there.
            ApiKey.objects.filter(pk=key.pk, status=ApiKey.Status.PROVISIONING).delete()
        else:
            # The request got to Keycloak, so the client may exist: look, and remove it.
            try:
                discard_unfinished(key)
            except (KeycloakUnavailable, KeycloakRejected) as cleanup_error:
                log.warning("%s stays unfinished: %s", key.client_id, cleanup_error)
                raise KeyNotIssued(
                    f"{failure_message(error)} The key was not finished: it is listed as "
                    "unfinished, and you can finish or discard it."
                ) from error
        raise KeyNotIssued(
            f"{failure_message(error)} No key was created; please try again in a minute."
        ) from error


def _reserve(
    owner: User,
    api: Api,
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
        if request_id and (made := owner.api_keys.filter(request_id=request_id).first()):
            raise AlreadySubmitted(made)
        live = owner.api_keys.live()
        if live.count() >= settings.MAX_LIVE_KEYS_PER_USER:
            raise QuotaExceeded(
                f"You already have {settings.MAX_LIVE_KEYS_PER_USER} live keys, the most "
                "allowed. Revoke one you no longer use, then create the new one."
            )
        if live.filter(name=name).exists():
            raise NameTaken(f"You already have a key called “{name}”. Choose another name.")
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
def finish_provisioning(key: ApiKey, *, actor: User, ip_address: str | None = None) -> Revealed:
    """Steps 2 and 3: create the client with a new secret, then mark the key live.

    Also the retry of an unfinished key. If an earlier attempt made the client and died
    before step 3, the create answers 409. That client is then taken over with the new
    secret, because nobody ever saw the old one. No second client is made.
    """
    with transaction.atomic():
        key = ApiKey.objects.select_for_update().select_related("api", "owner").get(pk=key.pk)
        if key.status != ApiKey.Status.PROVISIONING:
            raise WrongState(f"{key.client_id} is already set up.")
        secret = new_secret()
        rep = key_client_representation(key, secret)
        conn = keycloak.portal_connection()
        try:
            client_uuid = keycloak.create_client(conn, rep)
        except keycloak.AlreadyExists:
            client = _own_client(conn, key)
            if client is None:  # deleted again since the 409: let the caller retry
                raise
            client_uuid = client["id"]
            keycloak.update_client(conn, client_uuid, rep)
        step("issue:client-created")
        key.keycloak_id = client_uuid
        key.status = ApiKey.Status.PENDING if key.api.requires_approval else ApiKey.Status.ACTIVE
        key.save(update_fields=["keycloak_id", "status"])
        AuditEntry.record(key, AuditEntry.Action.CREATED, actor=actor, ip_address=ip_address)
    if key.status == ApiKey.Status.PENDING:
        notifications.request_arrived(key)
    return Revealed(key, secret)


def discard_unfinished(key: ApiKey) -> None:
    """Take an unfinished key apart: its client if Keycloak has one, then the record.

    The client goes first, so a crash in between leaves a record pointing at nothing, and
    the next discard simply finds no client and deletes the record.
    """
    with transaction.atomic():
        key = ApiKey.objects.select_for_update().get(pk=key.pk)
        if key.status != ApiKey.Status.PROVISIONING:
            raise WrongState(f"{key.client_id} is no longer being set up.")
        conn = keycloak.portal_connection()
        if (client := _own_client(conn, key)) is not None:
            keycloak.delete_client(conn, client["id"])
            step("discard:client-deleted")
        key.delete()


@sensitive_variables()  # every local may hold the secret: none goes in an error report
def rotate_secret(key: ApiKey, *, actor: User | None, ip_address: str | None = None) -> Revealed:
    """Replace the key's secret in Keycloak; the old one stops working at once.

    One remote step, then the record. If the process dies in between, the customer never
    saw the new secret and rotates again. If the key's client has vanished from Keycloak,
    it is made again here, with the new secret: the one case where recreating is safe,
    since the customer sees the secret it carries.
    """
    with transaction.atomic():
        key = _locked(key)
        _require(key, ApiKey.ISSUED_STATUSES)
        secret = new_secret()
        conn = keycloak.portal_connection()
        reason = ""
        try:
            keycloak.update_client(conn, key.keycloak_id, {"secret": secret})
        except keycloak.NotFound:
            rep = key_client_representation(key, secret)
            rep["enabled"] = key.status == ApiKey.Status.ACTIVE
            key.keycloak_id = keycloak.create_client(conn, rep)
            reason = "Its Keycloak client had vanished and was made again."
        step("rotate:secret-set")
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
    """Delete the key's client (and its service account), then mark the record revoked.

    The record stays, for history. A client that is already gone counts as deleted, since
    an earlier attempt may have died between the two steps.
    """
    key = _delete_client_and_end(key, ApiKey.ISSUED_STATUSES, ApiKey.Status.REVOKED,
                                 AuditEntry.Action.REVOKED, "revoke:client-deleted",
                                 actor, ip_address, reason)  # fmt: skip
    if actor != key.owner:
        notifications.decision(key, "revoked", reason)
    return key


def approve_key(key: ApiKey, *, actor: User, ip_address: str | None = None) -> ApiKey:
    """Enable a pending key's client, then mark it active.

    The time spent waiting is added to the expiry, so the customer gets the lifetime they
    asked for. If the process dies between the steps, the client works while the record
    still says pending; approving again finds it enabled already and finishes.
    """
    with transaction.atomic():
        key = _locked(key)
        _require(key, (ApiKey.Status.PENDING,))
        if not key.owner.is_active:
            raise WrongState(f"The owner of {key.client_id} is disabled in Keycloak.")
        keycloak.update_client(keycloak.portal_connection(), key.keycloak_id, {"enabled": True})
        step("approve:client-enabled")
        now = timezone.now()
        key.expires_at += now - key.created_at
        key.status = ApiKey.Status.ACTIVE
        key.status_reason = ""
        key.save(update_fields=["expires_at", "status", "status_reason"])
        AuditEntry.record(key, AuditEntry.Action.APPROVED, actor=actor, ip_address=ip_address)
    notifications.decision(key, "approved")
    return key


def reject_key(key: ApiKey, *, actor: User, ip_address: str | None = None, reason: str) -> ApiKey:
    """Delete a pending key's client, then mark the record rejected, with the reason."""
    key = _delete_client_and_end(key, (ApiKey.Status.PENDING,), ApiKey.Status.REJECTED,
                                 AuditEntry.Action.REJECTED, "reject:client-deleted",
                                 actor, ip_address, reason)  # fmt: skip
    notifications.decision(key, "rejected", reason)
    return key


def _delete_client_and_end(
    key: ApiKey,
    allowed: tuple[str, ...],
    status: ApiKey.Status,
    action: str,
    point: str,
    actor: User | None,
    ip_address: str | None,
    reason: str,
) -> ApiKey:
    """Keycloak first (the key stops at once), then the record; a client gone counts as done."""
    with transaction.atomic():
        key = _locked(key)
        _require(key, allowed)
        try:
            keycloak.delete_client(keycloak.portal_connection(), key.keycloak_id)
        except keycloak.NotFound:
            log.info("%s had no client left to delete", key.client_id)
        step(point)
        key.status_reason = reason
        _end(key, status)
        AuditEntry.record(key, action, actor=actor, ip_address=ip_address, reason=reason)
    return key


def suspend_key(
    key: ApiKey, *, actor: User | None, ip_address: str | None = None, reason: str
) -> ApiKey:
    """Disable an active key's client (Keycloak first: it stops working at once), then record."""
    return _set_enabled(key, False, ApiKey.Status.ACTIVE, ApiKey.Status.SUSPENDED,
                        AuditEntry.Action.SUSPENDED, actor, ip_address, reason)  # fmt: skip


def reinstate_key(
    key: ApiKey, *, actor: User | None, ip_address: str | None = None, reason: str = ""
) -> ApiKey:
    """Enable a suspended key's client again, unless the key has expired meanwhile."""
    if key.expires_at <= timezone.now():
        raise WrongState(f"{key.client_id} has expired; it cannot be reinstated.")
    return _set_enabled(key, True, ApiKey.Status.SUSPENDED, ApiKey.Status.ACTIVE,
                        AuditEntry.Action.REINSTATED, actor, ip_address, reason)  # fmt: skip


def _set_enabled(
    key: ApiKey,
    enabled: bool,
    from_status: str,
    to_status: ApiKey.Status,
    action: str,
    actor: User | None,
    ip_address: str | None,
    reason: str,
) -> ApiKey:
    with transaction.atomic():
        key = _locked(key)
        _require(key, (from_status,))
        keycloak.update_client(keycloak.portal_connection(), key.keycloak_id, {"enabled": enabled})
        step("reinstate:client-enabled" if enabled else "suspend:client-disabled")
        key.status = to_status
        key.status_reason = reason
        key.save(update_fields=["status", "status_reason"])
        AuditEntry.record(key, action, actor=actor, ip_address=ip_address, reason=reason)
    notifications.decision(key, action, reason)
    return key


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
            with transaction.atomic():
                key = (
                    ApiKey.objects.due_to_expire(now)
                    .select_for_update(skip_locked=True)
                    .filter(pk=pk)
                    .first()
                )
                if key is None:
                    continue
                try:
                    conn = keycloak.portal_connection()
                    keycloak.update_client(conn, key.keycloak_id, {"enabled": False})
                except keycloak.NotFound:
                    log.info("%s had no client left to disable", key.client_id)
                step("expire:client-disabled")
                _end(key, ApiKey.Status.EXPIRED, now)
                AuditEntry.record(
                    key, AuditEntry.Action.EXPIRED, actor=None,
                    reason=f"Reached its expiry date, {key.expires_at:%Y-%m-%d %H:%M} UTC.",
                )  # fmt: skip
            run.expired.append(key)
        except (KeycloakUnavailable, KeycloakRejected) as error:
            run.failed.append((ApiKey.objects.get(pk=pk), str(error)))
    return run


def failure_message(error: Exception) -> str:
    """What to tell a person when a Keycloak call failed (never the raw response)."""
    if isinstance(error, KeycloakUnavailable):
        return "Keycloak, which issues the keys, is not answering right now."
    return "Keycloak, which issues the keys, refused the request."


def _require(key: ApiKey, allowed: tuple[str, ...]) -> None:
    if key.status not in allowed:
        raise WrongState(f"{key.client_id} is {key.get_status_display().lower()}.")


def _locked(key: ApiKey) -> ApiKey:
    return ApiKey.objects.select_for_update().select_related("api", "owner").get(pk=key.pk)


def _end(key: ApiKey, status: ApiKey.Status, when: datetime | None = None) -> None:
    key.status = status
    key.ended_at = when or timezone.now()
    key.save(update_fields=["status", "ended_at", "status_reason"])


def _own_client(conn: keycloak.Connection, key: ApiKey) -> Representation | None:
    """The client named by the key's clientId (None if there is none), if it is this key's."""
    client = keycloak.find_client(conn, key.client_id)
    if client is None:
        return None
    if client.get("attributes", {}).get(KEY_ATTRIBUTE) != str(key.pk):
        # Not ours to take over or delete: someone made it by hand with our clientId.
        raise KeycloakRejected(409, f"client {key.client_id} exists but is not this key's")
    return client
