"""Rebuilding a key's record from its Keycloak client, after the portal's database went back.

A restore of the portal's database from a backup loses the records of every key made since;
their clients live on in Keycloak, in use by partners. Each client carries what the portal
needs to rebuild its record (`desired.key_client`): the marker, the key's id, its owner's
`sub`, its API's slug, this deployment's instance id and its expiry. Reconcile calls
`examine` on every client stamped with this portal's instance id that has no record, then:

- owner (an account this portal knows, active) and API found: `recover` rebuilds the record
  as the client is: active if the client is enabled, suspended (an administrator decides)
  if it is disabled, expired if past its expiry. The owner is mailed and asked to name it
  (the record is named "Recovered …"); audited. The client itself is left as it is, except
  for what the portal keeps on every client (converged as any key's).
- owner or API not found, or markers that disagree: `quarantine` disables the client and
  notes when on the client itself (so a second restore does not lose it); audited with its
  client id. A quarantined client whose owner signs in again (or whose API is restored) is
  recovered by a later run, and enabled again if it was before. After QUARANTINE_DAYS it is
  deleted (`quarantine_over`).

Nothing here ever makes a client or a secret.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.views.decorators.debug import sensitive_variables

from apikeys.credentials.public_keys import AcceptedKey, Refused, from_jwks_text
from apikeys.keycloak import client as keycloak
from apikeys.keycloak import convergence, desired
from apikeys.keycloak.client import Connection, Representation
from apikeys.models import Api, ApiKey, AuditEntry, User
from apikeys.operations import lifecycle, notifications

log = logging.getLogger(__name__)

DISABLED_WHEN_RECOVERED = (
    "Recovered after a restore of the portal's database. Its client was disabled in Keycloak, "
    "so it stays suspended until an administrator reinstates it."
)


@dataclass
class Rebuilt:
    """A record ready to save, with its public keys (a private_key_jwt key's)."""

    key: ApiKey
    public_keys: list[AcceptedKey] = field(default_factory=list)


@dataclass
class Unrecoverable:
    why: str


def attributes(client: Representation) -> dict[str, str]:
    return client.get("attributes") or {}


def quarantined_since(client: Representation) -> datetime | None:
    value = attributes(client).get(desired.QUARANTINED_ATTRIBUTE)
    return _epoch(value) if value else None


def quarantine_over(client: Representation, now: datetime) -> bool:
    since = quarantined_since(client)
    return since is not None and now - since >= timedelta(days=settings.QUARANTINE_DAYS)


@sensitive_variables()  # clients read from Keycloak hold secrets
def examine(client: Representation, now: datetime) -> Rebuilt | Unrecoverable:
    """The record `client` stands for, unsaved; or why it cannot be rebuilt."""
    marks = attributes(client)
    try:
        key_id = uuid.UUID(marks.get(desired.KEY_ATTRIBUTE, ""))
    except ValueError:
        return Unrecoverable("it carries no valid key id")
    if client["clientId"] != f"{ApiKey.CLIENT_ID_PREFIX}{key_id.hex}":
        return Unrecoverable("its key id does not match its client id")
    sub = marks.get(desired.OWNER_ATTRIBUTE, "")
    owner = User.objects.filter(username=sub).first() if sub else None
    if owner is None:
        return Unrecoverable(f"its owner ({sub or 'none named'}) has no account in this portal")
    if not owner.is_active:
        return Unrecoverable(f"its owner ({owner.email or sub}) is deactivated")
    slug = marks.get(desired.API_ATTRIBUTE, "")
    api = Api.objects.filter(slug=slug).first() if slug else None
    if api is None:
        return Unrecoverable(f"its API ({slug or 'none named'}) is not in this portal's catalog")
    key = ApiKey(
        id=key_id,
        owner=owner,
        api=api,
        name=f"Recovered {key_id.hex[:8]}",
        client_id=client["clientId"],
        keycloak_id=client["id"],
        expires_at=_expiry(marks, api, now),
        recovered_at=now,
    )
    rebuilt = Rebuilt(key)
    if client.get("clientAuthenticatorType") == "client-jwt":
        key.credential = ApiKey.Credential.SIGNED_JWT
        if marks.get("use.jwks.url") == "true":
            key.jwks_url = marks.get("jwks.url", "")
        else:
            try:
                rebuilt.public_keys = from_jwks_text(marks.get("jwks.string", ""))
            except Refused as error:
                return Unrecoverable(f"its public keys cannot be read ({error})")
    was_enabled = bool(client.get("enabled"))
    if quarantined_since(client) is not None and not was_enabled:  # disabled by the quarantine
        was_enabled = marks.get(desired.QUARANTINED_ENABLED_ATTRIBUTE) == "true"
    if key.expires_at <= now:
        key.status = ApiKey.Status.EXPIRED
        key.ended_at = now
    elif was_enabled:
        key.status = ApiKey.Status.ACTIVE
    else:
        key.status = ApiKey.Status.SUSPENDED
        key.status_reason = DISABLED_WHEN_RECOVERED
    return rebuilt


@sensitive_variables()
def recover(
    conn: Connection, client: Representation, now: datetime, scope_ids: dict[str, str]
) -> str:
    """Rebuild the record of `client` (or quarantine it); what was done, for the report.

    In one transaction: the record, its audit entry, then the client converged like any
    key's (and out of quarantine). If Keycloak fails, the record goes too, and the next run
    tries again; the client is left as it was.
    """
    with transaction.atomic():
        if ApiKey.objects.filter(client_id=client["clientId"]).exists():
            return "a record appeared since the scan: left for the next run"
        current = keycloak.get_client(conn, client["id"])  # as it is now, not as scanned
        found = examine(current, now)
        if isinstance(found, Unrecoverable):
            return quarantine(conn, current, found.why, now)
        key = found.key
        key.save(force_insert=True)
        lifecycle.record_public_keys(key, found.public_keys)
        reason = (
            "Rebuilt from its client in Keycloak: the portal had no record of it (a restore "
            f"of the portal's database?). Recovered as {key.get_status_display().lower()}."
        )
        AuditEntry.record(key, AuditEntry.Action.RECOVERED, actor=None, reason=reason)
        plan = convergence.plan(current, desired.key_client(key, now=now))
        if quarantined_since(current) is not None:
            plan.parts.append("quarantine")
            plan.settings.setdefault("attributes", {})
            plan.settings["attributes"] |= {
                desired.QUARANTINED_ATTRIBUTE: "",  # an empty value removes the attribute
                desired.QUARANTINED_ENABLED_ATTRIBUTE: "",
            }
            plan.settings["enabled"] = desired.key_client_enabled(key, now)
        convergence.apply(conn, plan, scope_ids)
        transaction.on_commit(lambda: notifications.key_recovered(key))
    return f"recovered as {key.status}"


def quarantine(conn: Connection, client: Representation, why: str, now: datetime) -> str:
    """Disable a client nobody here can own, noting when on the client itself; audited."""
    if quarantined_since(client) is not None:
        return f"still quarantined: {why}"
    keycloak.update_client(
        conn,
        client["id"],
        {
            "enabled": False,
            "attributes": {
                desired.INSTANCE_ATTRIBUTE: settings.PORTAL_INSTANCE_ID,  # claimed: ours now
                desired.QUARANTINED_ATTRIBUTE: str(int(now.timestamp())),
                desired.QUARANTINED_ENABLED_ATTRIBUTE: str(bool(client.get("enabled"))).lower(),
            },
        },
    )
    reason = f"Disabled: no record here, and {why}. Deleted after {settings.QUARANTINE_DAYS} days."
    AuditEntry.record(
        None, AuditEntry.Action.QUARANTINED, actor=None, reason=reason, client_id=client["clientId"]
    )
    log.warning("reconcile: quarantined %s: %s", client["clientId"], why)
    return "quarantined"


def disable_again(conn: Connection, client: Representation, why: str) -> None:
    """A quarantined client someone enabled by hand: the quarantine holds (audited)."""
    with transaction.atomic():
        if ApiKey.objects.filter(client_id=client["clientId"]).exists():
            return
        keycloak.update_client(conn, client["id"], {"enabled": False})
        reason = f"Enabled by hand while quarantined; disabled again: no record here, and {why}."
        AuditEntry.record(
            None,
            AuditEntry.Action.QUARANTINED,
            actor=None,
            reason=reason,
            client_id=client["clientId"],
        )


def delete_after_quarantine(conn: Connection, client: Representation, why: str) -> None:
    with transaction.atomic():
        if ApiKey.objects.filter(client_id=client["clientId"]).exists():
            return
        keycloak.delete_client(conn, client["id"])
        reason = f"Deleted after {settings.QUARANTINE_DAYS} days in quarantine: {why}."
        AuditEntry.record(
            None,
            AuditEntry.Action.UNQUARANTINED,
            actor=None,
            reason=reason,
            client_id=client["clientId"],
        )


def _expiry(marks: dict[str, str], api: Api, now: datetime) -> datetime:
    """The expiry the client carries, never later than the API's longest lifetime from now
    (Keycloak's rotation policy may have set the secret's expiry years ahead); failing
    that, the API's longest lifetime."""
    longest = now + timedelta(days=api.max_key_lifetime_days)
    for name in (desired.EXPIRES_ATTRIBUTE, desired.SECRET_EXPIRY_ATTRIBUTE):
        if (value := _epoch(marks.get(name))) is not None:
            return min(value, longest)
    return longest


def _epoch(value: str | None) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(value or ""), tz=UTC)
    except (ValueError, OverflowError, OSError):
        return None
