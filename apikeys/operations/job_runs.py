"""A periodic job's runs: one at a time (a lease on its JobState row), and when one last
completed (what the metrics' job lag is counted from)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from apikeys.models import JobState
from portal.request_ids import start_run

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
