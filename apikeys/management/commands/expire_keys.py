"""Disable the Keycloak clients of keys past their expiry. Safe to run from cron, and twice."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from apikeys.operations.job_runs import succeeded
from apikeys.operations.lifecycle import expire_due_keys
from portal.request_ids import start_run


class Command(BaseCommand):
    help = "Disable expired keys in Keycloak and mark them expired."

    def handle(self, *args: Any, **options: Any) -> None:
        start_run("expire_keys")
        run = expire_due_keys()
        for key in run.expired:
            self.stdout.write(f"expired {key.client_id} ({key.name}, owner {key.owner.email})")
        for key, error in run.failed:
            self.stderr.write(f"could not expire {key.client_id}: {error}")
        self.stdout.write(f"{len(run.expired)} expired, {len(run.failed)} failed")
        if run.failed:
            raise CommandError("Some keys could not be expired; they are retried on the next run.")
        succeeded("expire_keys")
