"""Email owners of keys that expire soon, once per key and threshold. Safe from cron, and twice."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from apikeys.operations.job_runs import succeeded
from apikeys.operations.jobs import send_expiry_reminders
from portal.request_ids import start_run


class Command(BaseCommand):
    help = "Remind owners of keys that expire within EXPIRY_REMINDER_DAYS."

    def handle(self, *args: Any, **options: Any) -> None:
        start_run("expiry_reminders")
        run = send_expiry_reminders()
        for key, days in run.sent:
            self.stdout.write(f"reminded {key.owner.email}: {key.client_id} expires in {days} days")
        self.stdout.write(f"{len(run.sent)} sent, {len(run.failed)} failed")
        if run.failed:
            raise CommandError(
                "Some reminders could not be sent; they are retried on the next run."
            )
        succeeded("expiry_reminders")
