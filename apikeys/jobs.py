"""Periodic jobs: last-used times from Keycloak's events, expiry reminders, the approval digest.

Each is safe to run from cron and safe when two copies run at once: a job takes its row in
JobState with `SELECT … FOR UPDATE NOWAIT`, and a second copy that finds it taken does
nothing and says so.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from apikeys import keycloak, notifications
from apikeys.models import ApiKey, ExpiryReminder, JobState

log = logging.getLogger(__name__)

EVENTS_PAGE = 500


@contextmanager
def job_lock(name: str) -> Iterator[JobState | None]:
    """The job's state row, locked for the run; None if another run holds it."""
    JobState.objects.get_or_create(name=name)
    with transaction.atomic():
        try:
            with transaction.atomic():  # a savepoint, so a refused lock leaves no broken txn
                state = JobState.objects.select_for_update(nowait=True).get(name=name)
        except DatabaseError:
            yield None
            return
        yield state


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
        first = 0
        while True:
            events = keycloak.get_events(
                conn, "CLIENT_LOGIN", since_ms=state.watermark, first=first, page=page
            )
            for event in events:
                client_id = str(event.get("clientId", ""))
                if client_id.startswith(ApiKey.CLIENT_ID_PREFIX):
                    latest[client_id] = max(latest.get(client_id, 0), int(event["time"]))
                run.watermark = max(run.watermark, int(event["time"]))
            run.events += len(events)
            if len(events) < page:
                break
            first += page
        for client_id, millis in latest.items():
            used = datetime.fromtimestamp(millis / 1000, tz=UTC)
            run.keys_updated += ApiKey.objects.filter(
                Q(last_used_at__isnull=True) | Q(last_used_at__lt=used), client_id=client_id
            ).update(last_used_at=used)
        state.watermark = run.watermark
        state.save(update_fields=["watermark", "updated_at"])
        return run


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
