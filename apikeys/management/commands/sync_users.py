"""Follow users deleted, disabled or enabled in Keycloak: their keys stop (or resume)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from apikeys.jobs import sync_users
from apikeys.keycloak import KeycloakFailure


class Command(BaseCommand):
    help = "Read Keycloak's user admin events and DELETE_ACCOUNT events since the last run."

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            run = sync_users()
        except KeycloakFailure as error:
            message = f"Keycloak failed; the next run starts from the same point: {error}"
            raise CommandError(message) from error
        if run.skipped:
            self.stdout.write("another run is in progress; nothing done")
            return
        for sub, change in run.users.items():
            self.stdout.write(f"user {sub}: {change}")
        self.stdout.write(f"{run.events} events read, {run.keys_changed} keys changed")
