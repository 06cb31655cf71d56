"""Make Keycloak's portal clients agree with the portal's records (see
apikeys/operations/reconcile.py)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apikeys.keycloak.client import KeycloakFailure
from apikeys.operations.job_runs import job_lock, succeeded
from apikeys.operations.reconcile import describe, reconcile


class Command(BaseCommand):
    help = "Find and repair differences between the portal's keys and Keycloak's clients."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="Report what would be done; change nothing."
        )
        parser.add_argument(
            "--claim-unstamped",
            action="store_true",
            help=(
                "Take marked clients without an instance stamp and without a record as this "
                "portal's (recover or quarantine them). Only if no other portal shares the realm."
            ),
        )

    def handle(
        self, *args: Any, dry_run: bool = False, claim_unstamped: bool = False, **options: Any
    ) -> None:
        try:
            if dry_run:
                report = reconcile(dry_run=True, claim_unstamped=claim_unstamped)
            else:
                with job_lock("reconcile") as state:
                    if state is None:
                        self.stdout.write("another run is in progress; nothing done")
                        return
                    report = reconcile(claim_unstamped=claim_unstamped)
        except KeycloakFailure as error:
            raise CommandError(f"Keycloak failed; nothing more was done: {error}") from error
        for line in describe(report):
            self.stdout.write(line)
        if any(not f.done for f in report.findings) and not dry_run:
            raise CommandError("Some repairs failed; the next run tries again.")
        if not dry_run:
            succeeded("reconcile")
