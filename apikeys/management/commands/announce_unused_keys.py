"""Send the key.unused webhook event for keys unused for DORMANT_KEY_DAYS. Safe from cron."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from apikeys.jobs import announce_unused_keys, succeeded
from portal.request_ids import start_run


class Command(BaseCommand):
    help = "Announce keys unused for DORMANT_KEY_DAYS to their owners' webhook endpoints."

    def handle(self, *args: Any, **options: Any) -> None:
        start_run("unused_keys")
        keys = announce_unused_keys()
        for key in keys:
            self.stdout.write(f"announced {key.client_id} unused")
        self.stdout.write(f"{len(keys)} announced")
        succeeded("unused_keys")
