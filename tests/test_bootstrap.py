"""bootstrap_keycloak against the real Keycloak: settings read back, idempotence, repair."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from io import StringIO
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command

from apikeys.keycloak import bootstrap, desired
from apikeys.keycloak import client as keycloak
from apikeys.keycloak.client import Connection
from apikeys.models import Api
from tests.conftest import sample_api


def snapshot(conn: Connection) -> dict[str, Any]:
    """Everything bootstrap owns, as Keycloak represents it."""
    admin = conn.admin
    realm = keycloak.get_realm(conn)
    clients = {}
    for client_id in (settings.OIDC_RP_CLIENT_ID, settings.KEYCLOAK_SERVICE_CLIENT_ID):
        client = keycloak.find_client(conn, client_id)
        assert client is not None
        clients[client_id] = {
            "client": client,
            "default": sorted(keycloak.get_client_scopes_of_client(conn, client["id"], "default")),
            "optional": sorted(
                keycloak.get_client_scopes_of_client(conn, client["id"], "optional")
            ),
            "scope_mappings": admin.connection.raw_get(
                f"admin/realms/{conn.realm}/clients/{client['id']}/scope-mappings"
            ).json(),
        }
    service = clients[settings.KEYCLOAK_SERVICE_CLIENT_ID]["client"]
    sa_user = keycloak.get_service_account_user(conn, service["id"])
    return {
        "realm": realm,
        "events": admin.connection.raw_get(f"admin/realms/{conn.realm}/events/config").json(),
        "role": keycloak.get_realm_role(conn, settings.OIDC_ADMIN_ROLE),
        "clients": clients,
        "service_account_roles": admin.connection.raw_get(
            f"admin/realms/{conn.realm}/users/{sa_user['id']}/role-mappings"
        ).json(),
        "scope": keycloak.find_client_scope(conn, sample_api().scope_name),
    }


def test_a_second_run_changes_nothing(bootstrapped: Connection) -> None:
    before = snapshot(bootstrapped)

    changes = bootstrap.run(bootstrapped, [sample_api()])

    assert changes == []
    assert snapshot(bootstrapped) == before


@pytest.mark.django_db
def test_the_command_reports_a_realm_in_shape(bootstrapped: Connection) -> None:
    out = StringIO()
    call_command("bootstrap_keycloak", stdout=out)
    assert "already in shape, nothing changed" in out.getvalue()


def test_the_realm_has_self_registration_and_its_protections(bootstrapped: Connection) -> None:
    realm = keycloak.get_realm(bootstrapped)
    assert realm is not None
    assert realm["registrationAllowed"] is True
    assert realm["registrationEmailAsUsername"] is True
    assert realm["verifyEmail"] is True
    assert realm["duplicateEmailsAllowed"] is False
    assert "length(12)" in realm["passwordPolicy"]
    assert realm["bruteForceProtected"] is True
    assert realm["smtpServer"]["port"] == str(settings.KEYCLOAK_SMTP_PORT)
    events = bootstrapped.admin.connection.raw_get(
        f"admin/realms/{bootstrapped.realm}/events/config"
    ).json()
    assert events["eventsEnabled"] is True
    assert "CLIENT_LOGIN" in events["enabledEventTypes"]
    assert events["eventsExpiration"] == desired.EVENTS_EXPIRATION_SECONDS
    assert events["adminEventsEnabled"] is True


def test_the_login_client_allows_only_code_with_pkce(bootstrapped: Connection) -> None:
    client = keycloak.find_client(bootstrapped, settings.OIDC_RP_CLIENT_ID)
    assert client is not None
    assert client["publicClient"] is False
    assert client["standardFlowEnabled"] is True
    assert client["implicitFlowEnabled"] is False
    assert client["directAccessGrantsEnabled"] is False
    assert client["serviceAccountsEnabled"] is False
    assert client["fullScopeAllowed"] is False
    assert client["attributes"]["pkce.code.challenge.method"] == "S256"
    assert client["attributes"]["oauth2.device.authorization.grant.enabled"] == "false"
    assert client["redirectUris"] == [f"{settings.PORTAL_URL}/oidc/callback/"]
    assert client["attributes"]["post.logout.redirect.uris"] == f"{settings.PORTAL_URL}/"


def test_the_service_account_holds_only_its_least_roles(bootstrapped: Connection) -> None:
    conn = keycloak.portal_connection()
    # It can read clients, events and users (recovery asks whether a key's owner exists) ...
    assert keycloak.find_client(conn, settings.OIDC_RP_CLIENT_ID) is not None
    assert isinstance(keycloak._request(conn, "GET", "/events", params={"max": 1}), list)
    someone = keycloak._request(conn, "GET", "/users", params={"max": 1})
    # ... but not change users, nor make realms.
    with pytest.raises(keycloak.KeycloakRejected) as users:
        keycloak._request(conn, "PUT", f"/users/{someone[0]['id']}", {"firstName": "Mallory"})
    assert users.value.status == 403
    with pytest.raises(keycloak.KeycloakRejected) as realms:
        keycloak._request(conn, "POST", "/admin/realms", {"realm": "escalated", "enabled": True})
    assert realms.value.status == 403
    service = keycloak.find_client(bootstrapped, settings.KEYCLOAK_SERVICE_CLIENT_ID)
    assert service is not None
    user = keycloak.get_service_account_user(bootstrapped, service["id"])
    management = keycloak.find_client(bootstrapped, "realm-management")
    assert management is not None
    held = keycloak.get_roles(bootstrapped, keycloak.user_roles_path(user["id"], management["id"]))
    assert held == {"manage-clients", "view-events", "view-users", "manage-identity-providers"}


def test_each_catalog_api_has_an_audience_scope(bootstrapped: Connection) -> None:
    scope = keycloak.find_client_scope(bootstrapped, "api-sample")
    assert scope is not None
    (mapper,) = scope["protocolMappers"]
    assert mapper["protocolMapper"] == "oidc-audience-mapper"
    assert mapper["config"]["included.custom.audience"] == "sample-api"
    assert mapper["config"]["access.token.claim"] == "true"


def test_it_repairs_settings_changed_behind_its_back(bootstrapped: Connection) -> None:
    client = keycloak.find_client(bootstrapped, settings.OIDC_RP_CLIENT_ID)
    assert client is not None
    keycloak.update_client(
        bootstrapped, client["id"], {**client, "directAccessGrantsEnabled": True}
    )
    service = keycloak.find_client(bootstrapped, settings.KEYCLOAK_SERVICE_CLIENT_ID)
    assert service is not None
    user = keycloak.get_service_account_user(bootstrapped, service["id"])
    management = keycloak.find_client(bootstrapped, "realm-management")
    assert management is not None
    realm_admin = bootstrapped.admin.get_client_role(management["id"], "realm-admin")
    keycloak.set_roles(
        bootstrapped,
        keycloak.user_roles_path(user["id"], management["id"]),
        [realm_admin],
        granted=True,
    )

    changes = bootstrap.run(bootstrapped, [sample_api()])

    assert f"updated client {settings.OIDC_RP_CLIENT_ID}" in changes
    assert any("removed ['realm-admin']" in line for line in changes)
    repaired = keycloak.find_client(bootstrapped, settings.OIDC_RP_CLIENT_ID)
    assert repaired is not None
    assert repaired["directAccessGrantsEnabled"] is False
    held = keycloak.get_roles(bootstrapped, keycloak.user_roles_path(user["id"], management["id"]))
    assert held == {"manage-clients", "view-events", "view-users", "manage-identity-providers"}


def test_it_keeps_an_operators_smtp_and_event_settings(bootstrapped: Connection) -> None:
    realm = keycloak.get_realm(bootstrapped)
    assert realm is not None
    smtp = {**realm["smtpServer"], "starttls": "true", "auth": "true", "user": "relay-user"}
    keycloak.update_realm(
        bootstrapped,
        {"smtpServer": smtp, "enabledEventTypes": [*realm["enabledEventTypes"], "LOGIN_ERROR"]},
    )
    try:
        bootstrap.run(bootstrapped, [sample_api()])

        kept = keycloak.get_realm(bootstrapped)
        assert kept is not None
        assert kept["smtpServer"]["starttls"] == "true"
        assert kept["smtpServer"]["user"] == "relay-user"
        assert {"LOGIN_ERROR", "CLIENT_LOGIN"} <= set(kept["enabledEventTypes"])
        assert bootstrap.run(bootstrapped, [sample_api()]) == []
    finally:
        keycloak.update_realm(bootstrapped, {"smtpServer": realm["smtpServer"]})


def test_it_words_the_verification_mail_again_and_keeps_an_operators_own_texts(
    bootstrapped: Connection,
) -> None:
    keycloak.set_messages(
        bootstrapped, "en", {"emailVerificationBody": "changed", "loginTitle": "Acme sign-in"}
    )
    try:
        changes = bootstrap.run(bootstrapped, [sample_api()])

        texts = keycloak.get_messages(bootstrapped, "en")
        assert changes == ["worded again emailVerificationBody (en)"]
        assert texts["emailVerificationBody"] == desired.MESSAGES_EN["emailVerificationBody"]
        assert texts["loginTitle"] == "Acme sign-in"
        assert bootstrap.run(bootstrapped, [sample_api()]) == []
    finally:
        keycloak._request(bootstrapped, "DELETE", "/localization/en/loginTitle")


def test_admin_events_expire_like_user_events(bootstrapped: Connection) -> None:
    realm = keycloak.get_realm(bootstrapped)
    assert realm is not None
    expiry = realm["attributes"]["adminEventsExpiration"]
    assert expiry == str(desired.EVENTS_EXPIRATION_SECONDS)


def test_it_owns_the_api_scopes_and_takes_over_none_it_did_not_make(
    bootstrapped: Connection,
) -> None:
    scope = keycloak.find_client_scope(bootstrapped, "api-sample")
    assert scope is not None
    owner_path = f"/client-scopes/{scope['id']}"
    keycloak.add_mapper(
        bootstrapped,
        owner_path,
        {
            "name": "extra",
            "protocol": "openid-connect",
            "protocolMapper": "oidc-hardcoded-claim-mapper",
            "config": {"claim.name": "tier", "claim.value": "gold", "access.token.claim": "true"},
        },
    )
    assert bootstrap.run(bootstrapped, [sample_api()]) == ["removed mapper 'extra' from api-sample"]

    foreign_id = keycloak.create_client_scope(
        bootstrapped, {"name": "api-foreign", "protocol": "openid-connect"}
    )
    try:
        foreign = Api(name="Foreign", slug="foreign", audience="foreign-api")
        with pytest.raises(bootstrap.ScopeTaken):
            bootstrap.ensure_api_scope(bootstrapped, foreign, adopt=False)
        untouched = keycloak.find_client_scope(bootstrapped, "api-foreign")
        assert untouched is not None
        assert untouched.get("protocolMappers", []) == []
        assert "portal.managed" not in untouched.get("attributes", {})
    finally:
        keycloak.delete_client_scope(bootstrapped, foreign_id)


def test_the_key_secrets_client_policy_is_in_place_beside_others(
    bootstrapped: Connection,
) -> None:
    policies = keycloak.get_client_policies(bootstrapped, "policies")
    mine = [p for p in policies if p["name"] == desired.KEY_SECRETS_POLICY]
    assert len(mine) == 1
    assert mine[0]["enabled"] is True
    profiles = keycloak.get_client_policies(bootstrapped, "profiles")
    (profile,) = [p for p in profiles if p["name"] == desired.KEY_SECRETS_POLICY]
    assert profile["executors"][0]["executor"] == "secret-rotation"


@pytest.fixture
def new_realm(settings: Any) -> Iterator[str]:
    """A realm name bootstrap has not made yet (the first start); the realm goes after."""
    name = f"first-start-{uuid.uuid4().hex[:8]}"
    settings.KEYCLOAK_REALM = name
    yield name
    master = keycloak.connect(
        realm="master",
        username=os.environ["KEYCLOAK_BOOTSTRAP_ADMIN_USERNAME"],
        password=os.environ["KEYCLOAK_BOOTSTRAP_ADMIN_PASSWORD"],
        timeout=settings.KEYCLOAK_BOOTSTRAP_TIMEOUT,
    )
    with contextlib.suppress(keycloak.NotFound):
        master.admin.delete_realm(name)


@pytest.mark.django_db
def test_a_first_start_waits_as_long_as_keycloak_takes_to_make_the_realm(
    new_realm: str, settings: Any
) -> None:
    settings.KEYCLOAK_TIMEOUT = 0.05  # far less than making a realm takes: the run-time bound
    out = StringIO()

    call_command("bootstrap_keycloak", stdout=out)

    assert f"Creating the realm {new_realm}" in out.getvalue()
    assert f"created realm {new_realm}" in out.getvalue()
    assert keycloak.get_realm(_admin_of(new_realm)) is not None


def test_a_realm_whose_answer_was_lost_is_waited_for_not_made_twice(
    new_realm: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = keycloak.create_realm

    def answer_lost(conn: Connection, rep: dict[str, Any]) -> None:
        real(conn, rep)  # Keycloak makes it; the answer comes after the portal stopped waiting
        raise keycloak.KeycloakUnavailable("Keycloak is unreachable: Read timed out")

    monkeypatch.setattr(keycloak, "create_realm", answer_lost)
    told: list[str] = []

    changes = bootstrap.run(_admin_of(new_realm), [sample_api()], tell=told.append)

    assert changes[0] == f"created realm {new_realm}"
    assert any("waiting for the realm to appear" in line for line in told)
    assert bootstrap.run(_admin_of(new_realm), [sample_api()]) == []  # and all of it in shape


def _admin_of(realm: str) -> Connection:
    return keycloak.connect(
        realm=realm,
        username=os.environ["KEYCLOAK_BOOTSTRAP_ADMIN_USERNAME"],
        password=os.environ["KEYCLOAK_BOOTSTRAP_ADMIN_PASSWORD"],
        user_realm="master",
        timeout=settings.KEYCLOAK_BOOTSTRAP_TIMEOUT,
    )
