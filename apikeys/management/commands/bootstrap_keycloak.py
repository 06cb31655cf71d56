"""Create the portal's realm and Keycloak objects, or bring them back in shape (idempotent)."""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apikeys.keycloak import bootstrap
from apikeys.keycloak import client as keycloak
from apikeys.models import Api, WorkloadIssuer
from portal.secret_policy import HOW, weakness


class Command(BaseCommand):
    help = (
        "Create or repair the portal realm, its login and service clients, the portal-admin "
        "role and one audience client scope per catalog API. Uses a master-realm admin once; "
        "the portal itself runs as its own service account."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--admin-username",
            default=os.environ.get("KEYCLOAK_BOOTSTRAP_ADMIN_USERNAME"),
            help="master-realm admin (default: $KEYCLOAK_BOOTSTRAP_ADMIN_USERNAME)",
        )
        parser.add_argument(
            "--admin-password-env",
            default="KEYCLOAK_BOOTSTRAP_ADMIN_PASSWORD",
            help="name of the variable holding the admin's password, so it stays off argv",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        username = options["admin_username"]
        password = os.environ.get(options["admin_password_env"])
        if (
            password
            and not settings.LOCAL
            and (problem := weakness("The Keycloak admin's password", password, min_length=12))
        ):
            raise CommandError(f"{problem} {HOW}")
        if not username or not password:
            raise CommandError(
                "Give the master admin with --admin-username (or "
                "KEYCLOAK_BOOTSTRAP_ADMIN_USERNAME) and its password in "
                f"${options['admin_password_env']}."
            )
        conn = keycloak.connect(
            realm=settings.KEYCLOAK_REALM,
            username=username,
            password=password,
            user_realm="master",
            timeout=settings.KEYCLOAK_BOOTSTRAP_TIMEOUT,  # one-time heavy steps are slow
        )
        try:
            changes = bootstrap.run(
                conn,
                Api.objects.all(),
                issuers=WorkloadIssuer.objects.all(),
                tell=self.stdout.write,
            )
        except keycloak.KeycloakFailure as error:
            raise CommandError(str(error)) from error
        for line in changes:
            self.stdout.write(f"  {line}")
        verdict = f"{len(changes)} change(s)" if changes else "already in shape, nothing changed"
        self.stdout.write(self.style.SUCCESS(f"Keycloak realm {conn.realm}: {verdict}"))
