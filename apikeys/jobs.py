"""Periodic jobs: last-used times from Keycloak's events, expiry reminders, the approval digest.

Each is safe to run from cron and safe when two copies run at once: a job claims its row in
JobState (`job_lock`), and a second copy that finds it claimed does nothing and says so.
"""

from __future__ import annotations

import itertools
import json
import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from apikeys import accounts, keycloak, notifications
from apikeys.models import ApiKey, ExpiryReminder, JobState, UnusedNotice, WebhookMessage
from portal.request_ids import start_run

log = logging.getLogger(__name__)

EVENTS_PAGE = 500


# How long a job's claim lasts: longer than any run (reconcile of 10,000 clients takes under a
# minute), and how long a job killed outright blocks the next runs at most.
LEASE = timedelta(hours=1)


@contextmanager
def job_lock(name: str) -> Iterator[JobState | None]:
    """Claim the job for this run: its state row, or None if another run holds it.

    The claim is one conditional UPDATE, committed at once; two runs cannot both win it on
    either database. It is released when the run ends, however it ends.
    """
    JobState.objects.get_or_create(name=name)
    holder = uuid.uuid4().hex
    now = timezone.now()
    claimed = (
        JobState.objects.filter(name=name)
        .filter(Q(locked_until__isnull=True) | Q(locked_until__lt=now))
        .update(locked_until=now + LEASE, holder=holder)
    )
    if not claimed:
        yield None
        return
    start_run(name)
    try:
        yield JobState.objects.get(name=name)
    finally:
        JobState.objects.filter(name=name, holder=holder).update(locked_until=None, holder="")


def succeeded(name: str) -> None:
    """Note that a run of the job `name` completed (its lag in the metrics starts again)."""
    JobState.objects.update_or_create(name=name, defaults={"last_success_at": timezone.now()})


@dataclass
class LastUsedRun:
    skipped: bool = False
    events: int = 0
    keys_updated: int = 0
    watermark: int = 0


def sync_last_used(page: int = EVENTS_PAGE) -> LastUsedRun:
    """Read CLIENT_LOGIN events since the saved watermark and update the keys' last use.

    The events are read oldest first, page by page. The watermark (the newest event time,
    in ms) is saved only when the run completes, so a failed run is repeated whole. Events
    at the watermark itself are read again, which changes nothing.
    """
    with job_lock("last_used") as state:
        if state is None:
            return LastUsedRun(skipped=True)
        conn = keycloak.portal_connection()
        run = LastUsedRun(watermark=state.watermark)
        latest: dict[str, int] = {}
        for event in _events(conn, "CLIENT_LOGIN", since_ms=state.watermark, page=page):
            client_id = str(event.get("clientId", ""))
            if client_id.startswith(ApiKey.CLIENT_ID_PREFIX):
                latest[client_id] = max(latest.get(client_id, 0), int(event["time"]))
            run.watermark = max(run.watermark, int(event["time"]))
            run.events += 1
        for client_id, millis in latest.items():
            used = datetime.fromtimestamp(millis / 1000, tz=UTC)
            run.keys_updated += ApiKey.objects.filter(
                Q(last_used_at__isnull=True) | Q(last_used_at__lt=used), client_id=client_id
            ).update(last_used_at=used)
        state.watermark = run.watermark
        state.save(update_fields=["watermark", "updated_at"])
        return run


@dataclass
class UserSyncRun:
    skipped: bool = False
    events: int = 0
    users: dict[str, list[str]] = field(default_factory=dict)  # sub -> its changes, in order
    keys_changed: int = 0
    failures: list[str] = field(default_factory=list)


def sync_users(page: int = EVENTS_PAGE) -> UserSyncRun:
    """Follow users deleted, disabled, enabled, made or unmade admins in Keycloak.

    Reads the USER and REALM_ROLE_MAPPING admin events and the DELETE_ACCOUNT user events
    since the watermark, and applies each user's changes (`accounts.apply_change`) as a
    unit of work of its own. A user whose change fails is reported and the others go on; the
    watermark moves past everything applied and no further than the first failure, so the
    next run tries that user again (re-applying a change is harmless).
    """
    with job_lock("user_sync") as state:
        if state is None:
            return UserSyncRun(skipped=True)
        run = UserSyncRun()
        changes = sorted(_account_changes(keycloak.portal_connection(), state.watermark, page))
        run.events = len(changes)
        first_seen: dict[str, int] = {}
        for when, sub, change in changes:
            first_seen.setdefault(sub, when)
            run.users.setdefault(sub, []).append(change)
        failed_at: list[int] = []
        for sub, user_changes in run.users.items():
            for change in _what_counts(user_changes):
                outcome = accounts.apply_change(sub, change)
                run.keys_changed += outcome.keys_changed
                run.failures += [f"user {sub}: {failure}" for failure in outcome.failures]
                if outcome.failures:
                    failed_at.append(first_seen[sub])
        times = [when for when, _, _ in changes]
        state.watermark = min(failed_at) if failed_at else max([state.watermark, *times])
        state.save(update_fields=["watermark", "updated_at"])
        return run


def _account_changes(
    conn: keycloak.Connection, since_ms: int, page: int
) -> Iterator[tuple[int, str, str]]:
    """(time, user id, change) for every account change Keycloak recorded since `since_ms`."""
    for event in _admin_events(conn, "USER", ["UPDATE", "DELETE"], since_ms=since_ms, page=page):
        sub = str(event.get("resourcePath", "")).removeprefix("users/")
        if event["operationType"] == "DELETE":
            yield int(event["time"]), sub, "deleted"
            continue
        sent = _sent(event)
        enabled = sent.get("enabled") if isinstance(sent, dict) else None
        if isinstance(enabled, bool):
            yield int(event["time"]), sub, "enabled" if enabled else "disabled"
    for event in _events(conn, "DELETE_ACCOUNT", since_ms=since_ms, page=page):
        yield int(event["time"]), str(event.get("userId", "")), "deleted"
    role_events = _admin_events(
        conn, "REALM_ROLE_MAPPING", ["CREATE", "DELETE"], since_ms=since_ms, page=page
    )
    for event in role_events:
        path = str(event.get("resourcePath", ""))
        roles = _sent(event)
        named = [r.get("name") for r in roles] if isinstance(roles, list) else []
        if path.startswith("users/") and settings.OIDC_ADMIN_ROLE in named:
            granted = event["operationType"] == "CREATE"
            sub = path.removeprefix("users/").split("/", 1)[0]
            yield int(event["time"]), sub, "admin granted" if granted else "admin removed"


def _what_counts(changes: list[str]) -> list[str]:
    """Of one user's changes in order: the last account change (deletion is final) and the
    last change of the admin role."""
    account = [c for c in changes if c in accounts.ACCOUNT_CHANGES]
    roles = [c for c in changes if c in accounts.ROLE_CHANGES]
    counted = ["deleted"] if "deleted" in account else account[-1:]
    return counted + roles[-1:]


def _admin_events(
    conn: keycloak.Connection, resource: str, operations: list[str], *, since_ms: int, page: int
) -> Iterator[dict[str, Any]]:
    pages = keycloak.all_pages(
        lambda first, size: keycloak.get_admin_events(
            conn, resource, operations, since_ms=since_ms, first=first, page=size
        ),
        page,
    )
    return itertools.chain.from_iterable(pages)


def _events(
    conn: keycloak.Connection, event_type: str, *, since_ms: int, page: int
) -> Iterator[dict[str, Any]]:
    """Keycloak's stored user events of one type since `since_ms`, oldest first."""
    pages = keycloak.all_pages(
        lambda first, size: keycloak.get_events(
            conn, event_type, since_ms=since_ms, first=first, page=size
        ),
        page,
    )
    return itertools.chain.from_iterable(pages)


def _sent(event: dict[str, Any]) -> Any:
    """The representation an admin event carries (what was sent), or {}."""
    try:
        return json.loads(event.get("representation") or "{}")
    except ValueError:
        return {}


@dataclass
class ReminderRun:
    sent: list[tuple[ApiKey, int]] = field(default_factory=list)
    failed: list[ApiKey] = field(default_factory=list)


def send_expiry_reminders(now: datetime | None = None) -> ReminderRun:
    """Email owners of keys about to expire: once per key and threshold (EXPIRY_REMINDER_DAYS).

    A key within several thresholds gets one mail, for the nearest; the farther ones are
    marked as passed, so they never arrive late. The reminder row is written before the mail
    and kept only if the mail went out. Its unique constraint makes a concurrent run wait,
    then skip the key.
    """
    now = now or timezone.now()
    run = ReminderRun()
    thresholds = settings.EXPIRY_REMINDER_DAYS
    if not thresholds:
        return run
    soon = ApiKey.objects.filter(
        status=ApiKey.Status.ACTIVE,
        expires_at__gt=now,
        expires_at__lte=now + timedelta(days=max(thresholds)),
    ).select_related("owner", "api")
    for key in soon:
        left = key.expires_at - now
        due = [days for days in thresholds if left <= timedelta(days=days)]
        nearest = min(due)
        try:
            with transaction.atomic():
                ExpiryReminder.objects.create(key=key, days=nearest)
                ExpiryReminder.objects.bulk_create(
                    [ExpiryReminder(key=key, days=days) for days in due if days != nearest],
                    ignore_conflicts=True,
                )
                WebhookMessage.objects.emit(key, "key.expiring", days_left=nearest)
                if not notifications.expiry_reminder(key, nearest):
                    raise _NotSent
        except IntegrityError:
            continue  # already reminded at this threshold
        except _NotSent:
            run.failed.append(key)
            continue
        run.sent.append((key, nearest))
    return run


class _NotSent(Exception):
    pass


def announce_unused_keys(now: datetime | None = None) -> list[ApiKey]:
    """Send key.unused for active keys not used for DORMANT_KEY_DAYS: once per quiet spell
    (a key used again, then quiet again, is announced again)."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.DORMANT_KEY_DAYS)
    quiet = ApiKey.objects.filter(status=ApiKey.Status.ACTIVE).filter(
        Q(last_used_at__lt=cutoff) | Q(last_used_at__isnull=True, created_at__lt=cutoff)
    )
    announced = []
    for key in quiet.select_related("owner", "api"):
        since = key.last_used_at or key.created_at
        try:
            with transaction.atomic():
                UnusedNotice.objects.create(key=key, since=since)
                WebhookMessage.objects.emit(
                    key,
                    "key.unused",
                    unused_since=since.isoformat(),
                    days_unused=(now - since).days,
                )
        except IntegrityError:
            continue  # announced for this spell already
        announced.append(key)
    return announced


def send_approval_digest(now: datetime | None = None) -> int | None:
    """Email admins what is waiting for approval, once a day; None if already sent today."""
    today = int((now or timezone.now()).strftime("%Y%m%d"))
    with job_lock("approval_digest") as state:
        if state is None or state.watermark == today:
            return None
        pending = list(
            ApiKey.objects.filter(status=ApiKey.Status.PENDING)
            .select_related("owner", "api")
            .order_by("created_at")
        )
        if pending and not notifications.approval_digest(pending):
            return None  # retried on the next run
        state.watermark = today
        state.save(update_fields=["watermark", "updated_at"])
        return len(pending)
