"""Add the "Sample API" to the catalog if it is not there (for development and demos)."""

from typing import Any

from django.core.management.base import BaseCommand

from apikeys.models import Api, Permission

SAMPLE_PERMISSIONS = (
    ("orders:read", "Read the orders (GET /api/v1/sample/orders)", False),
    ("orders:write", "Place orders (POST /api/v1/sample/orders)", True),
)


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
        # What its endpoints check (apikeys/views/sample_api.py); bootstrap makes the scopes.
        for name, description, needs_approval in SAMPLE_PERMISSIONS:
            Permission.objects.get_or_create(
                name=name,
                defaults={
                    "api": api,
                    "description": description,
                    "requires_approval": needs_approval,
                    "default": not needs_approval,
                },
            )
