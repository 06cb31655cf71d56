"""The real Keycloak stopped in the middle of a test, then started again.

Reads come from the database and keep working; actions fail within seconds with a clear
message; everything works again once Keycloak is back, with nothing to restart in the portal.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse

from apikeys.models import Api, ApiKey, User
from apikeys.operations.reconcile import reconcile
from devstack import keycloak_server as devstack_keycloak
from tests.accounts import force_login_with_second_factor
from tests.factories import issue
from tests.tokens import request_token

pytestmark = pytest.mark.usefixtures("key_clients")


@pytest.fixture
def stop_keycloak() -> Iterator[devstack_keycloak.Instance]:
    """Stops the test instance on demand; always starts it again afterwards."""
    instance = devstack_keycloak.Instance("test", urlsplit(settings.KEYCLOAK_URL).port or 80)
    assert devstack_keycloak.is_ready(instance), "the tests' Keycloak must be running"
    yield instance
    devstack_keycloak.start(instance)


def timed(action: object) -> float:
    started = time.monotonic()
    action()  # type: ignore[operator]
    return time.monotonic() - started


def test_with_keycloak_stopped_reads_work_actions_fail_fast_and_all_recovers(
    client: Client,
    owner: User,
    admin_user: User,
    sample: Api,
    stop_keycloak: devstack_keycloak.Instance,
) -> None:
    revealed = issue(owner, sample, name="steady", lifetime_days=30)
    token = request_token(revealed.key.client_id, revealed.secret).json()["access_token"]
    whoami = {"Authorization": f"Bearer {token}"}
    assert client.get(reverse("whoami"), headers=whoami).status_code == 200
    client.force_login(owner)

    devstack_keycloak.stop_instance(stop_keycloak)

    for url in (
        reverse("home"),
        reverse("key_detail", args=[revealed.key.pk]),
        reverse("activity"),
        reverse("partner_docs"),
    ):
        assert client.get(url).status_code == 200, url
    # Tokens already issued still validate: the JWKS is cached, no call on the hot path.
    assert client.get(reverse("whoami"), headers=whoami).status_code == 200
    responses: dict[str, Any] = {}
    elapsed = timed(
        lambda: responses.update(
            create=client.post(
                reverse("new_key"), {"name": "during", "api": "sample", "lifetime_days": "9"}
            ),
            rotate=client.post(reverse("rotate_key", args=[revealed.key.pk])),
            revoke=client.post(reverse("revoke_key", args=[revealed.key.pk])),
        )
    )
    assert elapsed < 10
    assert "No key was created" in responses["create"].content.decode()
    assert "The old secret still works" in responses["rotate"].content.decode()
    # The revocation is recorded though Keycloak is down: the restrictive decision wins.
    assert responses["revoke"].status_code == 302
    assert "The decision is recorded" in client.get(reverse("home")).content.decode()
    assert ApiKey.objects.get().status == ApiKey.Status.REVOKING
    assert client.get(reverse("whoami"), headers=whoami).status_code == 401
    admin = Client()
    force_login_with_second_factor(admin, admin_user)
    assert admin.get(reverse("manage_keys")).status_code == 200
    assert admin.get(reverse("manage_audit")).status_code == 200

    devstack_keycloak.start(stop_keycloak)

    created = client.post(
        reverse("new_key"), {"name": "after", "api": "sample", "lifetime_days": "9"}
    )
    assert 'data-testid="reveal"' in created.content.decode()
    reconcile(grace=timedelta(0))  # carries out the revocation recorded during the outage
    assert ApiKey.objects.get(pk=revealed.key.pk).status == ApiKey.Status.REVOKED
    assert request_token(revealed.key.client_id, revealed.secret).status_code == 401
