"""Make Keycloak agree with the portal's records, whatever failed in between.

`reconcile` reads every client whose clientId starts with `apikey-`, a page at a time, and
compares it with the portal's record of that key. The record is the truth. It plans
first and acts after the scan, so deletions do not shift the pages still to be read. Before
each action it locks the record and looks again, because a customer or admin may have acted
since the scan.

What it does, case by case (Keycloak / the portal's record: action):

- a client stamped by another portal deployment (`portal.instance`) / any: left alone,
  counted. Two portals on one realm never touch each other's clients.
- a client stamped by this portal / no record (the portal's database was restored from a
  backup made before the key): rebuild the record from the client
  (`apikeys/operations/recovery.py`), as the client is (active, suspended if disabled, expired),
  audited, its owner asked to name it. If its owner or API is not found here: quarantine (disable
  it, note when on the client); deleted after QUARANTINE_DAYS; recovered by a later run once they
  are found.
- a client with the marker but no stamp (made before instance ids) / no record: report
  only; it may be another portal's. `--claim-unstamped` treats them as this portal's.
- a client without the marker / no record: report only; not the portal's to touch.
- a client with no stamp / a record: adopted: stamped with this portal's id (audited).
- a client / unfinished for longer than the grace period: adopt it (record its id). The
  key stays unfinished; the customer finishes it (a new secret, shown once) or discards it.
- a client / unfinished for more than a day: discard both; nobody came back for it.
- no client / unfinished for longer than the grace period: delete the record.
- any / being revoked, rejected or suspended (a decision recorded, then a crash or an
  outage): carry it out (`lifecycle.carry_out`).
- a disabled client / active (an operator disabled it in Keycloak, e.g. in an incident):
  the restrictive action wins; the key is suspended, audited, and its owner told.
- a client holding a previous secret / active, pending or suspended: Keycloak takes it
  until the recorded end of the rotation's grace period, never longer (ended or shortened
  if longer); a grace period in progress is left alone; one Keycloak no longer holds is
  recorded as over.
- a client / active, pending or suspended: converge it to `desired.key_client` (enabled
  only if active, not past expiry and of an active owner; flows, full scope, token
  lifespan, attributes, default and optional scopes, protocol mappers); audited.
- a client / revoked or rejected: delete the client.
- a client / expired: keep it, disabled.
- no client / active: the client was deleted outside the portal, or Keycloak was restored
  from a backup made before the key. The two look the same, so the restrictive reading
  wins: the key is suspended (audited) and marked "client missing", and its owner is mailed
  a one-click link to make it again (a rotation: a new client, a new secret shown once);
  an administrator then decides whether to reinstate it. Nothing is silently recreated.
- no client / pending or suspended: mark the record "client missing" and report it.
  A client is never recreated here, since its secret would be one nobody knows.

Each catalog API's client scope is converged too (its audience mapper and nothing else).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial

from django.conf import settings
from django.db import DatabaseError, transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from apikeys.credentials import networks
from apikeys.keycloak import bootstrap, convergence, desired
from apikeys.keycloak import client as keycloak
from apikeys.keycloak.client import Connection, KeycloakFailure, Representation
from apikeys.keycloak.key_clients import KeyClient
from apikeys.models import (
    INTENTS,
    Api,
    ApiKey,
    AuditEntry,
    KeyStatus,
    Permission,
    WrongState,
    this_instance,
)
from apikeys.operations import lifecycle, recovery, workload_issuers

log = logging.getLogger(__name__)

PAGE = keycloak.KEY_CLIENTS_PAGE  # clients per request (tests make it smaller)
ISSUED = (KeyStatus.PENDING, KeyStatus.ACTIVE, KeyStatus.SUSPENDED)
GRACE = timedelta(minutes=10)  # an issue in flight is not a leftover
ABANDONED = timedelta(days=1)


@dataclass
class Finding:
    client_id: str
    problem: str
    action: str
    done: bool = False


@dataclass
class Report:
    dry_run: bool
    clients_seen: int = 0
    records_checked: int = 0
    others: int = 0  # clients of other portal deployments on the realm, left alone
    findings: list[Finding] = field(default_factory=list)

    @property
    def problems(self) -> int:
        return len(self.findings)


@dataclass
class _Plan:
    finding: Finding
    act: Callable[[], None]


@sensitive_variables()  # clients read from Keycloak hold secrets
def reconcile(
    *,
    dry_run: bool = False,
    now: datetime | None = None,
    grace: timedelta = GRACE,
    claim_unstamped: bool = False,
) -> Report:
    """Compare every portal client in Keycloak with the records; repair unless `dry_run`.

    `claim_unstamped`: clients with the portal's marker but no instance stamp and no record
    are taken as this portal's (recovered or quarantined) instead of left alone.
    """
    now = now or timezone.now()
    conn = keycloak.portal_connection()
    report = Report(dry_run)
    plans: list[_Plan] = []
    seen: set[str] = set()
    scope_ids = convergence.scope_ids_by_name(conn)
    for clients in keycloak.key_clients(conn, ApiKey.CLIENT_ID_PREFIX, PAGE):
        with_permissions = ApiKey.objects.select_related(
            "api", "owner", "workload_issuer"
        ).prefetch_related("permissions")
        records = with_permissions.in_bulk([c.client_id for c in clients], field_name="client_id")
        for client in clients:
            seen.add(client.client_id)
            key = records.get(client.client_id)
            if key is not None and not key.is_own:  # a copy of another deployment's database
                report.others += 1
                plans.append(_another_portals(client, key))
                continue
            if not client.is_own:
                report.others += 1
                if key is not None:  # a copy of another deployment's database?
                    plans.append(_another_portals(client, key))
                continue
            report.clients_seen += 1
            plan: _Plan | None
            if key is None:
                plan = _check_unrecorded(conn, client, now, scope_ids, claim_unstamped)
            else:
                plan = _check_client(conn, client, key, now=now, grace=grace, scope_ids=scope_ids)
            if plan:
                plans.append(plan)
            if key is not None and (plan := _check_previous_secret(conn, client, key, now=now)):
                plans.append(plan)
    missing = _records_without_clients(seen, now, grace)
    plans += [_missing_client(conn, key, now) for key in missing]
    plans += _check_api_scopes(conn) + _check_workload_issuers(conn)
    report.records_checked = ApiKey.objects.count()
    for plan in plans:
        report.findings.append(plan.finding)
        if dry_run:
            continue
        try:
            plan.act()
            plan.finding.done = True
        except (KeycloakFailure, WrongState, DatabaseError) as error:  # the others go on
            plan.finding.action += f" (failed: {error})"
            log.warning("reconcile: %s: %s", plan.finding.client_id, error)
    return report


@sensitive_variables()  # clients read from Keycloak hold secrets
def _check_client(
    conn: Connection,
    client: KeyClient,
    key: ApiKey,
    *,
    now: datetime,
    grace: timedelta,
    scope_ids: dict[str, str],
) -> _Plan | None:
    client_id = client.client_id
    if not client.is_for(key.pk):
        finding = Finding(
            client_id,
            "client does not carry its record's key id",
            "left alone: check it by hand",
            done=True,
        )
        return _Plan(finding, lambda: None)
    if key.status == ApiKey.Status.UNFINISHED:
        return _check_unfinished(conn, client, key, now=now, grace=grace)
    if key.status in INTENTS:
        return _carry_out_decision(key)
    wanted = desired.key_client(key, now=now)
    if (
        key.status == ApiKey.Status.ACTIVE
        and desired.key_client_enabled(key, now)
        and not client.enabled
    ):
        return _Plan(
            Finding(client_id, "active key whose client was disabled in Keycloak", "suspend"),
            lambda: _suspend(key, lifecycle.CLIENT_DISABLED),
        )
    if not key.is_live and key.status != ApiKey.Status.EXPIRED:  # revoked or rejected
        return _Plan(
            Finding(client_id, f"{key.status} key still has a client", "delete the client"),
            lambda: _delete_if_still(conn, client, key),
        )
    narrowed = _keep_narrowed(client, key, wanted)
    changes = convergence.plan(client, wanted).parts
    if client.team != str(key.team_id or ""):
        changes.append("team")
    if key.client_missing_since or key.keycloak_id != client.id:
        changes.append("record")
    if not changes and narrowed:
        problem = f"{' and '.join(narrowed)} narrowed in Keycloak, outside the portal"
        action = "kept (restrictive wins): the key's record follows"
        follows = "permissions" in narrowed or "DPoP" in narrowed
        return _Plan(
            Finding(client_id, problem, action, done=not follows),
            lambda: _record_narrowed(conn, key, client),
        )
    if not changes:
        return None
    return _Plan(
        Finding(client_id, f"drift in {', '.join(changes)}", "restore the portal's settings"),
        lambda: _repair(conn, client, key, now=now, scope_ids=scope_ids),
    )


def _keep_narrowed(client: KeyClient, key: ApiKey, wanted: Representation) -> list[str]:
    """What an operator narrowed in Keycloak and reconcile keeps: the key's network ranges,
    its permissions (a permission's scope taken off the client). Wider is narrowed back."""
    kept = ["network ranges"] if _keep_narrowed_networks(client, key, wanted) else []
    kept += ["DPoP"] if client.requires_dpop and not key.requires_dpop else []
    return kept + (["permissions"] if _keep_removed_permissions(client, key, wanted) else [])


def _keep_removed_permissions(client: KeyClient, key: ApiKey, wanted: Representation) -> bool:
    """Restrictive wins: a permission's scope an operator took off the key's client stays off
    (and is reported); one added by hand is taken off again."""
    have = set(client.representation.get("defaultClientScopes") or [])
    removed = set(key.permission_names) - have
    if removed:
        kept = [scope for scope in wanted["defaultClientScopes"] if scope not in removed]
        wanted["defaultClientScopes"] = kept
    return bool(removed)


def _record_narrowed(conn: Connection, key: ApiKey, client: KeyClient) -> None:
    """The key's record follows what an operator narrowed on its client: lost permissions,
    DPoP turned on."""
    _drop_lost_permissions(key, client)
    if client.requires_dpop and not key.requires_dpop:
        _require_dpop(conn, key, client.id)


def _require_dpop(conn: Connection, key: ApiKey, client_uuid: str) -> bool:
    """DPoP an operator turned on in Keycloak stays on, and the record says so, audited (and
    sent as `key.updated`). Turned off there, reconcile turns it on again (drift). Whether
    the record now requires it.

    The client is read again under the key's lock: an owner who turned DPoP off since the
    scan (record off, then Keycloak off) is not taken for an operator turning it on."""
    with transaction.atomic():
        key = ApiKey.objects.locked(key.pk)
        if key.requires_dpop:
            return True
        if not keycloak.get_key_client(conn, client_uuid).requires_dpop:
            return False
        key.requires_dpop = True
        key.save(update_fields=["requires_dpop"])
        reason = (
            "DPoP-bound tokens turned on in Keycloak, outside the portal: the key requires them "
            "now (restrictive wins)."
        )
        AuditEntry.record(key, AuditEntry.Action.DPOP_CHANGED, actor=None, reason=reason)
        return True


def _drop_lost_permissions(key: ApiKey, client: KeyClient) -> None:
    """The permissions whose scopes the key's client lost leave its record too, audited (and
    sent as `key.updated`): what the pages and webhooks say is what its tokens carry."""
    have = set(client.representation.get("defaultClientScopes") or [])
    with transaction.atomic():
        key = ApiKey.objects.locked(key.pk)
        lost = [p for p in key.permissions.all() if p.name not in have]
        if not lost:
            return
        key.permissions.remove(*lost)
        names = ", ".join(sorted(p.name for p in lost))
        reason = (
            f"{names} taken off its client in Keycloak, outside the portal: the key no longer "
            f"holds them (restrictive wins). Now: {', '.join(key.permission_names) or 'none'}."
        )
        AuditEntry.record(key, AuditEntry.Action.PERMISSIONS_CHANGED, actor=None, reason=reason)


def _keep_narrowed_networks(client: KeyClient, key: ApiKey, wanted: Representation) -> bool:
    """Restrictive wins: network ranges an operator narrowed in Keycloak are kept (and
    reported), never widened back to the record's by reconcile; wider ones are narrowed."""
    current = client.marks.get(networks.ATTRIBUTE, "")
    if current == networks.attribute(key.networks) or not networks.narrower(current, key.networks):
        return False
    wanted["attributes"][networks.ATTRIBUTE] = current
    return True


def _another_portals(client: KeyClient, key: ApiKey) -> _Plan:
    made_by = client.instance or key.instance
    finding = Finding(
        client.client_id,
        f"its client was made by the portal deployment {made_by!r}",
        "left alone: this record is a copy of another deployment's",
        done=True,
    )
    return _Plan(finding, lambda: None)


@sensitive_variables()  # clients read from Keycloak hold secrets
def _check_unrecorded(
    conn: Connection,
    client: KeyClient,
    now: datetime,
    scope_ids: dict[str, str],
    claim_unstamped: bool,
) -> _Plan:
    """A client with no record: recover it, quarantine it, or leave it alone (see the top)."""
    client_id = client.client_id
    if (why := _not_to_touch(client, claim_unstamped)) is not None:
        problem, action = why
        return _Plan(Finding(client_id, problem, action, done=True), lambda: None)
    claimed = claim_unstamped and client.instance is None
    found = recovery.examine(conn, client, now, claimed=claimed)
    if isinstance(found, recovery.Rebuilt):
        return _Plan(
            Finding(client_id, "a client of this portal with no record", "rebuild its record"),
            lambda: _recover(conn, client, found, now, scope_ids, claimed=claimed),
        )
    since = client.quarantined_since
    if since is None:
        return _Plan(
            Finding(client_id, f"no record, and {found.why}", "quarantine it (disable)"),
            lambda: _recover(conn, client, found, now, scope_ids, claimed=claimed),
        )
    if client.enabled:
        return _Plan(
            Finding(client_id, "quarantined, but enabled again by hand", "disable it again"),
            lambda: recovery.disable_again(conn, client, found.why),
        )
    if recovery.quarantine_over(client, now):
        return _Plan(
            Finding(client_id, f"quarantined since {since:%Y-%m-%d}: {found.why}", "delete it"),
            lambda: recovery.delete_after_quarantine(conn, client, found.why),
        )
    finding = Finding(
        client_id,
        f"quarantined since {since:%Y-%m-%d}: {found.why}",
        f"left disabled; deleted after {settings.QUARANTINE_DAYS} days",
        done=True,
    )
    return _Plan(finding, lambda: None)


def _not_to_touch(client: KeyClient, claim_unstamped: bool) -> tuple[str, str] | None:
    """Why a client with no record is not this portal's to act on (problem, action), if so."""
    if not client.canonical_id:  # its id goes into admin paths: not a client to act on
        problem = f"client without a portal record whose Keycloak id is not a UUID ({client.id!r})"
        return problem, "left alone (not made by the portal)"
    if not client.managed:
        return "client without a portal record or marker", "left alone (not made by the portal)"
    if client.instance is None and not claim_unstamped:
        return (
            "marked as a portal's but made before instance ids, and no record here",
            "left alone: if this portal made it, run reconcile with --claim-unstamped",
        )
    return None


def _recover(
    conn: Connection,
    client: KeyClient,
    found: recovery.Rebuilt | recovery.Unrecoverable,
    now: datetime,
    scope_ids: dict[str, str],
    *,
    claimed: bool = False,
) -> None:
    outcome = recovery.recover(conn, client, found, now, scope_ids, claimed=claimed)
    log.info("reconcile: %s: %s", client.client_id, outcome)


@sensitive_variables()  # clients read from Keycloak hold secrets
def _check_previous_secret(
    conn: Connection, client: KeyClient, key: ApiKey, *, now: datetime
) -> _Plan | None:
    """A rotation's grace period: Keycloak may take the previous secret as long as the
    record says, never longer; a grace period in progress is left alone."""
    if key.status not in ISSUED or not client.is_for(key.pk):
        return None
    until = client.rotated_secret_until
    recorded = key.previous_secret_until
    if until is not None and until > now.timestamp():
        longer = recorded is None or recorded <= now or until > recorded.timestamp() + 1
        if longer and not recovery.knows_current_secret(conn, key):
            return _Plan(
                Finding(
                    key.client_id,
                    "a rotation the records lost (a restore?) is in its grace period",
                    "record it; the previous secret works until its end",
                ),
                lambda: _adopt_rotation(conn, key, now=now),
            )
        if recorded is None or recorded <= now:
            return _Plan(
                Finding(key.client_id, "previous secret still works after its grace", "end it"),
                lambda: _end_previous_secret(conn, key, now=now),
            )
        if until > recorded.timestamp() + 1:
            return _Plan(
                Finding(key.client_id, "previous secret works past its grace", "shorten it"),
                lambda: _shorten_previous_secret(conn, key),
            )
        return None
    if recorded is not None and recorded > now:
        return _Plan(
            Finding(key.client_id, "grace recorded, but Keycloak ended it", "record the end"),
            lambda: _record_grace_over(key, now=now),
        )
    return None


@sensitive_variables()  # clients read from Keycloak hold secrets
def _adopt_rotation(conn: Connection, key: ApiKey, *, now: datetime) -> None:
    with transaction.atomic():
        key = ApiKey.objects.locked(key.pk)
        if recovery.knows_current_secret(conn, key):
            return  # rotated since the scan
        kept = recovery.adopt_rotation(
            conn, key, keycloak.get_key_client(conn, key.keycloak_id), now
        )
        reason = f"Reconcile recorded a rotation the records had lost (a restore?). {kept}"
        AuditEntry.record(key, AuditEntry.Action.REPAIRED, actor=None, reason=reason.strip())


def _end_previous_secret(conn: Connection, key: ApiKey, *, now: datetime) -> None:
    with transaction.atomic():
        key = ApiKey.objects.locked(key.pk)
        if key.previous_secret_works(now):
            return  # rotated again since the scan, with a new grace period
        keycloak.delete_rotated_secret(conn, key.keycloak_id)
        reason = "Reconcile stopped its previous secret: Keycloak still took it after its end."
        AuditEntry.record(key, AuditEntry.Action.REPAIRED, actor=None, reason=reason)


def _shorten_previous_secret(conn: Connection, key: ApiKey) -> None:
    with transaction.atomic():
        key = ApiKey.objects.locked(key.pk)
        if key.previous_secret_until is None:
            keycloak.delete_rotated_secret(conn, key.keycloak_id)
            reason = "Reconcile stopped its previous secret: its grace had ended."
        else:
            change = desired.grace_end(key.previous_secret_until)
            keycloak.update_client(conn, key.keycloak_id, change)
            reason = "Reconcile cut its previous secret's grace in Keycloak back to its end."
        AuditEntry.record(key, AuditEntry.Action.REPAIRED, actor=None, reason=reason)


@sensitive_variables()  # clients read from Keycloak hold secrets
def _record_grace_over(key: ApiKey, *, now: datetime) -> None:
    with transaction.atomic():
        key = ApiKey.objects.locked(key.pk)
        current = keycloak.get_key_client(keycloak.portal_connection(), key.keycloak_id)
        until = current.rotated_secret_until
        if until is None or until <= now.timestamp():
            key.previous_secret_until = None
            key.save(update_fields=["previous_secret_until"])
            reason = "Keycloak no longer held its previous secret: its grace is recorded as over."
            AuditEntry.record(key, AuditEntry.Action.REPAIRED, actor=None, reason=reason)


def _check_unfinished(
    conn: Connection, client: KeyClient, key: ApiKey, *, now: datetime, grace: timedelta
) -> _Plan | None:
    age = now - key.created_at
    if age < grace:
        return None
    if age > ABANDONED and client.enabled and keycloak.has_logged_in(conn, key.client_id):
        # Its owner saw the secret and partners use it: the record went back to before the
        # key was finished (a restore of a backup taken in that instant). Never discard it.
        return _Plan(
            Finding(key.client_id, "unfinished record of a client that gets tokens", "finish it"),
            lambda: _finish_from_client(conn, key, client, now),
        )
    if age > ABANDONED:
        return _Plan(
            Finding(key.client_id, "unfinished for over a day", "discard client and record"),
            lambda: _discard(conn, key, client),
        )
    if key.keycloak_id == client.id:
        return None  # adopted already; waiting for the customer
    return _Plan(
        Finding(key.client_id, "unfinished key whose client was made", "adopt the client"),
        lambda: _adopt(key, client),
    )


@sensitive_variables()  # clients read from Keycloak hold secrets
def _repair(
    conn: Connection,
    client: KeyClient,
    key: ApiKey,
    *,
    now: datetime,
    scope_ids: dict[str, str],
) -> None:
    with transaction.atomic():
        key = ApiKey.objects.locked(key.pk)
        if not key.is_live and key.status != ApiKey.Status.EXPIRED:
            return  # ended since the scan; the next run looks again
        current = keycloak.get_key_client(conn, client.id)
        wanted = desired.key_client(key, now=now)
        if desired.key_client_enabled(key, now) and not current.enabled:
            _suspend(key, lifecycle.CLIENT_DISABLED)  # disabled since the scan: it wins
            return
        narrowed = _keep_narrowed(current, key, wanted)
        if "permissions" in narrowed:
            _drop_lost_permissions(key, current)
        if "DPoP" in narrowed:
            key.requires_dpop = _require_dpop(conn, key, current.id)
        plan = convergence.plan(current, wanted)
        if current.team != str(key.team_id or ""):  # a team given or taken by hand
            plan.add("team", desired.holder_marks(key))
        convergence.apply(conn, plan, scope_ids)
        key.keycloak_id = client.id
        key.client_missing_since = None
        key.save(update_fields=["keycloak_id", "client_missing_since"])
        if plan and current.instance is None:
            reason = "Reconcile stamped its client with this portal's instance id (adopted)."
            AuditEntry.record(key, AuditEntry.Action.REPAIRED, actor=None, reason=reason)
        elif plan:
            reason = f"Reconcile restored {', '.join(plan.parts)} of its client in Keycloak."
            AuditEntry.record(key, AuditEntry.Action.REPAIRED, actor=None, reason=reason)


def _delete_if_still(conn: Connection, client: KeyClient, key: ApiKey) -> None:
    with transaction.atomic():
        key = ApiKey.objects.locked(key.pk)
        if key.status not in (ApiKey.Status.REVOKED, ApiKey.Status.REJECTED):
            return
        with contextlib.suppress(keycloak.NotFound):
            keycloak.delete_client(conn, client.id)


@sensitive_variables()  # the secrets read to fingerprint them
def _finish_from_client(conn: Connection, key: ApiKey, client: KeyClient, now: datetime) -> None:
    with transaction.atomic():
        key = ApiKey.objects.locked(key.pk)
        if not key.is_unfinished:
            return
        key.set_status(ApiKey.Status.ACTIVE, keycloak_id=client.id)
        kept = recovery.adopt_rotation(conn, key, client, now)
        reason = (
            "Reconcile finished its record: its client was made and gets tokens (a restore of "
            f"the portal's database from the moment it was being made?). {kept}"
        )
        AuditEntry.record(key, AuditEntry.Action.RECOVERED, actor=None, reason=reason.strip())


def _adopt(key: ApiKey, client: KeyClient) -> None:
    with transaction.atomic():
        key = ApiKey.objects.locked(key.pk)
        if key.is_unfinished:
            key.keycloak_id = client.id
            key.save(update_fields=["keycloak_id"])


def _discard(conn: Connection, key: ApiKey, client: KeyClient | None) -> None:
    with transaction.atomic():
        key = ApiKey.objects.locked(key.pk)
        if not key.is_unfinished:
            return
        if client is not None:
            with contextlib.suppress(keycloak.NotFound):
                keycloak.delete_client(conn, client.id)
        key.delete()


def _records_without_clients(seen: set[str], now: datetime, grace: timedelta) -> Iterator[ApiKey]:
    """Records that should have a client (or be finished) but whose client was not listed.

    Keys made since the scan began are left for the next run: their clients may have been
    made on a page already read.
    """
    before_the_scan = ApiKey.objects.live().filter(created_at__lt=now, instance=this_instance())
    for key in before_the_scan.select_related("api", "owner").iterator(chunk_size=2000):
        if key.client_id in seen:
            continue
        if key.is_unfinished and now - key.created_at < grace:
            continue
        if key.client_missing_since is not None and key.status not in INTENTS:
            continue  # reported before
        yield key


def _missing_client(conn: Connection, key: ApiKey, now: datetime) -> _Plan:
    if key.is_unfinished:
        return _Plan(
            Finding(key.client_id, "unfinished key with no client", "delete the record"),
            lambda: _discard_record(key),
        )
    if key.status in INTENTS:
        return _carry_out_decision(key)
    if key.status == ApiKey.Status.ACTIVE:
        return _Plan(
            Finding(key.client_id, "active key has no client in Keycloak", "suspend and mark it"),
            lambda: _suspend_missing(conn, key, now),
        )
    return _Plan(
        Finding(
            key.client_id,
            f"{key.status} key has no client in Keycloak",
            "mark it; the owner can rotate to recreate it, or revoke it",
        ),
        lambda: _mark_missing(key, now),
    )


def _suspend(key: ApiKey, reason: str) -> None:
    with contextlib.suppress(WrongState):  # someone acted on the key since the scan
        lifecycle.suspend_key(ApiKey.objects.get(pk=key.pk), actor=None, reason=reason)


def _suspend_missing(conn: Connection, key: ApiKey, now: datetime) -> None:
    if keycloak.find_key_client(conn, key.client_id) is not None:
        return  # the scan missed it (pages shift when clients go): it is there, look again
    _mark_missing(key, now)
    _suspend(key, lifecycle.client_deleted(key))


def _carry_out_decision(key: ApiKey) -> _Plan:
    action = INTENTS[ApiKey.Status(key.status)]
    return _Plan(
        Finding(key.client_id, f"a decision to {action} it was not carried out", f"{action} it"),
        lambda: _carry_out(key),
    )


def _carry_out(key: ApiKey) -> None:
    lifecycle.carry_out(ApiKey.objects.get(pk=key.pk))


def _check_api_scopes(conn: Connection) -> list[_Plan]:
    """Each catalog API's client scope, converged like bootstrap does (or made, if missing)."""
    scopes = keycloak.client_scopes_by_name(conn)
    plans = []
    for api in Api.objects.all():
        current = scopes.get(api.scope_name)
        if current is None:
            problem = "the API's client scope is missing"
        elif not desired.is_managed(current):
            problem = "the API's client scope is not marked as the portal's"
        elif plan := convergence.plan(current, desired.api_scope(api), kind="client scope"):
            problem = f"drift in {', '.join(plan.parts)}"
        else:
            continue
        plans.append(
            _Plan(
                Finding(api.scope_name, problem, "restore it"),
                lambda api=api: _restore_scope(conn, api),  # type: ignore[misc]
            )
        )
    return plans + _check_permission_scopes(conn, scopes)


def _check_permission_scopes(conn: Connection, scopes: dict[str, Representation]) -> list[_Plan]:
    """Each permission's client scope, converged like bootstrap does (or made, if missing)."""
    plans = []
    for permission in Permission.objects.select_related("api"):
        current = scopes.get(permission.name)
        wanted = desired.permission_scope(permission)
        if current is None:
            problem = "the permission's client scope is missing"
        elif not desired.is_managed(current):
            problem = "the permission's client scope is not marked as the portal's"
        elif plan := convergence.plan(current, wanted, kind="client scope"):
            problem = f"drift in {', '.join(plan.parts)}"
        else:
            continue
        plans.append(
            _Plan(
                Finding(permission.name, problem, "restore it"),
                lambda p=permission: _restore_permission_scope(conn, p),  # type: ignore[misc]
            )
        )
    return plans


def _check_workload_issuers(conn: Connection) -> list[_Plan]:
    """Each trusted workload issuer's identity provider, converged like bootstrap does; a
    provider of the portal's whose issuer is not trusted here is removed."""
    plans = []
    for alias, problem, action in workload_issuers.drift(conn):
        if action == "leave":
            finding = Finding(alias, problem, "left alone: remove it in Keycloak", done=True)
            plans.append(_Plan(finding, lambda: None))
        elif action == "restore":
            act = partial(workload_issuers.restore, conn, alias)
            plans.append(_Plan(Finding(alias, problem, "restore it"), act))
        else:
            act = partial(workload_issuers.remove_untrusted, conn, alias)
            plans.append(_Plan(Finding(alias, problem, "remove it"), act))
    return plans


def _restore_permission_scope(conn: Connection, permission: Permission) -> None:
    if changes := bootstrap.ensure_permission_scope(conn, permission):
        reason = f"Reconcile restored the client scope of {permission.name}: " + "; ".join(changes)
        AuditEntry.record(permission.api, AuditEntry.Action.REPAIRED, actor=None, reason=reason)


def _restore_scope(conn: Connection, api: Api) -> None:
    if changes := bootstrap.ensure_api_scope(conn, api):
        reason = "Reconcile restored its client scope: " + "; ".join(changes)
        AuditEntry.record(api, AuditEntry.Action.REPAIRED, actor=None, reason=reason)


def _discard_record(key: ApiKey) -> None:
    ApiKey.objects.filter(pk=key.pk, status=ApiKey.Status.UNFINISHED).delete()


def _mark_missing(key: ApiKey, now: datetime) -> None:
    ApiKey.objects.filter(pk=key.pk, client_missing_since__isnull=True).update(
        client_missing_since=now
    )


def describe(report: Report) -> Iterator[str]:
    """The report as lines for a person."""
    verb = "would" if report.dry_run else "did"
    others = f" ({report.others} of other portal deployments, left alone)" if report.others else ""
    yield (
        f"{report.clients_seen} portal clients in Keycloak{others}, "
        f"{report.records_checked} records; {report.problems} problems"
    )
    for finding in report.findings:
        state = "" if report.dry_run else (" [done]" if finding.done else " [NOT done]")
        yield f"{finding.client_id}: {finding.problem}; {verb}: {finding.action}{state}"
