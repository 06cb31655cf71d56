"""Software that registers itself (RFC 7591/7592) at the portal's registration endpoint, on
the real Keycloak."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from django.conf import settings
from django.test import Client

from apikeys.keycloak.client import Connection
from apikeys.models import Api, ApiKey, User
from apikeys.operations import registration
from tests.conftest import key_clients_in_keycloak
from tests.tokens import claims, request_token

pytestmark = [pytest.mark.embedded, pytest.mark.usefixtures("key_clients")]


@pytest.fixture
def made(owner: User, sample: Api) -> registration.NewRegistrationToken:
    return registration.create_token(
        owner,
        api=sample,
        name="pipeline",
        max_registrations=2,
        expires_in_days=7,
        key_lifetime_days=30,
    )


def register(client: Client, token: str, body: dict[str, Any]) -> Any:
    return client.post(
        "/register",
        json.dumps(body),
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )


def test_software_registers_a_key_and_gets_tokens_with_it(
    client: Client, made: registration.NewRegistrationToken, key_clients: Connection
) -> None:
    answer = register(
        client,
        made.secret,
        {"client_name": "billing deploy", "grant_types": ["client_credentials"]},
    )

    assert answer.status_code == 201, answer.content
    body = answer.json()
    assert body["client_secret"].startswith("kcak_")
    assert body["registration_access_token"].startswith("kcra_")
    assert body["token_endpoint_auth_method"] == "client_secret_basic"
    granted = request_token(body["client_id"], body["client_secret"])
    assert granted.status_code == 200
    assert claims(granted.json()["access_token"])["azp"] == body["client_id"]
    key = ApiKey.objects.get(client_id=body["client_id"])
    assert (key.name, key.registered_with) == ("billing deploy", made.token)

    read = client.get(
        f"/register/{body['client_id']}",
        headers={"Authorization": f"Bearer {body['registration_access_token']}"},
    )
    assert read.status_code == 200
    assert read.json()["client_name"] == "billing deploy"
    assert "client_secret" not in read.json()


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"redirect_uris": ["https://x.example/cb"]}, "invalid_redirect_uri"),
        ({"grant_types": ["authorization_code"]}, "invalid_client_metadata"),
        ({"protocolMappers": [{"name": "x"}]}, "invalid_client_metadata"),
        ({"fullScopeAllowed": True}, "invalid_client_metadata"),
        ({"scope": "openid profile"}, "invalid_client_metadata"),
        ({"software_statement": "eyJ..."}, "invalid_software_statement"),
    ],
)
def test_a_registration_breaking_a_rule_makes_nothing(
    client: Client,
    made: registration.NewRegistrationToken,
    key_clients: Connection,
    body: dict[str, Any],
    error: str,
) -> None:
    before = len(key_clients_in_keycloak(key_clients))
    answer = register(client, made.secret, body)
    assert answer.status_code == 400, answer.content
    assert answer.json()["error"] == error
    assert len(key_clients_in_keycloak(key_clients)) == before
    made.token.refresh_from_db()
    assert made.token.registrations == 0


def test_keycloaks_own_registration_is_closed(sample: Api) -> None:
    base = f"{settings.KEYCLOAK_URL}/realms/{settings.KEYCLOAK_REALM}/clients-registrations"
    for provider in ("default", "openid-connect"):
        answer = requests.post(
            f"{base}/{provider}",
            json={"clientId": "stranger", "redirect_uris": ["https://x.example/cb"]},
            timeout=10,
        )
        assert answer.status_code in (400, 401, 403), (provider, answer.text)
    discovery = requests.get(
        f"{settings.KEYCLOAK_URL}/realms/{settings.KEYCLOAK_REALM}/.well-known/openid-configuration",
        timeout=10,
    ).json()
    assert discovery["registration_endpoint"].endswith("/register")
