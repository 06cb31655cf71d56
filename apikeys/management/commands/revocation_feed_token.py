"""Make the token an API's resource servers read its revocation feed with (shown once)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apikeys.credentials import revocations
from apikeys.models import Api, AuditEntry


class Command(BaseCommand):
    help = (
        "Make a new revocation feed token for the API with this slug and print it once; the "
        "previous token stops working. Give it to the API's resource servers as "
        "REVOCATION_FEED_TOKEN, with REVOCATION_FEED_URL=<portal>/feeds/revocations."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("api", help="the API's slug, as in the catalog")

    def handle(self, *args: Any, **options: Any) -> None:
        api = Api.objects.filter(slug=options["api"]).first()
        if api is None:
            known = ", ".join(Api.objects.values_list("slug", flat=True)) or "none"
            raise CommandError(
                f"No API with the slug {options['api']!r} (the catalog has: {known})."
            )
        token = revocations.new_feed_token(api)
        AuditEntry.record(
            api, AuditEntry.Action.API_CHANGED, actor=None, reason="New revocation feed token."
        )
        self.stdout.write(f"REVOCATION_FEED_URL={settings.PORTAL_URL}/feeds/revocations")
        self.stdout.write(f"REVOCATION_FEED_TOKEN={token}")
        self.stderr.write("Shown once: the portal keeps only its digest.")
