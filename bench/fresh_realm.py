"""Delete the bench Keycloak's realm, so that bootstrap makes it again empty.

bin/bench starts every run on an empty database; a realm kept from an earlier run would hold
its keys' clients, which reconcile would then recover into this run's records.
"""

from __future__ import annotations

import contextlib
import os

from bench.common import setup_django

setup_django()

from django.conf import settings

from apikeys.keycloak import client as keycloak


def main() -> None:
    admin = keycloak.connect(
        realm=settings.KEYCLOAK_REALM,
        username=os.environ["KEYCLOAK_BOOTSTRAP_ADMIN_USERNAME"],
        password=os.environ["KEYCLOAK_BOOTSTRAP_ADMIN_PASSWORD"],
        user_realm="master",
        timeout=600,  # a realm of many clients takes a while to delete
    )
    with contextlib.suppress(keycloak.NotFound):  # a new instance has no realm yet
        keycloak._request(admin, "DELETE", "")


if __name__ == "__main__":
    main()
