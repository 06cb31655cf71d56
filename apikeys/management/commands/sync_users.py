"""Follow users deleted, disabled, enabled or made admins in Keycloak
(apikeys/operations/accounts.py)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from apikeys.keycloak.client import KeycloakFailure
from apikeys.operations.job_runs import succeeded
from apikeys.operations.jobs import sync_users


class Command(BaseCommand):
    help = (
        "Read Keycloak's user and role-mapping admin events and DELETE_ACCOUNT events since "
        "the last run, and apply each user's changes. Exits non-zero if some could not be."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            run = sync_users()
        except KeycloakFailure as error:
            message = f"Keycloak failed; the next run starts from the same point: {error}"
            raise CommandError(message) from error
        if run.skipped:
            self.stdout.write("another run is in progress; nothing done")
            return
        for sub, changes in run.users.items():
            self.stdout.write(f"user {sub}: {', '.join(changes)}")
        for failure in run.failures:
            self.stderr.write(f"not done: {failure}")
        self.stdout.write(
            f"{run.events} events read, {run.keys_changed} keys changed, {len(run.failures)} failed"
        )
        if run.failures:
            raise CommandError("Some changes could not be applied; the next run tries them again.")
        succeeded("user_sync")
