"""Rebuilding a key's record from its Keycloak client, after the portal's database went back.

A restore of the portal's database from a backup loses the records of every key made since;
their clients live on in Keycloak, in use by partners. Each client carries what the portal
needs to rebuild its record (`desired.key_client`): the marker, the key's id, its owner's
`sub`, its API's slug, this deployment's instance id and its expiry. Reconcile calls
`examine` on every client stamped with this portal's instance id that has no record, then:

- owner and API found: `recover` rebuilds the record as the client is: active if the client
  is enabled, suspended (an administrator decides) if it is disabled, expired if past its
  expiry. An owner who joined after the backup has no account here: if Keycloak has an
  enabled account with that `sub` (view-users), their portal account is rebuilt too (name
  and email as Keycloak has them; the rest at their next sign-in). The owner is mailed and
  asked to name the key (the record is named "Recovered …"); audited. The client itself is
  left as it is, except for what the portal keeps on every client (converged as any key's).
  A rotation's grace period the client still carries is kept until its end, and the
  secrets' fingerprints are recorded again (`adopt_rotation`).
- a team's key (`portal.team`): rebuilt into its team whatever became of the member who made
  it (a deleted maker is kept as a deactivated account). A team made after the backup is
  rebuilt too, with its id, no members and flagged for the administrators to appoint an
  owner (`Team.ownerless_since`); its keys keep working meanwhile.
- no such account in Keycloak, a disabled one, no API, or markers that disagree:
  `quarantine` disables the client and notes when on the client itself (so a second restore
  does not lose it); audited with its client id. A quarantined client whose owner is enabled
  again (or whose API is restored) is recovered by a later run, and enabled again if it was
  before. After QUARANTINE_DAYS it is deleted (`quarantine_over`).

Nothing here ever makes a client or a secret.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.views.decorators.debug import sensitive_variables

from apikeys.credentials import fingerprints
from apikeys.credentials.public_keys import AcceptedKey, Refused, from_jwks_text
from apikeys.keycloak import client as keycloak
from apikeys.keycloak import convergence, desired
from apikeys.keycloak.client import Connection
from apikeys.keycloak.key_clients import (
    REGISTRATION_DIGEST_ATTRIBUTE,
    WORKLOAD_ISSUER_ATTRIBUTE,
    WORKLOAD_SUBJECT_ATTRIBUTE,
    KeyClient,
)
from apikeys.models import (
    LIVE_STATUSES,
    Api,
    ApiKey,
    AuditEntry,
    Permission,
    RegistrationToken,
    Team,
    User,
    WorkloadIssuer,
)
from apikeys.operations import lifecycle, notifications

log = logging.getLogger(__name__)

DISABLED_WHEN_RECOVERED = (
    "Recovered after a restore of the portal's database. Its client was disabled in Keycloak, "
    "so it stays suspended until an administrator reinstates it."
)


@dataclass
class Rebuilt:
    """A record ready to save, with its public keys (a private_key_jwt key's), and its
    owner's account when that too must be rebuilt (they joined after the backup)."""

    key: ApiKey
    public_keys: list[AcceptedKey] = field(default_factory=list)
    new_owner: User | None = None
    new_team: Team | None = None


@dataclass
class Unrecoverable:
    why: str


def _owner(conn: Connection, sub: str, *, team_key: bool) -> User | Unrecoverable:
    """The key's owner (its maker): their account here, or one rebuilt (unsaved) from
    Keycloak's. A team key does not need its maker: one gone is kept as deactivated."""
    owner = User.objects.filter(username=sub).first() if sub else None
    if owner is not None:
        if not owner.is_active and not team_key:
            return Unrecoverable(f"its owner ({owner.email or sub}) is deactivated")
        return owner
    account = keycloak.get_account(conn, sub) if _is_uuid(sub) else None
    if not team_key:
        if account is None:
            return Unrecoverable(f"its owner ({sub or 'none named'}) has no account in Keycloak")
        if not account.enabled:
            return Unrecoverable(f"its owner ({account.email or sub}) is disabled in Keycloak")
    elif not _is_uuid(sub):
        return Unrecoverable(f"its maker ({sub or 'none named'}) is not a Keycloak user id")
    owner = User(username=sub, is_active=account is not None and account.enabled)
    if account is not None:
        owner.email = account.email
        owner.first_name, owner.last_name = account.first_name[:150], account.last_name[:150]
    owner.set_unusable_password()
    return owner


def _team(client: KeyClient, now: datetime) -> Team | Unrecoverable | None:
    """The team the key's client names: here, or rebuilt (unsaved, ownerless); None if none."""
    if not client.team:
        return None
    if not _is_uuid(client.team):
        return Unrecoverable("its team mark is not a team id")
    team = Team.objects.filter(pk=client.team).first()
    if team is not None:
        return team
    return Team(
        id=uuid.UUID(client.team), name=f"Recovered team {client.team[:8]}", ownerless_since=now
    )


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def quarantine_over(client: KeyClient, now: datetime) -> bool:
    since = client.quarantined_since
    return since is not None and now - since >= timedelta(days=settings.QUARANTINE_DAYS)


@sensitive_variables()  # clients read from Keycloak hold secrets
def examine(
    conn: Connection, client: KeyClient, now: datetime, *, claimed: bool = False
) -> Rebuilt | Unrecoverable:
    """The record `client` stands for, unsaved; or why it cannot be rebuilt.

    Marks can be copied by anyone who may make clients in the realm, so only a client whose
    marks carry this portal's seal is rebuilt; `claimed` (an operator's `--claim-unstamped`,
    for clients made before seals) skips that.
    """
    try:
        key_id = uuid.UUID(client.key_id)
    except ValueError:
        return Unrecoverable("it carries no valid key id")
    if client.client_id != f"{ApiKey.CLIENT_ID_PREFIX}{key_id.hex}":
        return Unrecoverable("its key id does not match its client id")
    if not claimed and not client.sealed:
        return Unrecoverable("its marks do not carry this portal's seal")
    team = _team(client, now)
    if isinstance(team, Unrecoverable):
        return team
    owner = _owner(conn, client.owner, team_key=team is not None)
    if isinstance(owner, Unrecoverable):
        return owner
    api = Api.objects.filter(slug=client.api).first() if client.api else None
    if api is None:
        return Unrecoverable(
            f"its API ({client.api or 'none named'}) is not in this portal's catalog"
        )
    key = ApiKey(
        id=key_id,
        owner=owner,
        team=team,
        api=api,
        name=f"Recovered {key_id.hex[:8]}",
        client_id=client.client_id,
        keycloak_id=client.id,
        expires_at=_expiry(client, api, now),
        recovered_at=now,
        requires_dpop=client.requires_dpop,
    )
    rebuilt = Rebuilt(
        key,
        new_owner=owner if owner._state.adding else None,
        new_team=team if team is not None and team._state.adding else None,
    )
    if client.signs_with_jwt:
        key.credential = ApiKey.Credential.SIGNED_JWT
        if client.jwks_url is not None:
            key.jwks_url = client.jwks_url
        else:
            try:
                rebuilt.public_keys = from_jwks_text(client.jwks)
            except Refused as error:
                return Unrecoverable(f"its public keys cannot be read ({error})")
    elif client.federated:
        workload = _workload(client, key)
        if workload is not None:
            return workload
    _set_status(key, client, now)
    return rebuilt


def _workload(client: KeyClient, key: ApiKey) -> Unrecoverable | None:
    """A workload identity key's issuer (trusted here still) and subject, from its client."""
    alias = client.marks.get(WORKLOAD_ISSUER_ATTRIBUTE, "")
    slug = alias.removeprefix(WorkloadIssuer.ALIAS_PREFIX)
    issuer = WorkloadIssuer.objects.filter(slug=slug).first() if alias != slug else None
    subject = client.marks.get(WORKLOAD_SUBJECT_ATTRIBUTE, "")
    if issuer is None or not subject:
        return Unrecoverable(f"its workload issuer ({alias or 'none named'}) is not trusted here")
    held = ApiKey.objects.filter(
        workload_issuer=issuer, workload_subject=subject, status__in=LIVE_STATUSES
    )
    if held.exists():  # Keycloak would not know which client the workload's tokens are for
        return Unrecoverable(f"a live key holds its workload ({subject}) already")
    key.credential = ApiKey.Credential.WORKLOAD
    key.workload_issuer, key.workload_subject = issuer, subject
    return None


def _set_status(key: ApiKey, client: KeyClient, now: datetime) -> None:
    """The rebuilt key's status, as its client is: expired, active if enabled, else suspended."""
    was_enabled = client.enabled
    if client.quarantined_since is not None and not was_enabled:  # disabled by the quarantine
        was_enabled = client.enabled_before_quarantine
    if key.expires_at <= now:
        key.status = ApiKey.Status.EXPIRED
        key.ended_at = now
    elif was_enabled:
        key.status = ApiKey.Status.ACTIVE
    else:
        key.status = ApiKey.Status.SUSPENDED
        key.status_reason = DISABLED_WHEN_RECOVERED


@sensitive_variables()
def recover(
    conn: Connection,
    client: KeyClient,
    found: Rebuilt | Unrecoverable,
    now: datetime,
    scope_ids: dict[str, str],
    *,
    claimed: bool = False,
) -> str:
    """Rebuild the record `examine` found for `client` (or quarantine it); what was done.

    In one transaction: the record, its audit entry, then the client converged like any
    key's (and out of quarantine). The client is read again first: if it changed since the
    scan, it is examined again as it is now. If Keycloak fails, the record goes too, and the
    next run tries again; the client is left as it was.
    """
    with transaction.atomic():
        if ApiKey.objects.filter(client_id=client.client_id).exists():
            return "a record appeared since the scan: left for the next run"
        current = keycloak.get_key_client(conn, client.id)
        if current.representation != client.representation or not _owner_still_active(found):
            found = examine(conn, current, now, claimed=claimed)  # changed since the scan
        if isinstance(found, Unrecoverable):
            return quarantine(conn, current, found.why, now)
        key = found.key
        key.owner = _save_owner(found)
        key.team = _save_team(found)
        key.save(force_insert=True)
        lifecycle.record_public_keys(key, found.public_keys)
        key.permissions.set(_held_permissions(key, current))
        _relink_registration(key, current)
        reason = (
            "Rebuilt from its client in Keycloak: the portal had no record of it (a restore "
            f"of the portal's database?). Recovered as {key.get_status_display().lower()}."
        )
        if found.new_owner is not None:
            reason += f" Its owner's account ({key.owner.email}) was rebuilt from Keycloak's."
        if found.new_team is not None:
            reason += f" Its team was rebuilt as “{found.new_team.name}”, awaiting an owner."
        if grace := adopt_rotation(conn, key, current, now):
            reason += f" {grace}"
        AuditEntry.record(key, AuditEntry.Action.RECOVERED, actor=None, reason=reason)
        plan = convergence.plan(current, desired.key_client(key, now=now))
        if current.quarantined_since is not None:
            plan.add("quarantine", desired.out_of_quarantine(key, now))
        convergence.apply(conn, plan, scope_ids)
        transaction.on_commit(lambda: notifications.key_recovered(key))
    return f"recovered as {key.status}"


def _relink_registration(key: ApiKey, client: KeyClient) -> None:
    """A key software registered stays tied to its registration token (if the restored
    records have it) and managed by the same registration access token."""
    if not client.registered_with:
        return
    token = RegistrationToken.objects.filter(pk__in=_uuid_or_none(client.registered_with))
    key.registered_with = token.first()
    key.registration_access_digest = client.marks.get(REGISTRATION_DIGEST_ATTRIBUTE, "")
    if key.registered_with is not None:
        key.save(update_fields=["registered_with", "registration_access_digest"])


def _uuid_or_none(text: str) -> list[uuid.UUID]:
    try:
        return [uuid.UUID(text)]
    except ValueError:
        return []


def _held_permissions(key: ApiKey, client: KeyClient) -> list[Permission]:
    """The permissions of the key's API whose scopes its client has: what its tokens carry."""
    scopes = client.representation.get("defaultClientScopes") or []
    return list(key.api.permissions.filter(name__in=scopes))


def _owner_still_active(found: Rebuilt | Unrecoverable) -> bool:
    """The rebuilt key's owner is still an active account (locked until the record is made:
    a deactivation waits, and then finds the recovered key to suspend or revoke)."""
    if isinstance(found, Unrecoverable) or found.new_owner is not None:
        return True  # a new owner was read from Keycloak just now
    if found.key.team is not None:
        return True  # a team key does not depend on its maker
    owner = User.objects.select_for_update().filter(pk=found.key.owner.pk).first()
    return owner is not None and owner.is_active


def _save_owner(found: Rebuilt) -> User:
    """The owner's account, saved if rebuilt (or theirs, if they signed in meanwhile)."""
    if found.new_owner is None:
        return found.key.owner
    try:
        with transaction.atomic():
            found.new_owner.save(force_insert=True)
    except IntegrityError:
        return User.objects.get(username=found.new_owner.username)
    return found.new_owner


def _save_team(found: Rebuilt) -> Team | None:
    """The key's team, saved if rebuilt (once: another key of it may have rebuilt it first);
    the administrators are asked to appoint an owner."""
    if found.new_team is None:
        return found.key.team
    try:
        with transaction.atomic():
            found.new_team.save(force_insert=True)
    except IntegrityError:
        return Team.objects.get(pk=found.new_team.pk)
    reason = "Rebuilt from a key's client after a restore of the portal's database: no owner."
    AuditEntry.record(found.new_team, AuditEntry.Action.TEAM_OWNERLESS, actor=None, reason=reason)
    team = found.new_team
    transaction.on_commit(lambda: notifications.team_ownerless(team))
    return team


@sensitive_variables()  # the secrets read to fingerprint them
def adopt_rotation(conn: Connection, key: ApiKey, client: KeyClient, now: datetime) -> str:
    """Take a key's secrets as Keycloak holds them into a record that lost them (a restore):
    their fingerprints, and a rotation's grace period until the end the client carries,
    never past the API's longest grace from the rotation nor the key's expiry. What was
    kept, for the audit entry ("" if nothing)."""
    if not key.uses_secret:
        return ""
    rotated_at = client.rotated_at or now
    fingerprints.record_issued(key, keycloak.get_client_secret(conn, client.id), now=rotated_at)
    until = client.rotated_secret_until
    if until is None or until <= now.timestamp():
        return ""
    bound = rotated_at + timedelta(hours=key.api.max_rotation_grace_hours)
    end = min(datetime.fromtimestamp(until, tz=UTC), bound, key.expires_at)
    if (previous := keycloak.get_rotated_secret(conn, client.id)) is not None:
        fingerprints.record_replaced(key, previous, issued_at=rotated_at, replaced_at=rotated_at)
    key.secret_rotated_at = rotated_at
    key.previous_secret_until = end
    key.save(update_fields=["secret_rotated_at", "previous_secret_until"])
    if end.timestamp() < until:
        keycloak.update_client(conn, client.id, desired.grace_end(end))
    return f"Its previous secret works until {end:%Y-%m-%d %H:%M:%S} UTC, as before."


@sensitive_variables()  # the secret read to compare it
def knows_current_secret(conn: Connection, key: ApiKey) -> bool:
    """Whether the record knows the secret Keycloak holds now (its fingerprint): if not, a
    rotation was lost with a restore of the portal's database."""
    current = keycloak.get_client_secret(conn, key.keycloak_id)
    return key.fingerprints.filter(digest=fingerprints.fingerprint(current)).exists()


def quarantine(conn: Connection, client: KeyClient, why: str, now: datetime) -> str:
    """Disable a client nobody here can own, noting when on the client itself; audited."""
    if client.quarantined_since is not None:
        return f"still quarantined: {why}"
    keycloak.update_client(conn, client.id, desired.quarantined(enabled=client.enabled, now=now))
    reason = f"Disabled: no record here, and {why}. Deleted after {settings.QUARANTINE_DAYS} days."
    AuditEntry.record(
        None, AuditEntry.Action.QUARANTINED, actor=None, reason=reason, client_id=client.client_id
    )
    log.warning("reconcile: quarantined %s: %s", client.client_id, why)
    return "quarantined"


def disable_again(conn: Connection, client: KeyClient, why: str) -> None:
    """A quarantined client someone enabled by hand: the quarantine holds (audited)."""
    with transaction.atomic():
        if ApiKey.objects.filter(client_id=client.client_id).exists():
            return
        keycloak.disable_client(conn, client.id)
        reason = f"Enabled by hand while quarantined; disabled again: no record here, and {why}."
        AuditEntry.record(
            None,
            AuditEntry.Action.QUARANTINED,
            actor=None,
            reason=reason,
            client_id=client.client_id,
        )


def delete_after_quarantine(conn: Connection, client: KeyClient, why: str) -> None:
    with transaction.atomic():
        if ApiKey.objects.filter(client_id=client.client_id).exists():
            return
        keycloak.delete_client(conn, client.id)
        reason = f"Deleted after {settings.QUARANTINE_DAYS} days in quarantine: {why}."
        AuditEntry.record(
            None,
            AuditEntry.Action.UNQUARANTINED,
            actor=None,
            reason=reason,
            client_id=client.client_id,
        )


def _expiry(client: KeyClient, api: Api, now: datetime) -> datetime:
    """The expiry the client carries, never later than the API's longest lifetime from now
    (Keycloak's rotation policy may have set the secret's expiry years ahead); failing
    that, the API's longest lifetime."""
    longest = now + timedelta(days=api.max_key_lifetime_days)
    return min(client.expires or longest, longest)
