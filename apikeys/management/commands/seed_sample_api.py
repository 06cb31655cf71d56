"""Add the "Sample API" to the catalog if it is not there (for development and demos)."""

from typing import Any

from django.core.management.base import BaseCommand

from apikeys.models import Api


class Command(BaseCommand):
    help = 'Add the "Sample API" to the catalog (idempotent).'

    def handle(self, *args: Any, **options: Any) -> None:
        api, created = Api.objects.get_or_create(
            slug="sample",
            defaults={
                "name": "Sample API",
                "audience": "sample-api",
                "description": "A sample API served by the portal itself, for trying keys out.",
                "access_token_lifespan": 300,
                "max_key_lifetime_days": 365,
                "checks_revocation": True,  # whoami runs the token validator in strict mode
            },
        )
        self.stdout.write(f"{api.name}: {'added' if created else 'already in the catalog'}")
