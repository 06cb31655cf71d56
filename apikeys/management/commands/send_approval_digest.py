"""Email admins the key requests waiting for approval, at most once a day."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from apikeys.operations.job_runs import succeeded
from apikeys.operations.jobs import send_approval_digest


class Command(BaseCommand):
    help = "Send the daily digest of key requests waiting for approval (once per day)."

    def handle(self, *args: Any, **options: Any) -> None:
        count = send_approval_digest()
        if count is None:
            self.stdout.write("already sent today, or another run is in progress")
        else:
            self.stdout.write(f"digest sent: {count} waiting" if count else "nothing waiting")
        succeeded("approval_digest")
