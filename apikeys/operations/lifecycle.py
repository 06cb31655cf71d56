"""Operations that span the portal's database and Keycloak: issue, rotate, revoke, expire, ...

Each operation is a short list of ordered steps. Three rules decide the order:

- Keycloak never holds a client that no record names. The record is committed first
  (status unfinished, with its clientId already fixed), and the client is made second.
  Whatever dies after that, the record leads to the client: a retry gets a 409 and takes
  the client over; a discard deletes it.
- A restrictive decision (revoke, reject, suspend) is recorded before Keycloak is told
  (`decide`), then carried out (`carry_out`): whatever fails in between, the key is
  refused by strict APIs, cannot be rotated or reinstated, and the retry or reconcile
  completes the decision. The stronger one wins: a revocation overrides a suspension.
- A record never says a key has ended while its client can still get tokens: Keycloak is
  changed first and the record second (the end of a decision, expiry).

Each other step that changes a key holds its row lock (`ApiKey.objects.locked`) across the
Keycloak call. Two requests (or a request and the expiry job) acting on the same key
therefore take turns. Keycloak calls time out after KEYCLOAK_TIMEOUT seconds, so a lock
never waits longer than that. Which status allows which action is written once, on the
model (`ApiKey.require`); what the key's client should be, in `apikeys/keycloak/desired.py`.
`crash_point(...)` marks each boundary between a Keycloak change and the database step
that records it, for the tests (`apikeys/crash_points.py`).
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, Q
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from apikeys.crash_points import crash_point
from apikeys.credentials import fingerprints, networks, workloads
from apikeys.credentials.public_keys import AcceptedKey
from apikeys.credentials.secret_format import new_secret
from apikeys.keycloak import client as keycloak
from apikeys.keycloak import desired
from apikeys.keycloak.client import (
    KeycloakFailure,
    KeycloakRejected,
    KeycloakUnavailable,
)
from apikeys.keycloak.key_clients import KeyClient, Representation
from apikeys.models import (
    INTENTS,
    LIVE_STATUSES,
    Api,
    ApiKey,
    AuditEntry,
    KeyStatus,
    Permission,
    PublicKey,
    RegistrationToken,
    Team,
    UnknownPermission,
    User,
    WorkloadIssuer,
    WrongState,
)
from apikeys.operations import notifications

log = logging.getLogger(__name__)


# How the reason of a suspension for an exposed secret starts (apikeys/operations/leaks.py): a
# rotation by the owner lifts that suspension, since it removes the cause.
EXPOSED = "Its secret was found exposed"

# Why a key was suspended because of what was done to its client in Keycloak, outside the
# portal (an operator's restrictive action): reconcile and rotate find it out.
CLIENT_DISABLED = (
    "Its client was disabled in Keycloak, outside the portal. An administrator can reinstate it."
)
CLIENT_DELETED = (
    "Its client was deleted in Keycloak, outside the portal. Rotate its secret to make a new "
    "client; an administrator then decides whether to reinstate it."
)
CLIENT_DELETED_SIGNED = (
    "Its client was deleted in Keycloak, outside the portal. Send its public keys to Keycloak "
    "again to make a new client; an administrator then decides whether to reinstate it."
)


CLIENT_DELETED_WORKLOAD = (
    "Its client was deleted in Keycloak, outside the portal. Send the key to Keycloak again to "
    "make a new client; an administrator then decides whether to reinstate it."
)


def client_deleted(key: ApiKey) -> str:
    """Why a key whose client was deleted outside the portal is suspended, and what to do."""
    if key.uses_workload:
        return CLIENT_DELETED_WORKLOAD
    return CLIENT_DELETED if key.uses_secret else CLIENT_DELETED_SIGNED


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


class AlreadyRotated(Exception):
    """The same rotate form (or Idempotency-Key) was sent before: it rotated the key then."""

    def __init__(self, key: ApiKey) -> None:
        super().__init__(
            f"This request already rotated the secret of {key.client_id}: the new secret was "
            "in the answer to it. If it was lost, rotate the key again."
        )
        self.key = key


@dataclass(frozen=True)
class Revealed:
    """A key together with the secret that is shown once and then forgotten.

    A private_key_jwt key has none (""): its owner holds the private key.
    """

    key: ApiKey
    secret: str = field(repr=False)


@dataclass(frozen=True)
class KeyOrder:
    """A key to issue, as its owner asked for it (the create form, the API's request body).

    Built once by the door (`KeyForm.order()`), checked there, and carried as it is to the
    record (`_reserve`). `public_keys` are a private_key_jwt key's, already checked
    (apikeys/credentials/public_keys.py); `request_id` makes a resubmitted form or a retried
    `Idempotency-Key` find the key it made instead of making another.
    """

    api: Api
    name: str
    lifetime_days: int
    description: str = ""
    justification: str = ""
    credential: str = ApiKey.Credential.SECRET
    public_keys: Sequence[AcceptedKey] = ()
    jwks_url: str = ""
    request_id: uuid.UUID | None = None
    team: Team | None = None  # the team that will hold it; None: its maker's personal key
    networks: Sequence[str] = ()  # normalised CIDR ranges (apikeys/credentials/networks.py)
    # The API's permissions it gets, by name; None: those the API gives new keys by default.
    permissions: Sequence[str] | None = None
    # Registered by software (apikeys/operations/registration.py): with this registration
    # token, managed with the registration access token of this digest; what it said of itself.
    registered_with: RegistrationToken | None = None
    registration_access_digest: str = ""
    software_metadata: dict[str, Any] = field(default_factory=dict)
    requires_dpop: bool = False  # tokens bound to a key the application holds (RFC 9449)
    # A workload identity key's trusted issuer and subject (credential "workload").
    workload_issuer: WorkloadIssuer | None = None
    workload_subject: str = ""


@sensitive_variables()  # every local may hold the secret: none goes in an error report
def issue_key(owner: User, order: KeyOrder, *, ip_address: str | None = None) -> Revealed:
    """Make a key in three steps: reserve the record, create the client, mark it live.

    A private_key_jwt key comes with the public keys its owner gave, or the URL of their
    JWKS; its client is still made in one POST.

    If Keycloak fails, the half-made key is taken apart again (client, then record), so the
    customer is left with nothing rather than with something broken. Only when Keycloak may
    have made the client and cannot be asked does the record stay unfinished; the key list
    shows it so, and the customer can finish or discard it.
    """
    return complete_key(reserve_key(owner, order), actor=owner, ip_address=ip_address)


def reserve_key(owner: User, order: KeyOrder) -> ApiKey:
    """Step 1 of `issue_key`, for a caller that reserves under a lock of its own (software
    registering under its registration token's): the order checked, the record made."""
    order, chosen = _check_order(order)
    key = _reserve(owner, order, chosen)
    crash_point("issue:reserved")
    return key


@sensitive_variables()  # every local may hold the secret: none goes in an error report
def complete_key(key: ApiKey, *, actor: User, ip_address: str | None = None) -> Revealed:
    """Steps 2 and 3 of `issue_key`; if Keycloak fails, the key is taken apart again."""
    try:
        return finish_key(key, actor=actor, ip_address=ip_address)
    except KeycloakFailure as error:
        log.warning("Issuing %s failed: %s", key.client_id, error)
        _take_apart(key, error)
        raise KeyNotIssued(
            f"{error.for_people} No key was created; please try again in a minute."
        ) from error


def _check_order(order: KeyOrder) -> tuple[KeyOrder, list[Permission]]:
    """The order with its API and workload issuer as they are now (an admin may have just
    retired the API, or changed what needs approval): the key is made from these, and its
    status decided by them; and the permissions the key will have."""
    api = Api.objects.now_with_permissions(order.api.pk)
    if api.retired_at is not None:
        raise KeyNotIssued(f"{api.name} is retired and takes no new keys.")
    order = replace(order, api=api, workload_issuer=_issuer_now(order))
    chosen = _chosen_permissions(api, order)
    waits = [p.name for p in chosen if p.requires_approval]
    if order.workload_issuer is not None and order.workload_issuer.keys_need_approval:
        waits.append(f"a key for a workload of {order.workload_issuer.name}")
    if (api.requires_approval or waits) and not order.justification.strip():
        what = api.name if api.requires_approval else ", ".join(waits)
        raise KeyNotIssued(f"{what} needs an administrator's approval: say why you need it.")
    if order.networks and not settings.KEYCLOAK_NETWORK_RANGES:
        raise KeyNotIssued(
            "This portal's Keycloak does not enforce network ranges: leave them out."
        )
    if api.requires_networks and not order.networks:
        raise KeyNotIssued(f"Keys for {api.name} must name the networks they are used from.")
    signed = order.credential == ApiKey.Credential.SIGNED_JWT
    if signed and not (order.public_keys or order.jwks_url):
        raise KeyNotIssued("A key signed with a private key needs a public key or a JWKS URL.")
    _check_workload(order)
    return order, chosen


def _issuer_now(order: KeyOrder) -> WorkloadIssuer | None:
    if order.workload_issuer is None:
        return None
    issuer = WorkloadIssuer.objects.filter(pk=order.workload_issuer.pk).first()
    if issuer is None:
        raise KeyNotIssued("That workload issuer is no longer trusted here.")
    return issuer


def _check_workload(order: KeyOrder) -> None:
    """A workload identity key names a trusted issuer and a subject; others name neither."""
    workload = order.credential == ApiKey.Credential.WORKLOAD
    if not workload:
        if order.workload_issuer is not None or order.workload_subject:
            raise KeyNotIssued("Only a workload identity key names a workload issuer and subject.")
        return
    if order.workload_issuer is None or not order.workload_subject:
        raise KeyNotIssued("A workload identity key needs a trusted issuer and a subject.")
    try:
        workloads.check_subject(order.workload_subject)
    except ValueError as error:
        raise KeyNotIssued(str(error)) from None


def _chosen_permissions(api: Api, order: KeyOrder) -> list[Permission]:
    try:
        return api.permissions_called(order.permissions)
    except UnknownPermission as unknown:
        raise KeyNotIssued(str(unknown)) from None


def _take_apart(key: ApiKey, error: KeycloakFailure) -> None:
    """After a failed step 2: remove the half-made key, or say it stays unfinished."""
    if not (isinstance(error, KeycloakUnavailable) and error.reached):
        # Keycloak refused the client, or never heard of it: nothing to undo there.
        ApiKey.objects.filter(pk=key.pk, status=ApiKey.Status.UNFINISHED).delete()
        return
    # The request got to Keycloak, so the client may exist: look, and remove it.
    try:
        discard_key(key, actor=None)
    except KeycloakFailure as cleanup_error:
        log.warning("%s stays unfinished: %s", key.client_id, cleanup_error)
        raise KeyNotIssued(
            f"{error.for_people} The key was not finished: it is listed as "
            "unfinished, and you can finish or discard it."
        ) from error


def _reserve(owner: User, order: KeyOrder, chosen: list[Permission]) -> ApiKey:
    """Step 1: the record (its permissions, `chosen`, and its public keys), with its clientId
    fixed, within the quota."""
    with transaction.atomic():
        # Lock the owner's row, so concurrent requests of one owner count their keys in turn,
        # and the team's, so its members' requests count the team's keys in turn.
        User.objects.select_for_update().filter(pk=owner.pk).exists()
        if order.team is not None:
            Team.objects.select_for_update().filter(pk=order.team.pk).exists()
        if made := owner.api_keys.made_by_request(order.request_id):
            if made.team is not None and not made.team.memberships.filter(user=owner).exists():
                raise KeyNotIssued("This request was sent before, for a team you are no longer in.")
            raise AlreadySubmitted(made)
        _check_quota(owner, order.team, order.name)
        if order.workload_issuer is not None:
            _check_workload_free(order.workload_issuer, order)
        # No savepoint: an IntegrityError ends the whole transaction with NameTaken anyway.
        try:
            key = ApiKey.objects.create(
                owner=owner,
                team=order.team,
                api=order.api,
                name=order.name,
                description=order.description,
                justification=order.justification,
                expires_at=timezone.now() + timedelta(days=order.lifetime_days),
                request_id=order.request_id,
                credential=order.credential,
                jwks_url=order.jwks_url,
                networks=networks.parse(order.networks),
                registered_with=order.registered_with,
                registration_access_digest=order.registration_access_digest,
                software_metadata=dict(order.software_metadata),
                requires_dpop=order.requires_dpop,
                workload_issuer=order.workload_issuer,
                workload_subject=order.workload_subject,
            )
        except IntegrityError as error:  # a unique constraint, if a check above was raced
            if "workload" in str(error):
                raise KeyNotIssued(workloads.TAKEN) from error
            raise NameTaken(f"{_holder(order.team)} a key called “{order.name}”.") from error
        if order.public_keys:
            record_public_keys(key, order.public_keys)
        key.permissions.add(*chosen)
        return key.knowing_permissions(chosen)


def _check_workload_free(issuer: WorkloadIssuer, order: KeyOrder) -> None:
    """The issuer is still trusted (its row locked: an administrator removing it waits), and
    no live key is bound to the workload: Keycloak would not know which key it is."""
    if not WorkloadIssuer.objects.select_for_update().filter(pk=issuer.pk).exists():
        raise KeyNotIssued("That workload issuer is no longer trusted here.")
    if ApiKey.objects.filter(
        workload_issuer=issuer, workload_subject=order.workload_subject, status__in=LIVE_STATUSES
    ).exists():
        raise KeyNotIssued(workloads.TAKEN)


def _holder(team: Team | None) -> str:
    return f"The team {team.name} already has" if team is not None else "You already have"


def _check_quota(owner: User, team: Team | None, name: str) -> None:
    """The space's live keys and their names (a team's, or the owner's personal ones), and
    the keys the space and the owner made today (under their locks): two counts."""
    live = Q(status__in=LIVE_STATUSES)
    counts = ApiKey.objects.held_by(owner, team).aggregate(
        live=Count("pk", filter=live),
        named=Count("pk", filter=live & Q(name=name)),
        today=Count("pk", filter=Q(created_at__gt=timezone.now() - timedelta(days=1))),
    )
    quota = team.key_quota if team is not None else settings.MAX_LIVE_KEYS_PER_USER
    holder = _holder(team)
    if counts["live"] >= quota:
        raise QuotaExceeded(
            f"{holder} {quota} live keys, the most allowed. Revoke one you no longer use, "
            "then create the new one."
        )
    if counts["named"]:
        raise NameTaken(f"{holder} a key called “{name}”. Choose another name.")
    made_today = counts["today"]
    if team is not None:  # a person's own pace counts too, whichever space they make keys in
        made_today = max(made_today, owner.api_keys.filter(created_at__gt=_day_ago()).count())
    if made_today >= settings.MAX_KEYS_MADE_PER_DAY:
        raise QuotaExceeded(
            f"{'The team' if team else 'You'} made {settings.MAX_KEYS_MADE_PER_DAY} keys in the "
            "last 24 hours, the "
            "most allowed in a day (revoked ones count too). Try again tomorrow."
        )


def _day_ago() -> datetime:
    return timezone.now() - timedelta(days=1)


@sensitive_variables()  # every local may hold the secret: none goes in an error report
def finish_key(key: ApiKey, *, actor: User, ip_address: str | None = None) -> Revealed:
    """Steps 2 and 3: create the client with a new secret, then mark the key live.

    Also the retry of an unfinished key. If an earlier attempt made the client and died
    before step 3, the create answers 409. That client is then taken over with the new
    secret, because nobody ever saw the old one. No second client is made.

    The record of step 3 is written while Keycloak makes the client (the client's UUID is
    the portal's choice), and committed only once Keycloak has answered: if it fails, the
    transaction rolls back and the key is unfinished as before. Issuing costs the POST and
    the steps before it, not the writes after it too.
    """
    with transaction.atomic():
        key = ApiKey.objects.locked_as_known(key)  # just reserved: not read again
        key.require("finish")
        if key.api.retired_at is not None:
            raise WrongState(f"{key.api.name} is retired and takes no new keys: discard this one.")
        now = timezone.now()
        secret = new_secret() if key.uses_secret else None
        client = desired.key_client(key, now=now, secret=secret)
        conn = keycloak.portal_connection()
        creating = keycloak.start_create_client(conn, client)
        try:
            if secret is not None:  # its first: an attempt that died recorded none
                fingerprints.record_first(key, secret, now=now)
            status = ApiKey.Status.PENDING if key.needs_approval else ApiKey.Status.ACTIVE
            key.set_status(status, keycloak_id=client["id"])
            AuditEntry.record(key, AuditEntry.Action.CREATED, actor=actor, ip_address=ip_address)
        finally:
            creating.exception()  # waits for Keycloak, whatever the writes did
        client_uuid = _created_or_taken_over(conn, key, client, creating)
        crash_point("issue:client-created")
        if client_uuid != key.keycloak_id:  # an earlier attempt's client, with an id of its own
            key.keycloak_id = client_uuid
            key.save(update_fields=["keycloak_id"])
    if key.status == ApiKey.Status.PENDING:
        notifications.request_arrived(key)
    return Revealed(key, secret or "")


def _created_or_taken_over(
    conn: keycloak.Connection, key: ApiKey, client: Representation, creating: Future[str]
) -> str:
    """The UUID of the key's client: the one just made, or the one an earlier attempt made
    (Keycloak answered 409), given the new representation."""
    try:
        return creating.result()
    except keycloak.AlreadyExists:
        made = _own_client(conn, key)
        if made is None:  # deleted again since the 409: let the caller retry
            raise
        keycloak.update_client(conn, made.id, client)
        return made.id


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
            keycloak.delete_client(conn, client.id)
            crash_point("discard:client-deleted")
        AuditEntry.record(
            key, AuditEntry.Action.DISCARDED, actor=actor, ip_address=ip_address, key_going=True
        )
        key.delete()


def set_networks(
    key: ApiKey, ranges: Sequence[str], *, actor: User, ip_address: str | None = None
) -> ApiKey:
    """Limit the key to the network ranges `ranges` (normalised; empty: anywhere).

    Recorded and given to Keycloak in one transaction under the key's lock: if Keycloak
    fails, nothing changed. Takes effect at the next token request. Audited, and sent as
    `key.updated`.
    """
    if ranges and not settings.KEYCLOAK_NETWORK_RANGES:
        raise WrongState("This portal's Keycloak does not enforce network ranges.")
    with transaction.atomic():
        key = ApiKey.objects.locked(key.pk)
        key.require("change_networks")
        if key.api.requires_networks and not ranges:
            raise WrongState(f"Keys for {key.api.name} must name the networks they are used from.")
        was = list(key.networks)
        key.networks = networks.parse(ranges)  # normalised, whoever calls
        key.save(update_fields=["networks"])
        now_allowed = ", ".join(key.networks) or "anywhere"
        AuditEntry.record(
            key,
            AuditEntry.Action.NETWORKS_CHANGED,
            actor=actor,
            ip_address=ip_address,
            reason=f"From {', '.join(was) or 'anywhere'} to {now_allowed}.",
        )
        if key.keycloak_id:
            keycloak.update_client(
                keycloak.portal_connection(), key.keycloak_id, desired.networks_change(key)
            )
    return key


def set_dpop(key: ApiKey, required: bool, *, actor: User, ip_address: str | None = None) -> ApiKey:
    """Require DPoP-bound tokens of the key (RFC 9449), or stop requiring them.

    Recorded and given to Keycloak in one transaction under the key's lock: if Keycloak
    fails, nothing changed. Takes effect at the next token request (tokens already issued
    stay as they were until they expire). Audited, and sent as `key.updated`.
    """
    with transaction.atomic():
        key = ApiKey.objects.locked(key.pk)
        key.require("change_dpop")
        if key.requires_dpop == required:
            return key
        key.requires_dpop = required
        key.save(update_fields=["requires_dpop"])
        now_required = "required" if required else "no longer required"
        AuditEntry.record(
            key,
            AuditEntry.Action.DPOP_CHANGED,
            actor=actor,
            ip_address=ip_address,
            reason=f"DPoP-bound tokens (RFC 9449) {now_required}.",
        )
        if key.keycloak_id:
            keycloak.update_client(
                keycloak.portal_connection(), key.keycloak_id, desired.dpop_change(key)
            )
    return key


def rename_key(
    key: ApiKey, *, name: str, description: str, actor: User, ip_address: str | None = None
) -> ApiKey:
    """Give a key another name and description (the portal's own: Keycloak never sees them)."""
    with transaction.atomic():
        key = ApiKey.objects.locked(key.pk)
        taken = key.siblings().live().filter(name=name)
        if key.is_live and taken.exists():
            raise NameTaken(f"{_holder(key.team)} a key with this name.")
        was = key.name
        key.name, key.description, key.recovered_at = name, description, None
        try:
            with transaction.atomic():
                key.save(update_fields=["name", "description", "recovered_at"])
        except IntegrityError:  # another key took the name at the same moment
            raise NameTaken(f"{_holder(key.team)} a key with this name.") from None
        reason = f"Renamed from “{was}”." if was != name else "Description changed."
        AuditEntry.record(
            key, AuditEntry.Action.RENAMED, actor=actor, ip_address=ip_address, reason=reason
        )
    return key


@sensitive_variables()  # every local may hold the secret: none goes in an error report
def rotate_secret(
    key: ApiKey,
    *,
    actor: User | None,
    ip_address: str | None = None,
    grace: timedelta = timedelta(0),
    request_id: uuid.UUID | None = None,
) -> Revealed:
    """Replace the key's secret in Keycloak; the old one stops at once, or after `grace`.

    One remote step, then the record. With a grace period the current secret is read from
    Keycloak and put in its rotated-secret slot, with its end, in the same PUT that sets
    the new secret; both then get tokens until the end (Keycloak 26.7.3, the
    client-secret-rotation feature and the portal's secret-rotation policy: checked). The
    new secret keeps the portal's format, which Keycloak's own rotate endpoint would not.
    Without grace the slot is emptied in that same PUT, so a secret still in an earlier
    grace period stops too. If the process dies before the record, the customer never saw
    the new secret and rotates again.

    If the key's client has vanished from Keycloak, it is made again here, with the new
    secret (no grace: the old secret went with the client): the one case where recreating
    is safe, since the customer sees the secret it carries. But a client deleted outside
    the portal is an operator's restrictive action: an active key is suspended (audited)
    and its new client made disabled, for an administrator to reinstate.

    `request_id`, the rotate form's one-time token (or one made from an Idempotency-Key):
    sent again, it rotates nothing and raises AlreadyRotated, so a reload of the page that
    showed the new secret does not kill that secret. Checked under the key's lock: of two
    racing sends, the second waits and then finds the first's.
    """
    with transaction.atomic():
        key = ApiKey.objects.locked(key.pk)
        if request_id is not None and key.rotation_request_id == request_id:
            raise AlreadyRotated(key)
        key.require("rotate")
        if key.uses_workload:
            raise WrongState(
                f"{key.client_id} authenticates with its workload's tokens: it has no secret."
            )
        if not key.uses_secret:
            raise WrongState(f"{key.client_id} signs with a private key: add a new public key.")
        grace = check_grace(key, grace)
        now = timezone.now()
        secret = new_secret()
        rotation = _Rotation(
            until=min(now + grace, key.expires_at) if grace else None,
            back=_back_from_exposure(key),
            request_id=request_id,
        )
        try:
            _set_secret(key, secret, rotation, now=now)
        except keycloak.NotFound:
            _remake_secret_client(key, secret, rotation, now=now)
        crash_point("rotate:secret-set")
        _record_rotation(key, secret, rotation, now=now, actor=actor, ip_address=ip_address)
    return Revealed(key, secret)


@dataclass
class _Rotation:
    """What a rotation does besides the new secret: the previous one's end (None: now), the
    status it gives back (a key suspended for an exposed secret), why (for the audit), the
    one-time token of the request that asked for it."""

    until: datetime | None
    back: KeyStatus | None
    reason: str = ""
    request_id: uuid.UUID | None = None


@sensitive_variables()  # the secrets
def _set_secret(key: ApiKey, secret: str, rotation: _Rotation, *, now: datetime) -> None:
    """One PUT: the new secret, and the previous one kept until its end or dropped now."""
    conn = keycloak.portal_connection()
    previous = None
    if rotation.until is not None:
        previous = keycloak.get_client_secret(conn, key.keycloak_id)
    change = desired.new_secret(key, secret, now=now, previous=previous, until=rotation.until)
    if rotation.back is not None:
        change |= desired.enabling(key, now)
    keycloak.update_client(conn, key.keycloak_id, change)


@sensitive_variables()  # the secret
def _remake_secret_client(key: ApiKey, secret: str, rotation: _Rotation, *, now: datetime) -> None:
    """The client vanished: made again with the new secret, disabled if it was deleted
    under an active key (an operator's restrictive action, which suspends it)."""
    if key.status == ApiKey.Status.ACTIVE:
        _suspend_for_deleted_client(key, CLIENT_DELETED)
    client = desired.key_client(key, now=now, secret=secret)
    key.keycloak_id = keycloak.create_client(keycloak.portal_connection(), client)
    rotation.reason = "Its Keycloak client had vanished and was made again."
    rotation.until = rotation.back = None


@sensitive_variables()  # the secret
def _record_rotation(
    key: ApiKey,
    secret: str,
    rotation: _Rotation,
    *,
    now: datetime,
    actor: User | None,
    ip_address: str | None,
) -> None:
    """The record of a rotation Keycloak has carried out: its fingerprint, times, audit."""
    fingerprints.record_issued(key, secret, now=now)
    key.secret_rotated_at = now
    key.previous_secret_until = rotation.until
    key.secret_exposed_at = None
    key.client_missing_since = None
    key.rotation_request_id = rotation.request_id
    key.save(
        update_fields=[
            "secret_rotated_at",
            "previous_secret_until",
            "secret_exposed_at",
            "keycloak_id",
            "client_missing_since",
            "rotation_request_id",
        ]
    )
    reason = rotation.reason
    if rotation.until is not None:
        reason = f"The previous secret works until {rotation.until:%Y-%m-%d %H:%M:%S} UTC."
    AuditEntry.record(
        key, AuditEntry.Action.ROTATED, actor=actor, ip_address=ip_address, reason=reason
    )
    if rotation.back is not None:
        key.set_status(rotation.back, reason="")
        reason = "Its exposed secret was replaced."
        AuditEntry.record(key, AuditEntry.Action.REINSTATED, actor=None, reason=reason)


def _suspend_for_deleted_client(key: ApiKey, reason: str) -> None:
    """An active key whose client was deleted outside the portal: suspended, audited."""
    key.set_status(ApiKey.Status.SUSPENDED, reason=reason)
    AuditEntry.record(key, AuditEntry.Action.SUSPENDED, actor=None, reason=reason)


def _back_from_exposure(key: ApiKey) -> KeyStatus | None:
    """The status a rotation gives back to a key the portal suspended for an exposed secret.

    Only that suspension: the rotation removes its cause. One an administrator decided
    stays, as does a key past its expiry or of a disabled owner.
    """
    exposed = key.secret_exposed_at is not None and key.status_reason.startswith(EXPOSED)
    if key.status != ApiKey.Status.SUSPENDED or not exposed:
        return None
    if key.expires_at <= timezone.now() or not key.holder_active:
        return None
    return ApiKey.Status.ACTIVE


def check_grace(key: ApiKey, grace: timedelta) -> timedelta:
    """The grace period asked for, if the key's API allows it; ValueError says the limit."""
    limit = timedelta(hours=key.api.max_rotation_grace_hours)
    if grace < timedelta(0):
        raise ValueError("A grace period cannot be negative.")
    if grace and key.secret_exposed_at is not None:
        raise ValueError(
            "The current secret was found exposed: it must stop now, with no grace period."
        )
    if grace > limit:
        raise ValueError(
            f"Keys for {key.api.name} allow a grace period of at most "
            f"{key.api.max_rotation_grace_hours} hours."
        )
    return grace


def end_grace(
    key: ApiKey, *, actor: User | None, ip_address: str | None = None, reason: str = ""
) -> ApiKey:
    """Stop the previous secret now, before its grace period ends: the record, then Keycloak.

    The end is recorded (and audited) first, so that whatever fails next the record says
    the previous secret must not work: if Keycloak cannot be told now, the caller hears so,
    and reconcile deletes the rotated secret, which Keycloak still holds past the recorded
    end (`reconcile._check_previous_secret`).
    """
    key = record_grace_end(key, actor=actor, ip_address=ip_address, reason=reason)
    crash_point("end-grace:recorded")
    stop_previous_secret(key)
    return key


def stop_previous_secret(key: ApiKey) -> None:
    """Step 2 of `end_grace`: Keycloak forgets the previous secret (none left is fine)."""
    with contextlib.suppress(keycloak.NotFound):
        keycloak.delete_rotated_secret(keycloak.portal_connection(), key.keycloak_id)


def record_grace_end(
    key: ApiKey, *, actor: User | None, ip_address: str | None = None, reason: str = ""
) -> ApiKey:
    """Step 1 of `end_grace`: the previous secret's end, recorded and audited."""
    with transaction.atomic():
        key = ApiKey.objects.locked(key.pk)
        key.require("end_grace")
        now = timezone.now()
        if not key.previous_secret_works(now):
            raise WrongState(f"The previous secret of {key.client_id} already stopped working.")
        key.previous_secret_until = None
        key.save(update_fields=["previous_secret_until"])
        AuditEntry.record(
            key,
            AuditEntry.Action.GRACE_ENDED,
            actor=actor,
            ip_address=ip_address,
            reason=reason or "Ended early: only the current secret gets tokens now.",
        )
    return key


def add_public_keys(
    key: ApiKey, public_keys: Sequence[AcceptedKey], *, actor: User, ip_address: str | None = None
) -> ApiKey:
    """Add public keys to a private_key_jwt key: Keycloak takes assertions signed by any.

    The records first (committed, audited), then Keycloak is given the key's whole JWKS as
    the records hold it. If Keycloak refuses or cannot be reached, the keys are taken out
    of the records again and nothing is added; if the process dies in between, reconcile
    gives Keycloak what the records hold. Keycloak never trusts a key the records lack,
    except for the moment between a lost answer and that cleanup.
    """
    with transaction.atomic():
        key = ApiKey.objects.locked(key.pk)
        _require_inline_keys(key)
        added = record_public_keys(key, public_keys)
        for public_key in added:
            AuditEntry.record(
                key,
                AuditEntry.Action.PUBLIC_KEY_ADDED,
                actor=actor,
                ip_address=ip_address,
                reason=f"{public_key.summary}, kid {public_key.kid}",
            )
    crash_point("public-key:recorded")
    try:
        return _push_public_keys(key)
    except KeycloakFailure:
        with transaction.atomic():
            ApiKey.objects.locked(key.pk)
            PublicKey.objects.filter(pk__in=[p.pk for p in added]).delete()
            for public_key in added:
                AuditEntry.record(
                    key,
                    AuditEntry.Action.PUBLIC_KEY_REMOVED,
                    actor=None,
                    reason=f"kid {public_key.kid}: Keycloak could not be given it.",
                )
        raise


def remove_public_key(
    key: ApiKey, kid: str, *, actor: User, ip_address: str | None = None
) -> ApiKey:
    """Remove one public key: the record first (committed, audited), then Keycloak.

    In this order a failure leaves the key less usable, never more: the record no longer
    lists the key, and reconcile (or "send the keys again") removes it from Keycloak too,
    where a removed key stops at once (checked on 26.7.3). The JWKS sent is computed under
    the key's lock from the records, so two removals at once both hold. The last key cannot
    be removed.
    """
    with transaction.atomic():
        key = ApiKey.objects.locked(key.pk)
        _require_inline_keys(key)
        public_key = key.public_keys.filter(kid=kid).first()
        if public_key is None:
            raise WrongState(f"{key.client_id} has no public key with kid {kid}.")
        if key.public_keys.count() == 1:
            raise WrongState("This is the key's only public key: add its successor first.")
        public_key.delete()
        AuditEntry.record(
            key,
            AuditEntry.Action.PUBLIC_KEY_REMOVED,
            actor=actor,
            ip_address=ip_address,
            reason=f"{public_key.summary}, kid {kid}",
        )
    crash_point("public-key:removed")
    return _push_public_keys(key)


def refresh_public_keys(key: ApiKey, *, actor: User, ip_address: str | None = None) -> ApiKey:
    """Send the key's public keys to Keycloak again; for a JWKS URL, make it read it again.

    Keycloak keeps the keys it read from a JWKS URL until an assertion names a kid it does
    not know, so a key removed from the URL still works there. Updating the client drops
    what it kept (checked on 26.7.3): the next assertion makes it read the URL afresh.

    A client that has vanished from Keycloak is made again, from the records: the owner
    holds the private key, so nothing new needs showing. As with a secret key's rotation,
    a client deleted outside the portal is an operator's restrictive action: an active key
    is suspended (audited) and its new client made disabled.
    """
    with transaction.atomic():
        key = ApiKey.objects.locked(key.pk)
        key.require("change_public_keys")
        if key.uses_secret:
            raise WrongState(f"{key.client_id} uses a secret, not public keys.")
        AuditEntry.record(key, AuditEntry.Action.JWKS_REFRESHED, actor=actor, ip_address=ip_address)
    try:
        return _push_public_keys(key)
    except keycloak.NotFound:
        return _remake_signed_client(key)


def _push_public_keys(key: ApiKey) -> ApiKey:
    """Give Keycloak the key's public keys as the records hold them, under the key's lock."""
    with transaction.atomic():
        key = ApiKey.objects.locked(key.pk)
        keycloak.update_client(
            keycloak.portal_connection(),
            key.keycloak_id,
            desired.public_keys_of(key),
        )
    return key


def _remake_signed_client(key: ApiKey) -> ApiKey:
    with transaction.atomic():
        key = ApiKey.objects.locked(key.pk)
        if key.status == ApiKey.Status.ACTIVE:
            _suspend_for_deleted_client(key, client_deleted(key))
        client = desired.key_client(key, now=timezone.now())
        key.keycloak_id = keycloak.create_client(keycloak.portal_connection(), client)
        key.client_missing_since = None
        key.save(update_fields=["keycloak_id", "client_missing_since"])
        reason = "Its Keycloak client had vanished and was made again."
        AuditEntry.record(key, AuditEntry.Action.REPAIRED, actor=None, reason=reason)
    return key


def _require_inline_keys(key: ApiKey) -> None:
    key.require("change_public_keys")
    if key.uses_secret:
        raise WrongState(f"{key.client_id} uses a secret, not public keys.")
    if key.uses_workload:
        raise WrongState(f"{key.client_id} uses its workload's tokens, not public keys.")
    if key.jwks_url:
        raise WrongState(
            f"{key.client_id} reads its public keys from {key.jwks_url}: change them there."
        )


def record_public_keys(key: ApiKey, public_keys: Sequence[AcceptedKey]) -> list[PublicKey]:
    """The key's PublicKey records for `public_keys`; refused beyond the limit or twice."""
    have = list(key.public_keys.all())
    if len(have) + len(public_keys) > settings.MAX_PUBLIC_KEYS_PER_KEY:
        raise WrongState(
            f"A key holds at most {settings.MAX_PUBLIC_KEYS_PER_KEY} public keys: remove one first."
        )
    kids = {p.kid for p in have}
    thumbprints = {p.thumbprint for p in have}
    added: list[PublicKey] = []
    for public_key in public_keys:
        if public_key.thumbprint in thumbprints:
            raise WrongState(f"The key already has this public key (kid {public_key.kid}).")
        if public_key.kid in kids:
            raise WrongState(f"The key already has a public key with kid {public_key.kid}.")
        kids.add(public_key.kid)
        thumbprints.add(public_key.thumbprint)
        added.append(
            PublicKey.objects.create(
                key=key,
                kid=public_key.kid,
                thumbprint=public_key.thumbprint,
                jwk=public_key.jwk,
                summary=public_key.summary,
            )
        )
    return added


def revoke_key(
    key: ApiKey,
    *,
    actor: User | None,
    ip_address: str | None = None,
    reason: str = "",
    notify: bool = True,
) -> ApiKey:
    """Record the revocation, delete the key's client (and its service account), then end it.

    The record stays, for history. A client that is already gone counts as deleted, since
    an earlier attempt may have died between the steps.
    """
    key = decide(key, action="revoke", actor=actor, ip_address=ip_address, reason=reason)
    return carry_out(key, notify=notify)


def reject_key(key: ApiKey, *, actor: User, ip_address: str | None = None, reason: str) -> ApiKey:
    """Record the rejection, delete the pending key's client, then end it, with the reason."""
    key = decide(key, action="reject", actor=actor, ip_address=ip_address, reason=reason)
    return carry_out(key)


def suspend_key(
    key: ApiKey,
    *,
    actor: User | None,
    ip_address: str | None = None,
    reason: str,
    notify: bool = True,
) -> ApiKey:
    """Record the suspension, disable the key's client (it stops at once), then end the step.

    A person suspending a key already suspended (for being unused, an exposed secret, its
    owner disabled) makes it theirs: `hold_suspension`.
    """
    if actor is not None and ApiKey.objects.get(pk=key.pk).status == ApiKey.Status.SUSPENDED:
        return hold_suspension(key, actor=actor, ip_address=ip_address, reason=reason)
    key = decide(key, action="suspend", actor=actor, ip_address=ip_address, reason=reason)
    return carry_out(key, notify=notify)


def hold_suspension(
    key: ApiKey, *, actor: User, ip_address: str | None = None, reason: str
) -> ApiKey:
    """An administrator's own suspension of a key already suspended for another reason: the
    reason becomes theirs, so what lifts an automatic suspension (the owner's reinstatement
    of a dormant key, a rotation of an exposed secret, the owner enabled again) no longer
    does. The client is disabled already; nothing changes in Keycloak."""
    with transaction.atomic():
        key = ApiKey.objects.locked(key.pk)
        key.require("hold")
        key.set_status(ApiKey.Status.SUSPENDED, reason=reason)
        AuditEntry.record(
            key, AuditEntry.Action.SUSPENDED, actor=actor, ip_address=ip_address, reason=reason
        )
    notifications.decision(key, AuditEntry.Action.SUSPENDED, reason)
    return key


# For each restrictive action: the status that records the decision, the audit entry that
# records who took it and why, and the status it ends in.
_DECISIONS = {
    "revoke": (ApiKey.Status.REVOKING, AuditEntry.Action.REVOKED, ApiKey.Status.REVOKED),
    "reject": (ApiKey.Status.REJECTING, AuditEntry.Action.REJECTED, ApiKey.Status.REJECTED),
    "suspend": (ApiKey.Status.SUSPENDING, AuditEntry.Action.SUSPENDED, ApiKey.Status.SUSPENDED),
}


def decide(
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
        if key.status == deciding and (actor is None or reason == key.status_reason):
            return key  # decided before (a retry): only Keycloak's step and the end are left
        # A person deciding while an earlier decision is carried out: theirs is recorded too,
        # and its reason is the key's (an automatic one would otherwise be what lifts it).
        # A revocation overrides a suspension still being carried out: the stronger wins.
        key.set_status(deciding, reason=reason)
        AuditEntry.record(key, audit_action, actor=actor, ip_address=ip_address, reason=reason)
    return key


def carry_out(key: ApiKey, *, notify: bool = True) -> ApiKey:
    """Steps 2 and 3 of a recorded decision: tell Keycloak, then record the end, then mail.

    A client already gone counts as done: it cannot give tokens either way. Also what
    reconcile calls for decisions a crash or an outage left half done; a decision someone
    else completed meanwhile is left as it is. The owner is mailed unless it was their own
    action, or the caller mails them itself (`notify=False`). Runs without the key's row
    lock: the recorded decision already keeps every other action off the key.
    """
    if (action := INTENTS.get(ApiKey.Status(key.status))) is None:
        return key
    deciding, audit_action, final = _DECISIONS[action]
    conn = keycloak.portal_connection()
    try:
        if action == "suspend":
            keycloak.disable_client(conn, key.keycloak_id)
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
            key.set_status(final)
        else:
            _end(key, final)
        decided = key.audit_entries.filter(action=audit_action).first()
    if notify and (decided is None or decided.actor is None or decided.actor != key.owner):
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
        if not key.holder_active:
            raise WrongState(f"The owner of {key.client_id} is disabled in Keycloak.")
        _require_unexposed(key)
        now = timezone.now()
        key.expires_at += now - key.created_at
        keycloak.update_client(
            keycloak.portal_connection(),
            key.keycloak_id,
            desired.standing(key, now=now, status=ApiKey.Status.ACTIVE),
        )
        crash_point("approve:client-enabled")
        key.set_status(ApiKey.Status.ACTIVE, reason="", expires_at=key.expires_at)
        AuditEntry.record(key, AuditEntry.Action.APPROVED, actor=actor, ip_address=ip_address)
    notifications.decision(key, "approved")
    return key


def reinstate_key(
    key: ApiKey,
    *,
    actor: User | None,
    ip_address: str | None = None,
    reason: str = "",
    allowed: Callable[[ApiKey], bool] | None = None,
) -> ApiKey:
    """Enable a suspended key's client again, then mark it active.

    Refused if the key expired meanwhile or its owner is disabled: the client would be
    enabled for nobody who may use it. If the process dies between the steps, reconcile
    disables the client again (the record says suspended) and reinstating again finishes.
    """
    with transaction.atomic():
        key = ApiKey.objects.locked(key.pk)
        key.require("reinstate")
        if allowed is not None and not allowed(key):  # e.g. still the owner's to reinstate
            raise WrongState(f"{key.client_id} cannot be reinstated by you; ask an administrator.")
        now = timezone.now()
        if key.expires_at <= now:
            raise WrongState(f"{key.client_id} has expired; it cannot be reinstated.")
        if not key.holder_active:
            raise WrongState(f"The owner of {key.client_id} is disabled; it cannot be reinstated.")
        _require_unexposed(key)
        keycloak.update_client(
            keycloak.portal_connection(),
            key.keycloak_id,
            desired.standing(key, now=now, status=ApiKey.Status.ACTIVE),
        )
        crash_point("reinstate:client-enabled")
        key.set_status(ApiKey.Status.ACTIVE, reason=reason, reinstated_at=now)
        AuditEntry.record(
            key, AuditEntry.Action.REINSTATED, actor=actor, ip_address=ip_address, reason=reason
        )
    notifications.decision(key, "reinstated", reason)
    return key


def _require_unexposed(key: ApiKey) -> None:
    if key.secret_exposed_at is not None:
        raise WrongState(
            f"The secret of {key.client_id} was found exposed: its owner must rotate it first."
        )


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
            keycloak.disable_client(keycloak.portal_connection(), key.keycloak_id)
        except keycloak.NotFound:
            log.info("%s had no client left to disable", key.client_id)
        crash_point("expire:client-disabled")
        _end(key, ApiKey.Status.EXPIRED, now)
        reason = f"Reached its expiry date, {key.expires_at:%Y-%m-%d %H:%M} UTC."
        AuditEntry.record(key, AuditEntry.Action.EXPIRED, actor=None, reason=reason)
    return key


def _end(key: ApiKey, status: KeyStatus, when: datetime | None = None) -> None:
    """The key ends: its status, and its permission request, if one waits, with it."""
    when = when or timezone.now()
    key.set_status(status, ended_at=when)
    key.permission_requests.filter(decided_at__isnull=True).update(
        decided_at=when, reason=f"The key was {status.label.lower()}."
    )


def _own_client(conn: keycloak.Connection, key: ApiKey) -> KeyClient | None:
    """The client named by the key's clientId (None if there is none), if it is this key's."""
    client = keycloak.find_key_client(conn, key.client_id)
    if client is None:
        return None
    if not client.is_for(key.pk):
        # Not ours to take over or delete: someone made it by hand with our clientId.
        raise KeycloakRejected(409, f"client {key.client_id} exists but is not this key's")
    return client
