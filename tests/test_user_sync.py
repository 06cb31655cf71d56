"""Users deleted or disabled in Keycloak: after one sync run their keys cannot get tokens."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from apikeys.keycloak.client import Connection
from apikeys.models import Api, ApiKey, User
from apikeys.operations import lifecycle
from apikeys.operations.accounts import OWNER_DISABLED
from tests.accounts import KeycloakUser
from tests.factories import issue, portal_user
from tests.tokens import request_token

pytestmark = [pytest.mark.embedded, pytest.mark.usefixtures("key_clients")]


def test_deleted_and_disabled_users_keys_stop_after_one_sync_and_come_back_when_enabled(
    make_keycloak_user: Callable[..., KeycloakUser],
    bootstrapped: Connection,
    sample: Api,
    client: Client,
) -> None:
    gone, paused, bystander = (
        portal_user(make_keycloak_user(), first_name="Test") for _ in range(3)
    )
    keys = {
        user.email: issue(user, sample, name="app", lifetime_days=30)
        for user in (gone, paused, bystander)
    }
    call_command("sync_users")  # start from now: older events are not this test's
    client.force_login(paused)
    admin = bootstrapped.admin

    admin.delete_user(gone.username)
    admin.update_user(paused.username, {"enabled": False})
    call_command("sync_users")

    def works(user: User) -> bool:
        revealed = keys[user.email]
        return request_token(revealed.key.client_id, revealed.secret).status_code == 200

    assert not works(gone)
    assert not works(paused)
    assert works(bystander)
    assert ApiKey.objects.get(owner=gone).status == ApiKey.Status.REVOKED
    suspended = ApiKey.objects.get(owner=paused)
    assert (suspended.status, suspended.status_reason) == ("suspended", OWNER_DISABLED)
    assert not User.objects.get(pk=paused.pk).is_active
    # The disabled user's portal session ends too.
    assert client.get("/keys/").status_code == 302

    admin.update_user(paused.username, {"enabled": True})
    call_command("sync_users")

    assert works(paused)
    assert not works(gone)
    assert User.objects.get(pk=paused.pk).is_active
    client.force_login(paused)  # their activity says who did it: someone in Keycloak
    activity = client.get(reverse("activity")).content.decode()
    row = activity.partition('data-action="user_off"')[2].partition("</tr>")[0]
    assert "<td>Keycloak</td>" in row, row
    assert "the portal" not in row


def test_an_admin_suspension_survives_the_owner_being_enabled_again(
    make_keycloak_user: Callable[..., KeycloakUser],
    bootstrapped: Connection,
    sample: Api,
    admin_user: User,
) -> None:
    owner = portal_user(make_keycloak_user(), first_name="Test")
    revealed = issue(owner, sample, name="app", lifetime_days=30)
    lifecycle.suspend_key(revealed.key, actor=admin_user, reason="Abuse")
    call_command("sync_users")

    bootstrapped.admin.update_user(owner.username, {"enabled": False})
    bootstrapped.admin.update_user(owner.username, {"enabled": True})
    call_command("sync_users")

    key = ApiKey.objects.get()
    assert (key.status, key.status_reason) == ("suspended", "Abuse")
