"""Periodic jobs: last-used times from Keycloak's events, expiry reminders, the approval digest.

Each is safe to run from cron and safe when two copies run at once: a job claims its row in
JobState (`job_runs.job_lock`), and a second copy that finds it claimed does nothing and says so.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from apikeys.keycloak import client as keycloak
from apikeys.models import ApiKey, ExpiryReminder, WebhookMessage, this_instance
from apikeys.operations import accounts, keycloak_events, notifications
from apikeys.operations.job_runs import job_lock

log = logging.getLogger(__name__)

EVENTS_PAGE = 500


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
        latest: dict[str, dict[str, Any]] = {}  # a key's newest login, not every one
        for event in _events(conn, "CLIENT_LOGIN", since_ms=state.watermark, page=page):
            client_id = str(event.get("clientId") or "")
            if int(event["time"]) >= int(latest.get(client_id, {}).get("time", 0)):
                latest[client_id] = {
                    "type": "CLIENT_LOGIN",
                    "clientId": client_id,
                    "time": event["time"],
                }
            run.watermark = max(run.watermark, int(event["time"]))
            run.events += 1
        run.keys_updated = keycloak_events.note_use(latest.values())
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
        timed: dict[str, list[tuple[int, str]]] = {}
        for when, sub, change in changes:
            first_seen.setdefault(sub, when)
            timed.setdefault(sub, []).append((when, change))
        run.users = {sub: [change for _, change in seen] for sub, seen in timed.items()}
        failed_at: list[int] = []
        for sub, user_changes in timed.items():
            for change, at_ms in keycloak_events.what_counts(user_changes):
                outcome = accounts.apply_change(sub, change, at_ms)
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
    events = itertools.chain(
        _admin_events(conn, "USER", ["UPDATE", "DELETE"], since_ms=since_ms, page=page),
        _events(conn, "DELETE_ACCOUNT", since_ms=since_ms, page=page),
        _admin_events(
            conn, "REALM_ROLE_MAPPING", ["CREATE", "DELETE"], since_ms=since_ms, page=page
        ),
    )
    for event in events:
        if change := keycloak_events.account_change(event):
            yield int(event["time"]), *change


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
        instance=this_instance(),  # another deployment reminds its own
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
