"""Keycloak down, slow or failing at a step: clear messages, no orphaned client, no half key.

The server is the real one. Where a fault cannot be had from it on demand (an answer lost
after Keycloak acted, a 500 in the middle), the gateway function is wrapped to raise it. Each
behaviour the portal relies on is also shown by the real server: a refusal (a service account
without rights gets 403), a 409 for a clientId taken (adopted only with the key's marker),
a 404 for a client already deleted, and a stopped Keycloak (tests/test_outage.py).
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from apikeys.keycloak import client as keycloak
from apikeys.keycloak import desired
from apikeys.keycloak.client import Connection, KeycloakRejected, KeycloakUnavailable
from apikeys.models import Api, ApiKey, AuditEntry, User, WrongState
from apikeys.operations import lifecycle
from apikeys.operations.reconcile import reconcile
from tests.conftest import key_clients_in_keycloak
from tests.factories import issue
from tests.tokens import request_token

pytestmark = [pytest.mark.embedded, pytest.mark.usefixtures("key_clients")]


@pytest.fixture
def keycloak_down(settings: Any) -> None:
    """Point the portal at a port where nothing listens: connections are refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.KEYCLOAK_URL = f"http://127.0.0.1:{port}"


@pytest.fixture
def keycloak_silent(settings: Any) -> Iterator[None]:
    """Point the portal at a server that accepts connections and never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        settings.KEYCLOAK_URL = f"http://127.0.0.1:{server.getsockname()[1]}"
        settings.KEYCLOAK_TIMEOUT = 1
        yield


def portal_clients(conn: Connection) -> list[str]:
    return [c["clientId"] for c in key_clients_in_keycloak(conn)]


def lose_the_answer_after(real: Any, then: Any = None) -> Any:
    """Wrap a gateway call: Keycloak does the work, then the answer never arrives."""

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        real(*args, **kwargs)
        if then:
            then()
        raise KeycloakUnavailable("read timed out (injected)")

    return wrapped


@pytest.mark.usefixtures("keycloak_down")
def test_with_keycloak_down_creating_fails_fast_and_leaves_nothing(
    owner: User, sample: Api
) -> None:
    started = time.monotonic()
    with pytest.raises(lifecycle.KeyNotIssued, match="No key was created"):
        issue(owner, sample, "billing")

    assert time.monotonic() - started < 5
    assert not ApiKey.objects.exists()


@pytest.mark.usefixtures("keycloak_silent")
def test_with_keycloak_silent_creating_gives_up_within_seconds_and_leaves_nothing(
    client: Client, owner: User, sample: Api
) -> None:
    client.force_login(owner)
    started = time.monotonic()

    response = client.post(
        reverse("new_key"), {"name": "slow", "api": "sample", "lifetime_days": "30"}
    )

    assert time.monotonic() - started < 10
    assert response.status_code == 200
    assert "Keycloak, which issues the keys, is not answering" in response.content.decode()
    assert not ApiKey.objects.exists()


def test_an_answer_lost_after_the_client_was_made_is_undone(
    owner: User, sample: Api, key_clients: Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(keycloak, "create_client", lose_the_answer_after(keycloak.create_client))

    with pytest.raises(lifecycle.KeyNotIssued, match="No key was created"):
        issue(owner, sample, "billing")

    assert not ApiKey.objects.exists()
    assert portal_clients(key_clients) == []


def test_a_server_error_on_create_leaves_nothing(
    owner: User, sample: Api, key_clients: Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    def answer_500(*args: Any, **kwargs: Any) -> str:
        raise KeycloakUnavailable("Keycloak answered 500 to POST /clients (injected)")

    monkeypatch.setattr(keycloak, "create_client", answer_500)

    with pytest.raises(lifecycle.KeyNotIssued, match="No key was created"):
        issue(owner, sample, "billing")

    assert not ApiKey.objects.exists()
    assert portal_clients(key_clients) == []


def test_a_refusal_from_keycloak_is_reported_and_leaves_nothing(
    owner: User, sample: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> str:
        raise KeycloakRejected(400, "Client policy rejected the request (injected)")

    monkeypatch.setattr(keycloak, "create_client", refuse)

    with pytest.raises(lifecycle.KeyNotIssued, match="refused the request"):
        issue(owner, sample, "billing")

    assert not ApiKey.objects.exists()


def test_a_key_left_unfinished_is_finished_later_with_one_client(
    owner: User,
    sample: Api,
    key_clients: Connection,
    monkeypatch: pytest.MonkeyPatch,
    settings: Any,
) -> None:
    # The client is made, the answer is lost, and Keycloak is gone before the clean-up.
    real_url = settings.KEYCLOAK_URL

    def go_down() -> None:
        settings.KEYCLOAK_URL = "http://127.0.0.1:9"

    monkeypatch.setattr(
        keycloak, "create_client", lose_the_answer_after(keycloak.create_client, go_down)
    )
    with pytest.raises(lifecycle.KeyNotIssued, match="listed as unfinished"):
        issue(owner, sample, "billing")
    key = ApiKey.objects.get()
    assert key.status == ApiKey.Status.UNFINISHED
    assert portal_clients(key_clients) == [key.client_id]

    monkeypatch.undo()
    settings.KEYCLOAK_URL = real_url
    revealed = lifecycle.finish_key(key, actor=owner)

    assert revealed.key.status == ApiKey.Status.ACTIVE
    assert portal_clients(key_clients) == [key.client_id]
    assert request_token(key.client_id, revealed.secret).status_code == 200
    assert AuditEntry.objects.filter(key=key, action="created").count() == 1


def test_discarding_an_unfinished_key_removes_its_client_and_record(
    client: Client, owner: User, sample: Api, key_clients: Connection, settings: Any
) -> None:
    key = ApiKey.objects.create(owner=owner, api=sample, name="half", expires_at=sample.created_at)
    keycloak.create_client(
        key_clients, desired.key_client(key, now=timezone.now(), secret="kcak_never_shown")
    )
    client.force_login(owner)

    response = client.post(reverse("discard_key", args=[key.pk]))

    assert response.status_code == 302
    assert not ApiKey.objects.exists()
    assert portal_clients(key_clients) == []


def test_a_client_with_the_keys_id_but_not_its_marker_is_left_alone(
    owner: User, sample: Api, key_clients: Connection
) -> None:
    key = ApiKey.objects.create(owner=owner, api=sample, name="x", expires_at=sample.created_at)
    keycloak.create_client(key_clients, {"clientId": key.client_id, "publicClient": True})

    with pytest.raises(KeycloakRejected, match="not this key's"):
        lifecycle.finish_key(key, actor=owner)

    assert portal_clients(key_clients) == [key.client_id]
    assert ApiKey.objects.get().status == ApiKey.Status.UNFINISHED


def test_with_keycloak_down_rotating_fails_and_the_old_secret_still_works(
    client: Client, owner: User, sample: Api, settings: Any
) -> None:
    revealed = issue(owner, sample, "billing")
    real_url = settings.KEYCLOAK_URL
    settings.KEYCLOAK_URL = "http://127.0.0.1:9"
    client.force_login(owner)

    response = client.post(reverse("rotate_key", args=[revealed.key.pk]))

    assert "The old secret still works" in response.content.decode()
    settings.KEYCLOAK_URL = real_url
    assert request_token(revealed.key.client_id, revealed.secret).status_code == 200
    assert not AuditEntry.objects.filter(action="rotated").exists()


def test_with_keycloak_down_a_revocation_is_recorded_and_completed_when_it_is_back(
    client: Client, owner: User, sample: Api, settings: Any
) -> None:
    revealed = issue(owner, sample, "billing")
    real_url = settings.KEYCLOAK_URL
    settings.KEYCLOAK_URL = "http://127.0.0.1:9"
    client.force_login(owner)

    response = client.post(reverse("revoke_key", args=[revealed.key.pk]), follow=True)

    assert "The decision is recorded" in response.content.decode()
    assert ApiKey.objects.get().status == ApiKey.Status.REVOKING
    with pytest.raises(WrongState):  # no rotating a working key back out of it
        lifecycle.rotate_secret(ApiKey.objects.get(), actor=owner)
    settings.KEYCLOAK_URL = real_url
    reconcile(grace=timedelta(0))
    assert ApiKey.objects.get().status == ApiKey.Status.REVOKED
    assert request_token(revealed.key.client_id, revealed.secret).status_code == 401


def test_a_revoke_that_died_after_deleting_the_client_completes_on_retry(
    owner: User, sample: Api, key_clients: Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    revealed = issue(owner, sample, "billing")
    monkeypatch.setattr(keycloak, "delete_client", lose_the_answer_after(keycloak.delete_client))
    with pytest.raises(KeycloakUnavailable):
        lifecycle.revoke_key(revealed.key, actor=owner)
    assert ApiKey.objects.get().status == ApiKey.Status.REVOKING
    monkeypatch.undo()

    lifecycle.revoke_key(revealed.key, actor=owner)

    assert ApiKey.objects.get().status == ApiKey.Status.REVOKED
    assert request_token(revealed.key.client_id, revealed.secret).status_code == 401
    assert portal_clients(key_clients) == []


@pytest.fixture
def portal_without_rights(key_clients: Connection, settings: Any) -> Iterator[None]:
    """The portal running as a real service account that holds no realm-management role."""
    client_id = f"weak-{uuid.uuid4().hex[:8]}"
    client_uuid = keycloak.create_client(
        key_clients,
        {
            "clientId": client_id,
            "secret": "weak-secret",
            "publicClient": False,
            "serviceAccountsEnabled": True,
            "standardFlowEnabled": False,
        },
    )
    settings.KEYCLOAK_SERVICE_CLIENT_ID = client_id
    settings.KEYCLOAK_SERVICE_CLIENT_SECRET = "weak-secret"
    yield
    keycloak.delete_client(key_clients, client_uuid)


@pytest.mark.usefixtures("portal_without_rights")
def test_a_real_refusal_from_keycloak_is_reported_and_leaves_nothing(
    client: Client, owner: User, sample: Api, key_clients: Connection
) -> None:
    client.force_login(owner)

    response = client.post(
        reverse("new_key"), {"name": "refused", "api": "sample", "lifetime_days": "30"}
    )

    assert "Keycloak, which issues the keys, refused the request." in response.content.decode()
    assert "No key was created" in response.content.decode()
    assert not ApiKey.objects.exists()
    assert portal_clients(key_clients) == []
