"""Update keys' last-used times from Keycloak's CLIENT_LOGIN events. Safe from cron, and twice."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from apikeys.keycloak.client import KeycloakFailure
from apikeys.operations.job_runs import succeeded
from apikeys.operations.jobs import sync_last_used


class Command(BaseCommand):
    help = "Read CLIENT_LOGIN events since the last run and update each key's last-used time."

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            run = sync_last_used()
        except KeycloakFailure as error:
            raise CommandError(
                f"Keycloak failed; the next run starts from here: {error}"
            ) from error
        if run.skipped:
            self.stdout.write("another run is in progress; nothing done")
            return
        self.stdout.write(
            f"{run.events} events read, {run.keys_updated} keys updated, watermark {run.watermark}"
        )
        succeeded("last_used")
