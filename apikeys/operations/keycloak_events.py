"""What Keycloak's events change in the portal: one implementation, two feeds.

Keycloak's event listener (keycloak-extension/) pushes events to POST /keycloak/events as
they happen (`apply_pushed`); the polling jobs (`jobs.sync_users`, `jobs.sync_last_used`)
read the same events from Keycloak's store afterwards, the backstop for whatever the push
missed while the portal was down. Both feeds give events in the shape of Keycloak's admin
REST representations, and both go through the functions here:

- `account_change`: what a user or admin event means for an account (deleted, disabled,
  enabled, the admin role granted or removed), applied by `accounts.apply_change`;
- `note_use`: a key's last use, from CLIENT_LOGIN events (the newest wins, so applying an
  event twice changes nothing);
- `count_usage`: the day's grants and failed attempts per key, from the pushed
  CLIENT_LOGIN and CLIENT_LOGIN_ERROR events. Counting is not idempotent, so pushed login
  events are claimed by id (`ReceivedEvent`) in the same transaction as they are counted,
  and an event delivered twice is counted once. Account changes are idempotent and are
  applied whenever delivered, in the order of their times (an older one than what a user
  had applied changes nothing).
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from apikeys.credentials import networks
from apikeys.models import ApiKey, KeyUsage, ReceivedEvent
from apikeys.operations import accounts

log = logging.getLogger(__name__)

Event = dict[str, Any]

# CLIENT_LOGIN_ERROR's error for a wrong secret or a badly signed assertion; every other
# error (client_disabled, client_not_found, an expired secret) counts as "refused".
WRONG_CREDENTIALS = "invalid_client_credentials"


def account_change(event: Event) -> tuple[str, str] | None:
    """(Keycloak user id, change) that an event means for an account, or None.

    The changes are accounts.ACCOUNT_CHANGES and accounts.ROLE_CHANGES. A user event
    DELETE_ACCOUNT (the user deleted their own account); admin events on a user (UPDATE
    carries what was sent, with `enabled`; DELETE) and on their realm role mappings.
    """
    if event.get("type") == "DELETE_ACCOUNT":
        return str(event.get("userId") or ""), "deleted"
    path = str(event.get("resourcePath") or "")
    operation = event.get("operationType")
    if not path.startswith("users/"):
        return None
    sub, _, rest = path.removeprefix("users/").partition("/")
    resource = event.get("resourceType")
    if resource == "USER" and not rest:
        if operation == "DELETE":
            return sub, "deleted"
        sent = _sent(event)
        enabled = sent.get("enabled") if isinstance(sent, dict) else None
        if operation == "UPDATE" and isinstance(enabled, bool):
            return sub, "enabled" if enabled else "disabled"
    if resource == "REALM_ROLE_MAPPING" and operation in ("CREATE", "DELETE"):
        roles = _sent(event)
        named = (
            [r.get("name") for r in roles if isinstance(r, dict)] if isinstance(roles, list) else []
        )
        if settings.OIDC_ADMIN_ROLE in named:
            return sub, "admin granted" if operation == "CREATE" else "admin removed"
    return None


def what_counts(changes: Sequence[tuple[int, str]]) -> list[tuple[str, int]]:
    """Of one user's (time, change) in time order: the last account change (deletion is
    final) and the last change of the admin role, with their times."""
    account = [(c, t) for t, c in changes if c in accounts.ACCOUNT_CHANGES]
    roles = [(c, t) for t, c in changes if c in accounts.ROLE_CHANGES]
    deleted = [(c, t) for c, t in account if c == "deleted"]
    return (deleted[:1] or account[-1:]) + roles[-1:]


def note_use(events: Iterable[Event]) -> int:
    """Move the keys' last use forward to their newest CLIENT_LOGIN among `events`; returns
    how many keys changed."""
    latest: dict[str, int] = {}
    for event in events:
        client_id = str(event.get("clientId") or "")
        if event.get("type") == "CLIENT_LOGIN" and client_id.startswith(ApiKey.CLIENT_ID_PREFIX):
            latest[client_id] = max(latest.get(client_id, 0), int(event["time"]))
    changed = 0
    for client_id, millis in latest.items():
        used = _moment(millis)
        changed += ApiKey.objects.filter(
            Q(last_used_at__isnull=True) | Q(last_used_at__lt=used), client_id=client_id
        ).update(last_used_at=used)
    return changed


def count_usage(events: Iterable[Event]) -> None:
    """Add the events' grants and failed attempts to their keys' rows of the day (UTC)."""
    counts: Counter[tuple[str, date, str]] = Counter()
    for event in events:
        client_id = str(event.get("clientId") or "")
        if event.get("type") == "CLIENT_LOGIN":
            column = "grants"
        elif event.get("type") == "CLIENT_LOGIN_ERROR":
            column = _failure(event)
        else:
            continue
        counts[client_id, _moment(int(event["time"])).date(), column] += 1
    keys = dict(
        ApiKey.objects.filter(client_id__in={c for c, _, _ in counts}).values_list(
            "client_id", "pk"
        )
    )
    for (client_id, day, column), count in counts.items():
        if client_id not in keys:
            continue  # not a key of this portal (or another deployment's record)
        row, _ = KeyUsage.objects.get_or_create(key_id=keys[client_id], day=day)
        KeyUsage.objects.filter(pk=row.pk).update(**{column: F(column) + count})


def _failure(event: Event) -> str:
    """Which column a failed token request counts in: a wrong credential, a request from
    outside the key's network ranges (the portal extension's reason), or another refusal."""
    if event.get("error") == WRONG_CREDENTIALS:
        return "wrong_credentials"
    details = event.get("details") or {}
    if details.get("client_policy_error_detail") == networks.REFUSED_REASON:
        return "outside_networks"  # not "unreadable ranges": that is a broken key, refused
    return "refused"


@dataclass
class Applied:
    received: int = 0
    duplicates: int = 0
    keys_changed: int = 0
    failures: list[str] = field(default_factory=list)  # account changes to be pushed again


def apply_pushed(events: list[Event]) -> Applied:
    """Apply a batch the event listener pushed.

    Client logins of the portal's keys are claimed and counted in one transaction, once
    each. Account changes are applied user by user; if one fails (Keycloak did not answer),
    the caller answers so that the listener sends the batch again (applying an account
    change again is harmless; the polling job would also apply it later).
    """
    applied = Applied(received=len(events))
    logins = [e for e in events if e.get("type") in ("CLIENT_LOGIN", "CLIENT_LOGIN_ERROR")]
    known = set(
        ApiKey.objects.filter(client_id__in={str(e.get("clientId")) for e in logins}).values_list(
            "client_id", flat=True
        )
    )
    logins = [e for e in logins if e.get("clientId") in known]  # no id kept for the others
    ids = sorted({str(e["id"]) for e in logins})
    with transaction.atomic():
        seen = set(ReceivedEvent.objects.filter(id__in=ids).values_list("id", flat=True))
        fresh = {str(e["id"]): e for e in logins if str(e["id"]) not in seen}
        ReceivedEvent.objects.bulk_create([ReceivedEvent(id=i) for i in sorted(fresh)])
        count_usage(fresh.values())
        note_use(fresh.values())
    applied.duplicates = len(logins) - len(fresh)
    # Account changes are applied again if delivered again (harmless): no claim that a
    # failure or a lost answer could leave standing without the change.
    by_user: dict[str, list[tuple[int, str]]] = {}
    for event in sorted(events, key=lambda e: int(e.get("time") or 0)):
        if change := account_change(event):
            sub, what = change
            by_user.setdefault(sub, []).append((int(event["time"]), what))
    for sub, changes in by_user.items():
        for what, at_ms in what_counts(changes):
            outcome = accounts.apply_change(sub, what, at_ms)
            applied.keys_changed += outcome.keys_changed
            applied.failures += [f"user {sub}: {failure}" for failure in outcome.failures]
    _forget_old_ids()
    return applied


_last_pruned = 0.0


def _forget_old_ids() -> None:
    """Drop event ids older than KEYCLOAK_EVENT_IDS_KEPT_HOURS, at most once a minute."""
    global _last_pruned
    if time.monotonic() - _last_pruned < 60:
        return
    _last_pruned = time.monotonic()
    cutoff = timezone.now() - timedelta(hours=settings.KEYCLOAK_EVENT_IDS_KEPT_HOURS)
    ReceivedEvent.objects.filter(received_at__lt=cutoff).delete()


def _moment(millis: int) -> datetime:
    return datetime.fromtimestamp(millis / 1000, tz=UTC)


def _sent(event: Event) -> Any:
    """The representation an admin event carries (what was sent), or {}."""
    try:
        return json.loads(event.get("representation") or "{}")
    except (TypeError, ValueError):
        return {}
