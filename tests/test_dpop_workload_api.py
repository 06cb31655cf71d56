"""DPoP-bound keys and workload identity keys through the JSON API and the terminal, with real
Keycloak tokens and a real Keycloak: what the key's client holds, who may change it, what a
workload's owner is told, and which trusted issuers may go."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from apikeys.api.schemas import JWT_BEARER
from apikeys.keycloak import client as keycloak
from apikeys.keycloak.client import Connection
from apikeys.models import ApiKey, AuditEntry, Membership, Team, User
from tests.accounts import KeycloakUser
from tests.assertions import token_with_assertion
from tests.issuer import Issuer
from tests.test_api import Caller, assert_problem, create
from tests.test_cli import Cli
from tests.test_permissions_cli import ok
from tests.tokens import request_token

pytestmark = pytest.mark.usefixtures("key_clients", "sample")

SUBJECT = "system:serviceaccount:billing:invoicer"


@pytest.fixture
def terminal(
    tmp_path: Path, live_server: Any, make_keycloak_user: Callable[..., KeycloakUser]
) -> Callable[..., Cli]:
    """A new person with the tool signed in (admin=True: with the portal-admin role)."""

    def make(*, admin: bool = False) -> Cli:
        account = make_keycloak_user(roles=("portal-admin",) if admin else ())
        tool = Cli(tmp_path / account.id, live_server.url)
        tool.signed_in_as(account, live_server.url)
        return tool

    return make


def client_of(conn: Connection, client_id: str) -> dict[str, Any]:
    found = keycloak.find_client(conn, client_id)
    assert found is not None, client_id
    return found


@pytest.mark.embedded
def test_a_dpop_key_gets_tokens_only_with_a_proof_until_its_holder_turns_that_off(
    make_keycloak_user: Callable[..., KeycloakUser], key_clients: Connection
) -> None:
    owner, viewer, stranger = (Caller(make_keycloak_user()) for _ in range(3))
    team = owner("POST", "/teams", {"name": "Acme"}).json()["id"]
    viewer("GET", "/me")
    Membership.objects.create(
        team=Team.objects.get(pk=team),
        user=User.objects.get(username=viewer.account.id),
        role="viewer",
    )

    made = create(owner, "edge", team=team, dpop=True)

    assert made.status_code == 201, made.content
    body = made.json()
    client_id, secret = body["client_id"], body["client_secret"]
    assert body["key"]["dpop"] is True
    assert body["key"]["workload"] is None
    attributes = client_of(key_clients, client_id)["attributes"]
    assert attributes["dpop.bound.access.tokens"] == "true"
    refused = request_token(client_id, secret)
    assert refused.status_code == 400, refused.text
    assert "DPoP" in refused.json()["error_description"]
    path = f"/keys/{body['key']['id']}/dpop"
    assert_problem(viewer("PUT", path, {"required": False}), 403, "you may not")
    assert_problem(stranger("PUT", path, {"required": False}), 404, "no key with this id")
    assert_problem(owner("PUT", path, {"require": False}), 422, "not valid")
    assert client_of(key_clients, client_id)["attributes"]["dpop.bound.access.tokens"] == "true"

    turned_off = owner("PUT", path, {"required": False})

    assert turned_off.status_code == 200, turned_off.content
    assert turned_off.json()["dpop"] is False
    attributes = client_of(key_clients, client_id)["attributes"]
    assert attributes["dpop.bound.access.tokens"] == "false"
    assert request_token(client_id, secret).status_code == 200
    entry = AuditEntry.objects.get(action=AuditEntry.Action.DPOP_CHANGED)
    assert (entry.via, entry.actor.username) == ("api", owner.account.id)  # type: ignore[union-attr]


@pytest.mark.usefixtures("providers_removed")
def test_a_workload_key_made_from_the_terminal_gets_tokens_with_its_platforms_token(
    terminal: Callable[..., Cli], key_clients: Connection, loopback_issuer: Issuer
) -> None:
    admin, customer = terminal(admin=True), terminal()
    trust = f"admin workload-issuers add ci-test --name CI --issuer {loopback_issuer.url}"
    ok(admin(*trust.split(), "--jwks-url", loopback_issuer.jwks_url, "--no-approval"))
    assert "ci-test" in ok(customer("workload-issuers", "list"))

    said = ok(customer(*workload_key("invoicer", "ci-test")))

    assert "client_secret" not in said
    assert "This key has no secret" in said
    assert f"aud {settings.TOKEN_ISSUER}" in said
    assert f"client_assertion_type={JWT_BEARER}" in said
    key = ApiKey.objects.get()
    client = client_of(key_clients, key.client_id)
    assert client["clientAuthenticatorType"] == "federated-jwt"
    assert client["attributes"]["jwt.credential.sub"] == SUBJECT
    platform_token = loopback_issuer.token(SUBJECT, settings.TOKEN_ISSUER)
    assert token_with_assertion(platform_token).status_code == 200
    shown = json.loads(ok(customer("keys", "show", key.client_id, "--json")))
    assert shown["workload"] == {"issuer": "ci-test", "subject": SUBJECT}
    assert f"{SUBJECT} (issuer ci-test)" in ok(customer("keys", "list"))
    trusted = json.loads(ok(admin("admin", "workload-issuers", "list", "--json")))
    assert [(i["slug"], i["live_keys"]) for i in trusted] == [("ci-test", 1)]
    again = customer(*workload_key("twin", "ci-test"))
    assert again.returncode == 5, again.stderr
    assert "already holds a live key" in again.stderr
    unknown = customer(*workload_key("stray", "nowhere"))
    assert unknown.returncode == 5, unknown.stderr
    assert "No workload issuer called “nowhere” is trusted here" in unknown.stderr
    kept = admin("admin", "workload-issuers", "remove", "ci-test", "--yes")
    assert kept.returncode == 5, kept.stderr
    assert "1 live key is bound to CI: revoke them first" in kept.stderr
    ok(customer("keys", "revoke", key.client_id, "--yes"))
    ok(admin("admin", "workload-issuers", "remove", "ci-test", "--yes"))
    assert keycloak.get_identity_provider(key_clients, "workload-ci-test") is None
    assert ApiKey.objects.count() == 1


def workload_key(name: str, issuer: str) -> list[str]:
    """`apikeys keys create` for a workload identity key of SUBJECT at `issuer`."""
    made = f"keys create {name} --api sample --workload-issuer {issuer} --workload-subject"
    return [*made.split(), SUBJECT]
