"""Software that registers itself (RFC 7591/7592) at the portal's registration endpoint, on
the real Keycloak: a client no one here wrote (oauth4webapi, tests/js/), each rule of a
registration token, each broken rule of the metadata, RFC 7592, a race for a token's last
use, a crash between Keycloak and the record, and Keycloak's own endpoints closed."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec
from django.conf import settings
from django.test import Client
from django.utils import timezone
from jwt.algorithms import ECAlgorithm

from apikeys import crash_points
from apikeys.crash_points import SimulatedCrash
from apikeys.keycloak import client as keycloak
from apikeys.keycloak.client import Connection
from apikeys.keycloak.key_clients import DPOP_ATTRIBUTE as DPOP
from apikeys.models import Api, ApiKey, Permission, RegistrationToken, User
from apikeys.operations import lifecycle, permissions, registration
from apikeys.operations.reconcile import ABANDONED, reconcile
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


def new_token(owner: User, api: Api, **limits: Any) -> registration.NewRegistrationToken:
    """A registration token for `api` with the given limits (the others as `made`'s)."""
    wanted: dict[str, Any] = {"max_registrations": 2, "expires_in_days": 7, "key_lifetime_days": 30}
    return registration.create_token(owner, api=api, name="software", **(wanted | limits))


def manage(client: Client, method: str, body: dict[str, Any], access: str) -> Any:
    """An RFC 7592 request on the client that `body` (a registration answer) describes."""
    call = getattr(client, method.lower())
    data = json.dumps(body.get("update", {})) if method == "PUT" else None
    extra = {"content_type": "application/json"} if method == "PUT" else {}
    return call(
        f"/register/{body['client_id']}",
        data,
        headers={"Authorization": f"Bearer {access}"},
        **extra,
    )


def clients_in_realm(conn: Connection) -> list[str]:
    """Every client of the realm, by clientId (not only the portal's keys)."""
    return [c["clientId"] for c in conn.admin.get_clients()]


def test_a_second_registration_past_the_tokens_count_is_refused(
    client: Client, owner: User, sample: Api, key_clients: Connection
) -> None:
    once = new_token(owner, sample, max_registrations=1)
    assert register(client, once.secret, {"client_name": "first"}).status_code == 201

    answer = register(client, once.secret, {"client_name": "second"})

    assert answer.status_code == 401
    assert answer.json() == {
        "error": "invalid_token",
        "error_description": "The registration token has made all of its 1 keys.",
    }
    assert answer["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert len(key_clients_in_keycloak(key_clients)) == 1
    once.token.refresh_from_db()
    assert once.token.registrations == 1


def test_an_expired_token_registers_nothing(
    client: Client, made: registration.NewRegistrationToken, key_clients: Connection
) -> None:
    RegistrationToken.objects.filter(pk=made.token.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )

    answer = register(client, made.secret, {"client_name": "late"})

    assert answer.status_code == 401
    assert answer.json()["error"] == "invalid_token"
    assert answer.json()["error_description"] == "The registration token has expired."
    assert key_clients_in_keycloak(key_clients) == []


def test_a_revoked_token_registers_nothing(
    client: Client, owner: User, made: registration.NewRegistrationToken, key_clients: Connection
) -> None:
    registration.revoke_token(made.token, actor=owner)

    answer = register(client, made.secret, {"client_name": "after revocation"})

    assert answer.status_code == 401
    assert answer.json()["error_description"] == "The registration token was revoked."
    assert key_clients_in_keycloak(key_clients) == []


@pytest.mark.parametrize(
    "sent",
    [None, "Bearer ", "Bearer kcrt_not_a_real_token", "Basic a2NydDp4"],
    ids=["none", "empty", "unknown", "basic"],
)
def test_a_registration_without_a_valid_registration_token_is_refused(
    client: Client, sample: Api, key_clients: Connection, sent: str | None
) -> None:
    headers = {"Authorization": sent} if sent else {}
    answer = client.post("/register", "{}", content_type="application/json", headers=headers)

    assert answer.status_code == 401
    assert answer.json()["error"] == "invalid_token"
    assert answer["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert key_clients_in_keycloak(key_clients) == []


def test_a_registration_access_token_is_not_a_registration_token(
    client: Client, made: registration.NewRegistrationToken, key_clients: Connection
) -> None:
    first = register(client, made.secret, {"client_name": "first"}).json()

    answer = register(client, first["registration_access_token"], {"client_name": "second"})

    assert answer.status_code == 401
    assert len(key_clients_in_keycloak(key_clients)) == 1


def test_a_registration_from_outside_the_tokens_networks_is_refused(
    client: Client, owner: User, sample: Api, key_clients: Connection
) -> None:
    elsewhere = new_token(owner, sample, allow_from=["10.0.0.0/8"])  # the test client: 127.0.0.1

    answer = register(client, elsewhere.secret, {"client_name": "from here"})

    assert answer.status_code == 403
    assert answer.json() == {
        "error": "access_denied",
        "error_description": "The registration token does not register from this address.",
    }
    assert key_clients_in_keycloak(key_clients) == []
    elsewhere.token.refresh_from_db()
    assert elsewhere.token.registrations == 0
    here = new_token(owner, sample, allow_from=["127.0.0.0/8"])
    assert register(client, here.secret, {"client_name": "from here"}).status_code == 201


def test_a_key_for_an_api_that_needs_approval_waits_disabled_until_an_admin_approves(
    client: Client,
    owner: User,
    admin_user: User,
    sample: Api,
    key_clients: Connection,
) -> None:
    sample.requires_approval = True
    sample.save()
    waiting = new_token(owner, sample)

    answer = register(client, waiting.secret, {"client_name": "needs approval"})

    assert answer.status_code == 201, answer.content
    body = answer.json()
    key = ApiKey.objects.get(client_id=body["client_id"])
    assert key.status == ApiKey.Status.PENDING
    found = keycloak.find_client(key_clients, body["client_id"])
    assert found is not None
    assert found["enabled"] is False
    assert request_token(body["client_id"], body["client_secret"]).status_code != 200

    lifecycle.approve_key(key, actor=admin_user)

    assert request_token(body["client_id"], body["client_secret"]).status_code == 200


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"protocol_mappers": [{"name": "x"}]}, "invalid_client_metadata"),
        ({"defaultClientScopes": ["roles"]}, "invalid_client_metadata"),
        ({"attributes": {"access.token.lifespan": "86400"}}, "invalid_client_metadata"),
        ({"client_secret": "chosen-by-the-software"}, "invalid_client_metadata"),
        ({"token_endpoint_auth_method": "none"}, "invalid_client_metadata"),
        ({"token_endpoint_auth_method": "client_secret_jwt"}, "invalid_client_metadata"),
        ({"grant_types": ["client_credentials", "password"]}, "invalid_client_metadata"),
        ({"response_types": ["code"]}, "invalid_client_metadata"),
        ({"jwks": {"keys": []}}, "invalid_client_metadata"),  # with a secret method
        ({"token_endpoint_auth_method": "private_key_jwt"}, "invalid_client_metadata"),
        ({"client_name": "tab\there"}, "invalid_client_metadata"),
        ({"contacts": "ops@example.com"}, "invalid_client_metadata"),
        ({"scope": 7}, "invalid_client_metadata"),
    ],
)
def test_more_registrations_breaking_a_rule_make_nothing(
    client: Client,
    made: registration.NewRegistrationToken,
    key_clients: Connection,
    body: dict[str, Any],
    error: str,
) -> None:
    answer = register(client, made.secret, body)

    assert answer.status_code == 400, answer.content
    assert answer.json()["error"] == error
    assert key_clients_in_keycloak(key_clients) == []
    made.token.refresh_from_db()
    assert made.token.registrations == 0


@pytest.mark.parametrize("sent", [b"", b"[]", b"not json", b'"a string"'])
def test_a_body_that_is_not_a_json_object_makes_nothing(
    client: Client, made: registration.NewRegistrationToken, key_clients: Connection, sent: bytes
) -> None:
    answer = client.post(
        "/register",
        sent,
        content_type="application/json",
        headers={"Authorization": f"Bearer {made.secret}"},
    )

    assert answer.status_code == 400
    assert answer.json() == {
        "error": "invalid_client_metadata",
        "error_description": "Send a JSON object.",
    }
    assert key_clients_in_keycloak(key_clients) == []


def test_a_client_id_the_software_chooses_is_not_used(
    client: Client, made: registration.NewRegistrationToken
) -> None:
    answer = register(client, made.secret, {"client_id": "my-own-client"})

    assert answer.status_code == 201
    assert answer.json()["client_id"].startswith(ApiKey.CLIENT_ID_PREFIX)


@pytest.mark.parametrize(
    "provider", ["default", "openid-connect", "install", "saml2-entity-descriptor"]
)
def test_anonymous_registration_is_refused_at_each_of_keycloaks_endpoints(
    key_clients: Connection, provider: str
) -> None:
    before = clients_in_realm(key_clients)
    url = f"{settings.KEYCLOAK_URL}/realms/{settings.KEYCLOAK_REALM}/clients-registrations"
    if provider == "saml2-entity-descriptor":
        answer = requests.post(
            f"{url}/{provider}",
            data=SAML_ENTITY,
            headers={"Content-Type": "application/xml"},
            timeout=10,
        )
    else:
        answer = requests.post(
            f"{url}/{provider}",
            json={
                "clientId": "stranger",
                "client_name": "stranger",
                "redirect_uris": ["https://x.example/cb"],
                "protocolMappers": [{"name": "x", "protocolMapper": "oidc-hardcoded-claim-mapper"}],
            },
            timeout=10,
        )

    assert 400 <= answer.status_code < 500, (provider, answer.status_code, answer.text)
    assert clients_in_realm(key_clients) == before


def test_keycloaks_own_registration_refuses_its_own_initial_access_tokens_too(
    key_clients: Connection,
) -> None:
    """The `authenticated` policy is closed as well: an initial access token an operator
    makes in Keycloak's console registers nothing."""
    before = clients_in_realm(key_clients)
    admin = key_clients.admin.connection
    path = f"admin/realms/{settings.KEYCLOAK_REALM}/clients-initial-access"
    # python-keycloak's create_initial_access_token expects 200; Keycloak 26 answers 201.
    made = admin.raw_post(path, data=json.dumps({"count": 1, "expiration": 60}))
    assert made.status_code == 201, made.text
    initial = made.json()
    url = f"{settings.KEYCLOAK_URL}/realms/{settings.KEYCLOAK_REALM}/clients-registrations"
    try:
        answer = requests.post(
            f"{url}/openid-connect",
            json={"client_name": "stranger", "grant_types": ["client_credentials"]},
            headers={"Authorization": f"Bearer {initial['token']}"},
            timeout=10,
        )
    finally:
        admin.raw_delete(f"{path}/{initial['id']}")

    assert answer.status_code == 403, answer.text
    assert "max 0 clients" in answer.json()["error_description"]
    assert clients_in_realm(key_clients) == before


SAML_ENTITY = """<?xml version="1.0"?>
<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="https://x.example/sp">
  <md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
    <md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
        Location="https://x.example/acs" index="0"/>
  </md:SPSSODescriptor>
</md:EntityDescriptor>
"""


# RFC 7592: read, update, delete

READ, INVOICES, WRITE = "orders:read", "invoices:read", "orders:write"
A_PUBLIC_JWK = json.loads(ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1()).public_key()))


@pytest.fixture
def catalog(sample: Api, admin_user: User) -> dict[str, Permission]:
    """The sample API's permissions: two given freely, one that needs approval."""
    made = {
        name: permissions.define_permission(
            sample,
            name=name,
            description=name,
            requires_approval=name == WRITE,
            default=name != WRITE,
            actor=admin_user,
        ).permission
        for name in (READ, INVOICES, WRITE)
    }
    return made


@pytest.fixture
def registered(
    client: Client, owner: User, sample: Api, catalog: dict[str, Permission]
) -> dict[str, Any]:
    """A key registered with a token that gives orders:read and invoices:read."""
    token = new_token(owner, sample, permissions=[READ, INVOICES])
    answer = register(client, token.secret, {"client_name": "agent", "contacts": ["a@example.com"]})
    assert answer.status_code == 201, answer.content
    body: dict[str, Any] = answer.json()
    assert body["scope"] == f"{INVOICES} {READ}"
    return body


def scope_claim(body: dict[str, Any]) -> set[str]:
    answer = request_token(body["client_id"], body["client_secret"])
    assert answer.status_code == 200, answer.text
    return set(claims(answer.json()["access_token"])["scope"].split())


def test_the_registration_is_read_back_with_its_access_token_and_no_secret(
    client: Client, registered: dict[str, Any]
) -> None:
    answer = manage(client, "GET", registered, registered["registration_access_token"])

    assert answer.status_code == 200
    assert "no-store" in answer["Cache-Control"]
    read = answer.json()
    assert read == {
        "client_id": registered["client_id"],
        "client_id_issued_at": registered["client_id_issued_at"],
        "client_name": "agent",
        "contacts": ["a@example.com"],
        "grant_types": ["client_credentials"],
        "response_types": [],
        "token_endpoint_auth_method": "client_secret_basic",
        "scope": f"{INVOICES} {READ}",
        "dpop_bound_access_tokens": False,
        "key_status": "active",
        "client_secret_expires_at": registered["client_secret_expires_at"],
        "registration_access_token": registered["registration_access_token"],
        "registration_client_uri": registered["registration_client_uri"],
    }
    assert registered["registration_client_uri"] == (
        f"{settings.PORTAL_URL}/register/{registered['client_id']}"
    )


def test_an_update_within_the_rules_renames_narrows_and_changes_the_access_token(
    client: Client, registered: dict[str, Any]
) -> None:
    assert scope_claim(registered) >= {READ, INVOICES}
    old = registered["registration_access_token"]
    update = {
        "client_id": registered["client_id"],
        "client_name": "agent v2",
        "scope": READ,
        "grant_types": ["client_credentials"],
        "token_endpoint_auth_method": "client_secret_basic",
    }

    answer = manage(client, "PUT", registered | {"update": update}, old)

    assert answer.status_code == 200, answer.content
    updated = answer.json()
    assert (updated["client_name"], updated["scope"]) == ("agent v2", READ)
    new = updated["registration_access_token"]
    assert new.startswith("kcra_")
    assert new != old
    assert "client_secret" not in updated
    key = ApiKey.objects.get(client_id=registered["client_id"])
    assert (key.name, key.permission_names) == ("agent v2", [READ])
    assert INVOICES not in scope_claim(registered)  # the same secret, one permission fewer
    assert manage(client, "GET", registered, old).status_code == 401
    assert manage(client, "GET", registered, new).json()["client_name"] == "agent v2"

    back = manage(client, "PUT", registered | {"update": {"scope": f"{READ} {INVOICES}"}}, new)

    assert back.status_code == 200, back.content
    assert back.json()["scope"] == f"{INVOICES} {READ}"
    assert scope_claim(registered) >= {READ, INVOICES}


@pytest.mark.parametrize(
    ("update", "error"),
    [
        ({"redirect_uris": ["https://x.example/cb"]}, "invalid_redirect_uri"),
        ({"scope": f"{READ} {WRITE}"}, "invalid_client_metadata"),  # not the token's to give
        ({"scope": "openid"}, "invalid_client_metadata"),
        ({"token_endpoint_auth_method": "private_key_jwt"}, "invalid_client_metadata"),
        (
            {"token_endpoint_auth_method": "private_key_jwt", "jwks": {"keys": [A_PUBLIC_JWK]}},
            "invalid_client_metadata",
        ),
        ({"client_id": "apikey-someone-else"}, "invalid_client_metadata"),
        ({"grant_types": ["authorization_code"]}, "invalid_client_metadata"),
        ({"protocolMappers": [{"name": "x"}]}, "invalid_client_metadata"),
    ],
)
def test_an_update_breaking_a_rule_changes_nothing(
    client: Client, registered: dict[str, Any], update: dict[str, Any], error: str
) -> None:
    access = registered["registration_access_token"]

    answer = manage(client, "PUT", registered | {"update": {"client_name": "x"} | update}, access)

    assert answer.status_code == 400, answer.content
    assert answer.json()["error"] == error
    key = ApiKey.objects.get(client_id=registered["client_id"])
    assert (key.name, key.permission_names) == ("agent", [INVOICES, READ])
    assert scope_claim(registered) >= {READ, INVOICES}
    assert manage(client, "GET", registered, access).status_code == 200  # still the token


def test_an_update_cannot_add_a_permission_that_needs_approval(
    client: Client, owner: User, sample: Api, catalog: dict[str, Permission]
) -> None:
    """RFC 7592 has no member for a justification: the owner asks on the key's page."""
    token = new_token(owner, sample, permissions=[READ, WRITE])
    body = register(client, token.secret, {"scope": READ}).json()
    assert body["scope"] == READ

    answer = manage(
        client,
        "PUT",
        body | {"update": {"scope": f"{READ} {WRITE}"}},
        body["registration_access_token"],
    )

    assert answer.status_code == 400
    assert answer.json() == {
        "error": "invalid_client_metadata",
        "error_description": f"{WRITE} need an administrator's approval: "
        "say why the key needs them.",
    }
    assert ApiKey.objects.get(client_id=body["client_id"]).permission_names == [READ]


def test_a_registration_past_its_owners_key_quota_is_refused_and_gives_its_use_back(
    client: Client, made: registration.NewRegistrationToken, key_clients: Connection, settings: Any
) -> None:
    settings.MAX_LIVE_KEYS_PER_USER = 1
    assert register(client, made.secret, {"client_name": "first"}).status_code == 201

    answer = register(client, made.secret, {"client_name": "second"})

    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_client_metadata"
    assert "1 live keys, the most allowed" in answer.json()["error_description"]
    made.token.refresh_from_db()
    assert made.token.registrations == 1
    assert len(key_clients_in_keycloak(key_clients)) == 1


def test_deleting_the_registration_revokes_the_key_and_removes_its_client(
    client: Client, registered: dict[str, Any], key_clients: Connection
) -> None:
    access = registered["registration_access_token"]

    answer = manage(client, "DELETE", registered, access)

    assert answer.status_code == 204
    key = ApiKey.objects.get(client_id=registered["client_id"])
    assert key.status == ApiKey.Status.REVOKED
    assert keycloak.find_client(key_clients, registered["client_id"]) is None
    assert request_token(registered["client_id"], registered["client_secret"]).status_code == 401
    assert manage(client, "GET", registered, access).status_code == 401
    assert manage(client, "DELETE", registered, access).status_code == 401


def test_one_keys_access_token_does_not_reach_another_key(
    client: Client, made: registration.NewRegistrationToken
) -> None:
    first = register(client, made.secret, {"client_name": "one"}).json()
    second = register(client, made.secret, {"client_name": "two"}).json()

    for method in ("GET", "PUT", "DELETE"):
        answer = manage(client, method, first, second["registration_access_token"])
        assert answer.status_code == 401, method
        assert answer.json()["error"] == "invalid_token"
    assert ApiKey.objects.get(client_id=first["client_id"]).status == ApiKey.Status.ACTIVE


def test_a_token_whose_permissions_need_approval_registers_a_key_that_waits(
    client: Client,
    owner: User,
    admin_user: User,
    sample: Api,
    catalog: dict[str, Permission],
    key_clients: Connection,
) -> None:
    writer = new_token(owner, sample, permissions=[WRITE])

    answer = register(client, writer.secret, {"client_name": "writer"})

    assert answer.status_code == 201, answer.content
    body = answer.json()
    key = ApiKey.objects.get(client_id=body["client_id"])
    assert key.status == ApiKey.Status.PENDING
    assert request_token(body["client_id"], body["client_secret"]).status_code != 200
    lifecycle.approve_key(key, actor=admin_user)
    assert WRITE in scope_claim(body)


# Races and crashes


@pytest.mark.django_db(transaction=True)
def test_registrations_racing_for_a_tokens_last_uses_make_exactly_its_count(
    live_server: Any, owner: User, sample: Api, key_clients: Connection
) -> None:
    racing = new_token(owner, sample, max_registrations=3)

    def attempt(n: int) -> requests.Response:
        return requests.post(
            f"{live_server.url}/register",
            json={"client_name": f"racer {n}"},
            headers={"Authorization": f"Bearer {racing.secret}"},
            timeout=60,
        )

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(attempt, range(8)))

    statuses = sorted(a.status_code for a in answers)
    assert statuses == [201] * 3 + [401] * 5, [a.text for a in answers]
    racing.token.refresh_from_db()
    assert racing.token.registrations == 3
    made = {a.json()["client_id"] for a in answers if a.status_code == 201}
    assert (
        set(ApiKey.objects.filter(registered_with=racing.token).values_list("client_id", flat=True))
        == made
    )
    assert {c["clientId"] for c in key_clients_in_keycloak(key_clients)} == made


@pytest.fixture
def crash_after_the_client_is_made() -> Any:
    crash_points.armed["issue:client-created"] = "raise"
    yield
    crash_points.armed.clear()


def test_a_crash_between_keycloak_and_the_record_is_cleaned_up_by_reconcile(
    client: Client,
    made: registration.NewRegistrationToken,
    key_clients: Connection,
    crash_after_the_client_is_made: None,
) -> None:
    with pytest.raises(SimulatedCrash):
        register(client, made.secret, {"client_name": "crashed"})
    crash_points.armed.clear()
    key = ApiKey.objects.get()
    assert key.status == ApiKey.Status.UNFINISHED
    assert [c["clientId"] for c in key_clients_in_keycloak(key_clients)] == [key.client_id]
    made.token.refresh_from_db()
    assert made.token.registrations == 1  # the unfinished key counts until it is discarded

    adopted = reconcile(grace=timedelta(0))
    assert [f.action for f in adopted.findings] == ["adopt the client"]
    later = reconcile(now=timezone.now() + ABANDONED + timedelta(minutes=1))

    assert [f.action for f in later.findings] == ["discard client and record"]
    assert all(f.done for f in later.findings)
    assert not ApiKey.objects.exists()
    assert key_clients_in_keycloak(key_clients) == []
    again = register(client, made.secret, {"client_name": "again"})
    assert again.status_code == 201
    assert (
        request_token(again.json()["client_id"], again.json()["client_secret"]).status_code == 200
    )


def test_a_key_left_unfinished_by_a_crash_still_counts_against_its_token(
    client: Client,
    owner: User,
    sample: Api,
    key_clients: Connection,
    crash_after_the_client_is_made: None,
) -> None:
    once = new_token(owner, sample, max_registrations=1)
    with pytest.raises(SimulatedCrash):
        register(client, once.secret, {"client_name": "crashed"})
    crash_points.armed.clear()
    lifecycle.finish_key(ApiKey.objects.get(), actor=owner)  # "finish" on the owner's page

    again = register(client, once.secret, {"client_name": "one too many"})

    assert again.status_code == 401
    assert ApiKey.objects.filter(registered_with=once.token).live().count() == 1


# A client no one here wrote

JS = Path(__file__).resolve().parent / "js"


@pytest.fixture(scope="module")
def node() -> str:
    found = shutil.which("node")
    assert found, "Node.js is needed for tests/js (Debian's nodejs)"
    assert (JS / "node_modules" / "oauth4webapi").is_dir(), "run: npm ci --prefix tests/js"
    return found


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("method", ["secret", "private_key_jwt"])
def test_oauth4webapi_discovers_registers_and_gets_a_token(
    node: str, live_server: Any, owner: User, sample: Api, key_clients: Connection, method: str
) -> None:
    assert live_server.url == settings.PORTAL_URL  # what Keycloak's discovery names
    token = new_token(owner, sample)
    issuer = f"{settings.KEYCLOAK_URL}/realms/{settings.KEYCLOAK_REALM}"

    ran = subprocess.run(
        [node, str(JS / "register.mjs"), issuer, method],
        env={**os.environ, "REGISTRATION_TOKEN": token.secret},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert ran.returncode == 0, ran.stdout + ran.stderr
    result = json.loads(ran.stdout)
    assert result["discovered"] == {
        "issuer": issuer,
        "registration_endpoint": f"{live_server.url}/register",
    }
    registered = result["registered"]
    wanted_auth = "private_key_jwt" if method == "private_key_jwt" else "client_secret_basic"
    assert registered["token_endpoint_auth_method"] == wanted_auth
    assert registered["got_client_secret"] is (method == "secret")
    assert registered["got_registration_access_token"] is True
    assert result["claims"]["azp"] == registered["client_id"]
    assert sample.audience in result["claims"]["aud"]
    key = ApiKey.objects.get(client_id=registered["client_id"])
    assert key.registered_with == token.token
    assert key.name == f"oauth4webapi {method}"


@pytest.mark.django_db(transaction=True)
def test_oauth4webapi_reports_a_refusal_with_rfc_7591s_error(
    node: str, live_server: Any, owner: User, sample: Api, key_clients: Connection
) -> None:
    token = new_token(owner, sample, max_registrations=1)
    registration.revoke_token(token.token, actor=owner)
    issuer = f"{settings.KEYCLOAK_URL}/realms/{settings.KEYCLOAK_REALM}"

    ran = subprocess.run(
        [node, str(JS / "register.mjs"), issuer],
        env={**os.environ, "REGISTRATION_TOKEN": token.secret},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert ran.returncode == 1, ran.stdout + ran.stderr
    assert json.loads(ran.stdout) == {
        "error": "invalid_token",
        "error_description": "The registration token was revoked.",
        "status": 401,
    }
    assert key_clients_in_keycloak(key_clients) == []


# docs/registering-software.md, run as pasted

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "registering-software.md"


def guide_blocks(language: str) -> list[str]:
    """The guide's code blocks in `language` that say a test runs them, in order."""
    mark = re.escape("<!-- run by tests/test_registration.py -->")
    return re.findall(rf"{mark}\n```{language}\n(.*?)```", GUIDE.read_text(), re.DOTALL)


@pytest.mark.django_db(transaction=True)
def test_the_guides_pipeline_registers_uses_and_deletes_a_key_as_pasted(
    live_server: Any, owner: User, sample: Api, key_clients: Connection
) -> None:
    token = new_token(owner, sample)
    blocks = guide_blocks("sh")
    assert len(blocks) == 3
    # The CI's secret store, here: the values stay in the shell for the next blocks.
    script = 'set -euo pipefail\nstore_secret() { export "$1=$2"; }\n' + "\n".join(blocks)

    ran = subprocess.run(
        ["bash", "-c", script],
        env=guide_environment(live_server, token) | {"ENVIRONMENT": "staging"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert ran.returncode == 0, ran.stdout + ran.stderr
    whoami, deleted = ran.stdout.splitlines()
    key = ApiKey.objects.get(registered_with=token.token)
    assert json.loads(whoami)["client_id"] == key.client_id
    assert deleted == "204"
    assert (key.name, key.status) == ("deploy staging", ApiKey.Status.REVOKED)
    assert key_clients_in_keycloak(key_clients) == []


@pytest.mark.django_db(transaction=True)
def test_the_guides_agent_registers_with_a_key_pair_as_pasted(
    live_server: Any, owner: User, sample: Api, key_clients: Connection
) -> None:
    token = new_token(owner, sample)
    (agent,) = guide_blocks("python")

    ran = subprocess.run(
        [sys.executable, "-c", agent],
        env=guide_environment(live_server, token),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert ran.stdout.splitlines() == ["200 True", "204"]
    key = ApiKey.objects.get(registered_with=token.token)
    assert (key.name, key.uses_secret, key.status) == (
        "support agent",
        False,
        ApiKey.Status.REVOKED,
    )


def guide_environment(live_server: Any, token: registration.NewRegistrationToken) -> dict[str, str]:
    return {
        **os.environ,
        "ISSUER": f"{settings.KEYCLOAK_URL}/realms/{settings.KEYCLOAK_REALM}",
        "REGISTRATION_TOKEN": token.secret,
        "API_URL": f"{live_server.url}/api/v1/whoami/",
    }


# What the review found (the rules' edges)


def test_a_token_that_gives_no_permission_gives_none(
    client: Client, owner: User, sample: Api, catalog: dict[str, Permission]
) -> None:
    bare = new_token(owner, sample, permissions=[])

    asked = register(client, bare.secret, {"client_name": "greedy", "scope": READ})
    plain = register(client, bare.secret, {"client_name": "plain"})

    assert asked.status_code == 400
    assert asked.json()["error_description"].endswith("permissions: none.")
    assert plain.status_code == 201
    assert plain.json()["scope"] == ""


def test_a_teams_token_stops_when_its_maker_stops_making_the_teams_keys(
    client: Client, owner: User, other_user: User, sample: Api
) -> None:
    from apikeys.models import Membership, Team, TeamRole

    team = Team.objects.create(name="Shop")
    Membership.objects.create(team=team, user=owner, role=TeamRole.OWNER)
    Membership.objects.create(team=team, user=other_user, role=TeamRole.DEVELOPER)
    theirs = new_token(other_user, sample, team=team)
    assert register(client, theirs.secret, {"client_name": "first"}).status_code == 201

    Membership.objects.filter(team=team, user=other_user).update(role=TeamRole.VIEWER)
    answer = register(client, theirs.secret, {"client_name": "second"})

    assert answer.status_code == 401
    assert answer.json()["error_description"] == (
        "The registration token's maker no longer makes this team's keys."
    )


def test_unknown_metadata_is_ignored_and_a_read_answer_can_be_sent_back(
    client: Client, made: registration.NewRegistrationToken
) -> None:
    answer = register(
        client,
        made.secret,
        {"client_name": "app", "application_type": "web", "client_name#fr": "x"},
    )
    assert answer.status_code == 201, answer.content
    body = answer.json()
    access = body["registration_access_token"]

    read = manage(client, "GET", body, access)
    assert read.json()["registration_access_token"] == access
    assert read.json()["registration_client_uri"] == body["registration_client_uri"]
    again = manage(client, "PUT", body | {"update": read.json()}, access)

    assert again.status_code == 200, again.content
    assert again.json()["client_name"] == "app"  # not renamed "app (2)" by its own name
    snake = register(client, made.secret, {"protocol_mappers": [{"name": "x"}]})
    assert snake.status_code == 400
    assert "protocol_mappers" in snake.json()["error_description"]


def test_public_keys_do_not_change_through_an_update(
    client: Client, made: registration.NewRegistrationToken
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(ECAlgorithm.to_jwk(key.public_key()))
    body = register(
        client,
        made.secret,
        {"token_endpoint_auth_method": "private_key_jwt", "jwks": {"keys": [jwk]}},
    ).json()
    other = json.loads(ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1()).public_key()))
    access = body["registration_access_token"]

    answer = manage(
        client,
        "PUT",
        body
        | {"update": {"token_endpoint_auth_method": "private_key_jwt", "jwks": {"keys": [other]}}},
        access,
    )
    kept = manage(
        client,
        "PUT",
        body | {"update": {"token_endpoint_auth_method": "private_key_jwt", "client_name": "n"}},
        access,
    )

    assert answer.status_code == 400
    assert "Public keys are changed on the key's page" in answer.json()["error_description"]
    assert kept.status_code == 200, kept.content


def test_a_key_moved_to_another_space_is_no_longer_the_softwares(
    client: Client, owner: User, admin_user: User, made: registration.NewRegistrationToken
) -> None:
    from apikeys.operations import teams

    body = register(client, made.secret, {"client_name": "moving"}).json()
    team = teams.create_team(owner, "Elsewhere")  # a team of its maker's
    key = ApiKey.objects.get(client_id=body["client_id"])
    teams.move_key(key, owner=owner, team=team, actor=admin_user)

    answer = manage(client, "GET", body, body["registration_access_token"])

    assert answer.status_code == 401


def test_a_leaked_registration_token_is_revoked_and_a_leaked_access_token_stops(
    client: Client, made: registration.NewRegistrationToken
) -> None:
    from apikeys.operations import leaks

    body = register(client, made.secret, {"client_name": "leaky"}).json()
    found = [
        leaks.Found(token=t, type="apikey_portal", url="https://paste.example/1", source="paste")
        for t in (made.secret, body["registration_access_token"])
    ]

    assert all(leaks.act_on(f, reporter="scanner") for f in found)

    made.token.refresh_from_db()
    assert made.token.revoked_at is not None
    assert register(client, made.secret, {"client_name": "after"}).status_code == 401
    assert manage(client, "GET", body, body["registration_access_token"]).status_code == 401
    assert request_token(body["client_id"], body["client_secret"]).status_code == 200  # the key


def test_software_registers_a_key_whose_tokens_are_bound_to_its_dpop_key(
    client: Client, made: registration.NewRegistrationToken, key_clients: Connection
) -> None:
    bad = register(client, made.secret, {"client_name": "edge", "dpop_bound_access_tokens": 1})
    assert bad.json()["error"] == "invalid_client_metadata"

    bound = {"client_name": "edge", "dpop_bound_access_tokens": True}
    answer = register(client, made.secret, bound)

    assert answer.status_code == 201, answer.content
    body = answer.json()
    assert body["dpop_bound_access_tokens"] is True
    key = ApiKey.objects.get(client_id=body["client_id"])
    assert key.requires_dpop
    assert keycloak.get_client(key_clients, key.keycloak_id)["attributes"][DPOP] == "true"
    refused = request_token(body["client_id"], body["client_secret"])  # no proof
    assert refused.json()["error_description"] == "DPoP proof is missing"
    # RFC 7592: an update that says nothing of it keeps it; one that says false drops it.
    same = body | {"update": {"client_name": "edge"}}
    kept = manage(client, "PUT", same, body["registration_access_token"])
    assert kept.json()["dpop_bound_access_tokens"] is True
    off = body | {"update": {"client_name": "edge", "dpop_bound_access_tokens": False}}
    dropped = manage(client, "PUT", off, kept.json()["registration_access_token"])
    assert dropped.json()["dpop_bound_access_tokens"] is False
    assert keycloak.get_client(key_clients, key.keycloak_id)["attributes"][DPOP] == "false"
