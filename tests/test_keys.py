"""Customers' keys against the real Keycloak: issue, reveal once, rotate, revoke, expire."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from apikeys.credentials.secret_format import is_well_formed
from apikeys.keycloak import client as keycloak
from apikeys.keycloak.client import Connection
from apikeys.models import Api, ApiKey, AuditEntry, Permission, User, WrongState
from apikeys.operations import lifecycle
from tests.conftest import key_clients_in_keycloak
from tests.factories import issue
from tests.tokens import claims, request_token

pytestmark = [pytest.mark.embedded, pytest.mark.usefixtures("key_clients")]


def test_a_new_key_gets_a_token_for_its_api_and_nothing_more(owner: User, sample: Api) -> None:
    revealed = issue(owner, sample, "billing service", lifetime_days=90)

    response = request_token(revealed.key.client_id, revealed.secret)

    assert response.status_code == 200, response.text
    body = response.json()
    assert "refresh_token" not in body
    assert body["expires_in"] == sample.access_token_lifespan
    token = claims(body["access_token"])
    audience = token["aud"] if isinstance(token["aud"], list) else [token["aud"]]
    assert "sample-api" in audience
    assert token["azp"] == revealed.key.client_id
    assert "realm_access" not in token
    assert "resource_access" not in token
    assert token["sub"]  # from the `basic` scope


def test_the_key_client_allows_the_client_credentials_grant_only(
    owner: User, sample: Api, key_clients: Connection
) -> None:
    key = issue(owner, sample, "billing service", lifetime_days=90).key

    client = keycloak.get_client(key_clients, key.keycloak_id)

    assert client["clientId"] == key.client_id
    assert client["publicClient"] is False
    assert client["serviceAccountsEnabled"] is True
    assert client["standardFlowEnabled"] is False
    assert client["implicitFlowEnabled"] is False
    assert client["directAccessGrantsEnabled"] is False
    assert client["fullScopeAllowed"] is False
    attributes = client["attributes"]
    assert attributes["oauth2.device.authorization.grant.enabled"] == "false"
    assert attributes["oidc.ciba.grant.enabled"] == "false"
    assert attributes["access.token.lifespan"] == str(sample.access_token_lifespan)
    assert attributes["portal.key"] == str(key.pk)
    assert attributes["portal.owner"] == owner.username
    assert set(client["defaultClientScopes"]) == {"api-sample", "basic", "service_account"}
    assert client["optionalClientScopes"] == []


def test_the_secret_is_recognisable_and_the_client_id_fixed_by_the_record(
    owner: User, sample: Api
) -> None:
    revealed = issue(owner, sample, "billing service", lifetime_days=90)

    assert is_well_formed(revealed.secret)
    assert revealed.key.client_id == f"apikey-{revealed.key.pk.hex}"
    assert revealed.key.status == ApiKey.Status.ACTIVE


def test_rotating_refuses_the_old_secret_and_accepts_the_new(owner: User, sample: Api) -> None:
    first = issue(owner, sample, "billing service", lifetime_days=90)

    second = lifecycle.rotate_secret(first.key, actor=owner)

    assert second.secret != first.secret
    assert request_token(first.key.client_id, first.secret).status_code == 401
    assert request_token(first.key.client_id, second.secret).status_code == 200
    assert AuditEntry.objects.filter(key=first.key, action="rotated").count() == 1


def test_a_revoked_key_gets_no_token_and_stays_in_the_history(
    owner: User, sample: Api, key_clients: Connection
) -> None:
    revealed = issue(owner, sample, "billing service", lifetime_days=90)

    lifecycle.revoke_key(revealed.key, actor=owner, ip_address="192.0.2.7")

    assert request_token(revealed.key.client_id, revealed.secret).status_code == 401
    key = ApiKey.objects.get(pk=revealed.key.pk)
    assert key.status == ApiKey.Status.REVOKED
    assert key.ended_at is not None
    assert keycloak.find_client(key_clients, key.client_id) is None
    entry = AuditEntry.objects.get(key=key, action="revoked")
    assert (entry.actor, entry.ip_address) == (owner, "192.0.2.7")


def test_revoking_twice_is_refused_without_touching_keycloak(owner: User, sample: Api) -> None:
    key = issue(owner, sample, "billing service", lifetime_days=90).key
    lifecycle.revoke_key(key, actor=owner)

    with pytest.raises(WrongState):
        lifecycle.revoke_key(key, actor=owner)


def test_the_expiry_command_disables_keys_past_their_date(
    owner: User, sample: Api, key_clients: Connection
) -> None:
    expiring = issue(owner, sample, "expiring", lifetime_days=90)
    lasting = issue(owner, sample, "lasting", lifetime_days=90)
    ApiKey.objects.filter(pk=expiring.key.pk).update(
        expires_at=timezone.now() - timedelta(minutes=1)
    )

    call_command("expire_keys")

    assert request_token(expiring.key.client_id, expiring.secret).status_code == 401
    assert request_token(lasting.key.client_id, lasting.secret).status_code == 200
    assert ApiKey.objects.get(pk=expiring.key.pk).status == ApiKey.Status.EXPIRED
    assert ApiKey.objects.get(pk=lasting.key.pk).status == ApiKey.Status.ACTIVE
    assert keycloak.get_client(key_clients, expiring.key.keycloak_id)["enabled"] is False
    entry = AuditEntry.objects.get(key=expiring.key, action="expired")
    assert entry.actor is None


def test_the_expiry_command_run_again_changes_nothing(owner: User, sample: Api) -> None:
    key = issue(owner, sample, "billing service", lifetime_days=90).key
    ApiKey.objects.filter(pk=key.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    call_command("expire_keys")

    call_command("expire_keys")

    assert AuditEntry.objects.filter(key=key, action="expired").count() == 1


def test_the_key_list_shows_live_keys_apart_from_ended_ones(
    client: Client, owner: User, sample: Api
) -> None:
    live = issue(owner, sample, "still here", lifetime_days=90).key
    ended = issue(owner, sample, "gone", lifetime_days=90).key
    lifecycle.revoke_key(ended, actor=owner)
    client.force_login(owner)

    response = client.get(reverse("home"))

    text = response.content.decode()
    live_table, _, history = text.partition('data-testid="ended-keys"')
    assert live.client_id in live_table
    assert ended.client_id not in live_table
    assert ended.client_id in history
    assert "in 89 days" in live_table


def test_a_key_name_can_be_reused_once_the_old_key_is_revoked(owner: User, sample: Api) -> None:
    old = issue(owner, sample, "production", lifetime_days=90).key
    with pytest.raises(lifecycle.NameTaken):
        issue(owner, sample, "production", lifetime_days=90)

    lifecycle.revoke_key(old, actor=owner)

    assert issue(owner, sample, "production", lifetime_days=90).key.status == ApiKey.Status.ACTIVE


def test_another_customers_key_is_the_same_as_no_key(
    client: Client, owner: User, other_user: User, sample: Api
) -> None:
    key = issue(owner, sample, "billing service", lifetime_days=90).key
    client.force_login(other_user)

    for name in ("key_detail", "rotate_key", "revoke_key"):
        assert client.get(reverse(name, args=[key.pk])).status_code == 404
    for name in ("rotate_key", "revoke_key", "finish_key", "discard_key"):
        assert client.post(reverse(name, args=[key.pk])).status_code == 404
    assert ApiKey.objects.get(pk=key.pk).status == ApiKey.Status.ACTIVE
    assert key.client_id not in client.get(reverse("home")).content.decode()


def test_every_key_url_sends_anonymous_visitors_to_sign_in(
    client: Client, owner: User, sample: Api
) -> None:
    key = issue(owner, sample, "billing service", lifetime_days=90).key
    urls = [reverse("home"), reverse("new_key")] + [
        reverse(name, args=[key.pk])
        for name in ("key_detail", "rotate_key", "revoke_key", "finish_key", "discard_key")
    ]

    for url in urls:
        response = client.post(url) if url.endswith(("finish/", "discard/")) else client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("oidc_authentication_init")), url


def test_an_unknown_key_id_is_404(client: Client, owner: User) -> None:
    client.force_login(owner)
    assert client.get(reverse("key_detail", args=[uuid.uuid4()])).status_code == 404


def test_concurrent_creates_beyond_the_quota_make_exactly_the_quota(
    transactional_db: None, sample: Api, key_clients: Connection, settings: object
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connections

    settings.MAX_LIVE_KEYS_PER_USER = 10  # type: ignore[attr-defined]
    owner = User.objects.create(username=str(uuid.uuid4()), email="busy@example.com")

    def create(n: int) -> str:
        try:
            return issue(owner, sample, f"key {n}", lifetime_days=90).key.client_id
        except lifecycle.QuotaExceeded:
            return "refused"
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(create, range(20)))

    assert results.count("refused") == 10
    assert owner.api_keys.live().count() == 10
    ours = [
        c
        for c in key_clients_in_keycloak(key_clients)
        if c["attributes"].get("portal.owner") == owner.username
    ]
    assert sorted(c["clientId"] for c in ours) == sorted(r for r in results if r != "refused")


def test_a_key_just_reserved_is_locked_by_one_light_read_and_a_changed_one_is_read_again(
    owner: User, sample: Api, orders: dict[str, Permission], key_clients: Connection
) -> None:
    reserve = lifecycle.reserve_key
    fresh = reserve(owner, lifecycle.KeyOrder(api=sample, name="fresh", lifetime_days=30))
    changed = reserve(owner, lifecycle.KeyOrder(api=sample, name="changed", lifetime_days=30))
    ended = reserve(owner, lifecycle.KeyOrder(api=sample, name="ended", lifetime_days=30))
    ApiKey.objects.filter(pk=changed.pk).update(description="changed meanwhile")
    ApiKey.objects.filter(pk=ended.pk).update(status=ApiKey.Status.REVOKED)

    with transaction.atomic(), CaptureQueriesContext(connection) as read:
        assert ApiKey.objects.locked_as_known(fresh) is fresh  # unchanged: kept as it is
    made = lifecycle.complete_key(changed, actor=owner)  # the objects held are stale
    with pytest.raises(WrongState, match="revoked"):
        lifecycle.finish_key(ended, actor=owner)

    assert sum(q["sql"].startswith("SELECT") for q in read.captured_queries) == 1
    assert made.key.description == "changed meanwhile"
    assert made.key.permission_names == ["orders:read"]  # the default, read again
    assert request_token(made.key.client_id, made.secret).status_code == 200
    assert [c["clientId"] for c in key_clients_in_keycloak(key_clients)] == [made.key.client_id]


def test_issuing_reads_the_api_as_it_is_now_with_its_permissions_in_one_query(
    owner: User, sample: Api, orders: dict[str, Permission]
) -> None:
    Permission.objects.filter(name="orders:write").update(default=True)  # an admin, meanwhile
    with CaptureQueriesContext(connection) as read:
        api = Api.objects.now_with_permissions(sample.pk)
        given = api.permissions_called(None)
    bare = Api.objects.create(name="Bare", slug="bare", audience="bare")  # no permissions
    Api.objects.filter(pk=bare.pk).update(retired_at=timezone.now())

    assert len(read) == 1
    assert [p.name for p in given] == ["orders:read", "orders:write"]
    assert Api.objects.now_with_permissions(bare.pk).permissions_called(None) == []
    with pytest.raises(lifecycle.KeyNotIssued, match="Bare is retired"):
        lifecycle.issue_key(owner, lifecycle.KeyOrder(api=bare, name="late", lifetime_days=30))
    assert not owner.api_keys.exists()


def test_a_key_is_made_as_its_api_is_now_not_as_the_form_read_it(
    owner: User, sample: Api, key_clients: Connection
) -> None:
    as_the_form_read_it = Api.objects.get(pk=sample.pk)
    Api.objects.filter(pk=sample.pk).update(requires_approval=True)  # an admin, meanwhile
    order = lifecycle.KeyOrder(
        api=as_the_form_read_it, name="late", lifetime_days=30, justification="Reports"
    )

    made = lifecycle.issue_key(owner, order)

    assert made.key.status == ApiKey.Status.PENDING
    client = keycloak.find_client(key_clients, made.key.client_id)
    assert client is not None
    assert client["enabled"] is False
