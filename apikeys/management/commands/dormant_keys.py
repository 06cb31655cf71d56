"""Apply the dormant-key policy (apikeys/operations/dormancy.py): warn, then suspend. Safe from
cron."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from apikeys.operations import dormancy
from apikeys.operations.job_runs import succeeded
from portal.request_ids import start_run


class Command(BaseCommand):
    help = (
        "Warn the owners of keys unused for DORMANT_KEY_DAYS (mail, key.unused webhook) and "
        "suspend keys unused for DORMANT_SUSPEND_DAYS; an API may set its own days."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        start_run("dormant_keys")
        result = dormancy.run()
        for key in result.warned:
            self.stdout.write(f"warned the owner of {key.client_id}")
        for key in result.suspended:
            self.stdout.write(f"suspended {key.client_id}")
        for failure in result.failures:
            self.stderr.write(f"not done: {failure}")
        self.stdout.write(
            f"{len(result.warned)} warned, {len(result.suspended)} suspended, "
            f"{len(result.failures)} failed"
        )
        if result.failures:
            raise CommandError("Some suspensions are left to the next run (or reconcile).")
        succeeded("dormant_keys")
