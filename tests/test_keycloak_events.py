"""Keycloak tells the portal as it happens: the event listener (keycloak-extension/) loaded in
the real Keycloak pushes to the live portal, and no job runs. The polling jobs stay the
backstop for what the push missed."""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from playwright.sync_api import Page
from standardwebhooks.webhooks import Webhook

from apikeys.keycloak import desired
from apikeys.keycloak.client import Connection
from apikeys.models import Api, ApiKey, AuditEntry, KeyUsage, User
from apikeys.operations import lifecycle
from apikeys.operations.accounts import OWNER_DISABLED
from tests.accounts import KeycloakUser, force_login_with_second_factor
from tests.conftest import TARGET, eventually
from tests.factories import issue, portal_user, record_key, works
from tests.tokens import request_token

# The live server answers the listener from its own thread: it must see what tests commit.
pytestmark = [
    pytest.mark.embedded,
    pytest.mark.usefixtures("key_clients"),
    pytest.mark.django_db(transaction=True),
]


def test_the_realm_has_the_listener_only_while_push_is_on(pushing: Connection) -> None:
    realm = pushing.admin.get_realm(pushing.realm)
    assert desired.EVENT_LISTENER in realm["eventsListeners"]
    assert "jboss-logging" in realm["eventsListeners"]  # the operator's stay


def test_disabled_then_enabled_in_keycloak_the_keys_follow_within_seconds_without_a_job(
    pushing: Connection, make_keycloak_user: Callable[..., KeycloakUser], sample: Api
) -> None:
    paused = portal_user(make_keycloak_user())
    revealed = issue(paused, sample, name="app", lifetime_days=30)
    assert works(revealed)

    pushing.admin.update_user(paused.username, {"enabled": False})

    eventually(lambda: ApiKey.objects.get(pk=revealed.key.pk).status == "suspended")
    assert not works(revealed)  # disabled in Keycloak as well
    key = ApiKey.objects.get(pk=revealed.key.pk)
    assert key.status_reason == OWNER_DISABLED
    assert not User.objects.get(pk=paused.pk).is_active

    pushing.admin.update_user(paused.username, {"enabled": True})

    eventually(lambda: ApiKey.objects.get(pk=revealed.key.pk).status == "active")
    assert works(revealed)


def test_a_user_deleted_in_keycloak_has_their_keys_revoked_within_seconds(
    pushing: Connection, make_keycloak_user: Callable[..., KeycloakUser], sample: Api
) -> None:
    gone = portal_user(make_keycloak_user())
    bystander = portal_user(make_keycloak_user())
    keys = [issue(u, sample, name="app", lifetime_days=30) for u in (gone, bystander)]

    pushing.admin.delete_user(gone.username)

    took = eventually(lambda: ApiKey.objects.get(pk=keys[0].key.pk).status == "revoked")
    assert not works(keys[0])
    assert works(keys[1])
    assert took < TARGET


def test_a_user_who_deletes_their_own_account_has_their_keys_revoked(
    pushing: Connection,
    make_keycloak_user: Callable[..., KeycloakUser],
    sample: Api,
    page: Page,
) -> None:
    """Keycloak's own "Delete account" (an action a realm may offer its users)."""
    admin = pushing.admin
    action = admin.connection.raw_get(
        f"admin/realms/{pushing.realm}/authentication/required-actions/delete_account"
    ).json()
    admin.connection.raw_put(
        f"admin/realms/{pushing.realm}/authentication/required-actions/delete_account",
        data=json.dumps({**action, "enabled": True}),
    )
    try:
        account = make_keycloak_user()
        leaving = portal_user(account)
        revealed = issue(leaving, sample, name="app", lifetime_days=30)
        account_client = admin.get_client_id("account")
        assert account_client is not None
        role = admin.get_client_role(account_client, "delete-account")
        admin.assign_client_role(account.id, account_client, [role])
        verifier = base64.urlsafe_b64encode(uuid.uuid4().bytes * 2).rstrip(b"=")
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier).digest()).rstrip(b"=")
        realm = f"{settings.KEYCLOAK_PUBLIC_URL}/realms/{pushing.realm}"
        page.goto(
            f"{realm}/protocol/openid-connect/auth?client_id=account-console"
            f"&redirect_uri={realm}/account/&response_type=code&scope=openid"
            f"&kc_action=delete_account&code_challenge={challenge.decode()}"
            "&code_challenge_method=S256"
        )
        page.fill("#username", account.email)
        page.fill("#password", account.password)
        page.click("#kc-login")
        page.get_by_role("button", name="Confirm").click()

        eventually(lambda: ApiKey.objects.get(pk=revealed.key.pk).status == "revoked")
        assert not works(revealed)
        assert not User.objects.get(pk=leaving.pk).is_active
    finally:
        admin.connection.raw_put(
            f"admin/realms/{pushing.realm}/authentication/required-actions/delete_account",
            data=json.dumps(action),
        )


def test_the_admin_role_removed_in_keycloak_closes_the_admin_pages_within_seconds(
    pushing: Connection, make_keycloak_user: Callable[..., KeycloakUser], client: Client
) -> None:
    account = make_keycloak_user(roles=(settings.OIDC_ADMIN_ROLE,))
    admin_user = portal_user(account, is_staff=True)
    force_login_with_second_factor(client, admin_user)
    assert client.get("/manage/keys/").status_code == 200

    role = pushing.admin.get_realm_role(settings.OIDC_ADMIN_ROLE)
    pushing.admin.delete_realm_roles_of_user(account.id, [role])

    eventually(lambda: client.get("/manage/keys/").status_code != 200)
    assert AuditEntry.objects.filter(
        about_user=admin_user, action=AuditEntry.Action.ADMIN_REMOVED
    ).exists()


def test_a_token_request_updates_last_used_and_the_days_count_and_a_wrong_secret_counts(
    pushing: Connection, owner: User, sample: Api
) -> None:
    revealed = issue(owner, sample, name="app", lifetime_days=30)
    before = timezone.now()
    assert works(revealed)

    eventually(lambda: (ApiKey.objects.get(pk=revealed.key.pk).last_used_at or before) >= before)
    eventually(lambda: KeyUsage.objects.filter(key=revealed.key, grants=1).exists())

    assert request_token(revealed.key.client_id, "not-the-secret").status_code == 401
    eventually(lambda: KeyUsage.objects.filter(key=revealed.key, wrong_credentials=1).exists())

    lifecycle.suspend_key(revealed.key, actor=None, reason="checking")
    assert not works(revealed)
    eventually(lambda: KeyUsage.objects.filter(key=revealed.key, refused=1).exists())
    assert KeyUsage.objects.get(key=revealed.key).grants == 1


def test_with_the_portal_refusing_events_the_backstop_job_applies_the_change_after(
    pushing: Connection,
    make_keycloak_user: Callable[..., KeycloakUser],
    sample: Api,
    settings: Any,
) -> None:
    """The portal "down": it takes no events (the listener gets a 404 and drops them)."""
    paused = portal_user(make_keycloak_user())
    revealed = issue(paused, sample, name="app", lifetime_days=30)
    call_command("sync_users")  # start from now
    settings.KEYCLOAK_EVENTS_SECRET = ""

    pushing.admin.update_user(paused.username, {"enabled": False})
    time.sleep(2)
    assert ApiKey.objects.get(pk=revealed.key.pk).status == "active"  # nothing arrived

    call_command("sync_users")

    assert ApiKey.objects.get(pk=revealed.key.pk).status == "suspended"
    assert not works(revealed)


# The endpoint itself: what it refuses, and each event applied once.


def signed(
    body: dict[str, Any], *, secret: str | None = None, at: float | None = None
) -> dict[str, Any]:
    raw = json.dumps(body)
    message_id = f"msg_{uuid.uuid4().hex}"
    moment = datetime.fromtimestamp(at or time.time(), tz=UTC)
    signature = Webhook(secret or settings.KEYCLOAK_EVENTS_SECRET).sign(message_id, moment, raw)
    return {
        "data": raw,
        "content_type": "application/json",
        "headers": {
            "webhook-id": message_id,
            "webhook-timestamp": str(int(moment.timestamp())),
            "webhook-signature": signature,
        },
    }


def login_event(key: ApiKey, **fields: Any) -> dict[str, Any]:
    return {
        "kind": "event",
        "id": str(uuid.uuid4()),
        "time": int(time.time() * 1000),
        "type": "CLIENT_LOGIN",
        "clientId": key.client_id,
        **fields,
    }


@pytest.fixture
def a_key(owner: User, sample: Api) -> ApiKey:
    return record_key(owner, sample, name="counted")


def test_an_event_delivered_twice_is_applied_once(client: Client, a_key: ApiKey) -> None:
    event = login_event(a_key)
    for _ in range(2):  # two deliveries, each freshly signed (a retry of the listener)
        response = client.post("/keycloak/events", **signed({"events": [event, event]}))
        assert response.status_code == 204
    assert KeyUsage.objects.get(key=a_key).grants == 1


def test_an_older_account_change_arriving_late_changes_nothing(
    client: Client, make_keycloak_user: Callable[..., KeycloakUser]
) -> None:
    """Batches are not ordered: "enabled" (earlier) arrives after "disabled" (later)."""
    account = make_keycloak_user()
    user = portal_user(account)
    now = int(time.time() * 1000)

    def update(enabled: bool, at: int) -> dict[str, Any]:
        return {
            "kind": "admin",
            "id": str(uuid.uuid4()),
            "time": at,
            "operationType": "UPDATE",
            "resourceType": "USER",
            "resourcePath": f"users/{account.id}",
            "representation": json.dumps({"enabled": enabled}),
        }

    for batch in ([update(False, now)], [update(True, now - 1000)]):
        assert client.post("/keycloak/events", **signed({"events": batch})).status_code == 204

    assert not User.objects.get(pk=user.pk).is_active


def test_a_forged_event_is_refused_and_changes_nothing(client: Client, a_key: ApiKey) -> None:
    forged = "whsec_" + base64.b64encode(b"an attacker's guess, 32 bytes!!!").decode()
    response = client.post(
        "/keycloak/events", **signed({"events": [login_event(a_key)]}, secret=forged)
    )
    assert response.status_code == 401
    assert not KeyUsage.objects.exists()
    assert ApiKey.objects.get(pk=a_key.pk).last_used_at is None


def test_a_replayed_event_is_refused(client: Client, a_key: ApiKey) -> None:
    """A captured delivery sent again later: its signed timestamp is too old."""
    replay = signed({"events": [login_event(a_key)]}, at=time.time() - 600)
    assert client.post("/keycloak/events", **replay).status_code == 401
    assert not KeyUsage.objects.exists()


def test_a_malformed_batch_gets_a_clear_400(client: Client) -> None:
    response = client.post("/keycloak/events", **signed({"events": [{"type": "CLIENT_LOGIN"}]}))
    assert response.status_code == 400
    assert '"id"' in response.json()["error"]


def test_without_a_secret_the_endpoint_takes_nothing(client: Client, settings: Any) -> None:
    settings.KEYCLOAK_EVENTS_SECRET = ""
    response = client.post("/keycloak/events", data="{}", content_type="application/json")
    assert response.status_code == 404
