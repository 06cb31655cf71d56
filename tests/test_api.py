"""The JSON API (/api/v1/) with real Keycloak tokens of the CLI's client."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from django.test.utils import override_script_prefix

from apikeys.credentials import bearer as bearer_tokens
from apikeys.credentials.secret_format import is_well_formed
from apikeys.models import Api, ApiKey, AuditEntry
from tests.accounts import KeycloakUser
from tests.assertions import KeyPair, gets_token
from tests.oidc import cli_tokens
from tests.tokens import request_token

pytestmark = [pytest.mark.embedded, pytest.mark.usefixtures("key_clients", "sample")]

API = "/api/v1"


class Caller:
    """A Django test client that sends a Keycloak access token of the CLI's client."""

    def __init__(self, account: KeycloakUser) -> None:
        self.account = account
        self.token = cli_tokens(account.email, account.password)["access_token"]
        self.client = Client()

    def __call__(self, method: str, path: str, body: Any = None, **headers: str) -> Any:
        send = getattr(self.client, method.lower())
        extra = {"Authorization": f"Bearer {self.token}", **headers}
        if body is None:
            return send(f"{API}{path}", headers=extra)
        return send(f"{API}{path}", body, content_type="application/json", headers=extra)


@pytest.fixture
def api_customer(make_keycloak_user: Callable[..., KeycloakUser]) -> Caller:
    return Caller(make_keycloak_user())


@pytest.fixture
def other(make_keycloak_user: Callable[..., KeycloakUser]) -> Caller:
    return Caller(make_keycloak_user())


@pytest.fixture
def admin(make_keycloak_user: Callable[..., KeycloakUser]) -> Caller:
    return Caller(make_keycloak_user(roles=("portal-admin",)))


def create(caller: Caller, name: str = "nightly", **fields: Any) -> Any:
    return caller("POST", "/keys", {"name": name, "api": "sample", **fields})


def assert_problem(response: Any, status: int, detail: str) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    problem: dict[str, Any] = response.json()
    assert problem["status"] == status
    assert detail in problem["detail"]
    return problem


def test_a_customer_creates_rotates_and_revokes_a_key_through_the_api(api_customer: Caller) -> None:
    made = create(api_customer, lifetime_days=30)

    assert made.status_code == 201, made.content
    assert made["Cache-Control"] == "no-store"
    first = made.json()
    assert is_well_formed(first["client_secret"])
    assert first["key"]["status"] == "active"
    assert request_token(first["client_id"], first["client_secret"]).status_code == 200
    key_id = first["key"]["id"]
    listed = api_customer("GET", "/keys").json()
    assert [k["id"] for k in listed["items"]] == [key_id]
    assert "client_secret" not in api_customer("GET", f"/keys/{key_id}").json()

    rotated = api_customer("POST", f"/keys/{key_id}/rotate").json()
    assert request_token(first["client_id"], first["client_secret"]).status_code == 401
    assert request_token(first["client_id"], rotated["client_secret"]).status_code == 200

    revoked = api_customer("POST", f"/keys/{key_id}/revoke")
    assert revoked.json()["status"] == "revoked"
    assert request_token(first["client_id"], rotated["client_secret"]).status_code == 401
    actions = {e.action: e.via for e in AuditEntry.objects.filter(client_id=first["client_id"])}
    assert actions == {"created": "api", "rotated": "api", "revoked": "api"}
    activity = api_customer("GET", "/activity").json()
    assert {e["action"] for e in activity["items"]} == {"created", "rotated", "revoked"}


def test_a_key_is_renamed_through_the_api_with_clear_refusals(api_customer: Caller) -> None:
    first = create(api_customer, "first").json()["key"]
    create(api_customer, "second")

    renamed = api_customer(
        "PATCH", f"/keys/{first['id']}", {"name": "billing", "description": "ci"}
    )
    assert renamed.status_code == 200, renamed.content
    assert (renamed.json()["name"], renamed.json()["description"]) == ("billing", "ci")
    problem = assert_problem(
        api_customer("PATCH", f"/keys/{first['id']}", {"name": "second"}),
        422,
        "Nothing was changed",
    )
    assert "already have a key with this name" in problem["errors"]["name"][0]
    assert_problem(api_customer("PATCH", f"/keys/{first['id']}", {"nmae": "x"}), 422, "")
    assert api_customer("GET", f"/keys/{first['id']}").json()["name"] == "billing"
    entry = AuditEntry.objects.get(action=AuditEntry.Action.RENAMED)
    assert entry.via == "api"


def test_the_same_idempotency_key_makes_one_key(api_customer: Caller) -> None:
    first = api_customer(
        "POST", "/keys", {"name": "once", "api": "sample"}, **{"Idempotency-Key": "deploy-42"}
    )
    again = api_customer(
        "POST", "/keys", {"name": "once", "api": "sample"}, **{"Idempotency-Key": "deploy-42"}
    )

    assert first.status_code == 201
    problem = assert_problem(again, 409, "already made the key")
    assert problem["key_id"] == first.json()["key"]["id"]
    assert "client_secret" not in again.content.decode()
    assert ApiKey.objects.count() == 1


def test_a_rotation_sent_again_with_its_idempotency_key_rotates_nothing(
    api_customer: Caller,
) -> None:
    made = create(api_customer).json()
    key_id, client_id = made["key"]["id"], made["client_id"]
    retry = {"Idempotency-Key": "rotate-7"}

    first = api_customer("POST", f"/keys/{key_id}/rotate", **retry)
    again = api_customer("POST", f"/keys/{key_id}/rotate", **retry)

    assert first.status_code == 200, first.content
    problem = assert_problem(again, 409, "already rotated the secret")
    assert problem["key_id"] == key_id
    assert "client_secret" not in again.content.decode()
    assert request_token(client_id, first.json()["client_secret"]).status_code == 200
    assert AuditEntry.objects.filter(client_id=client_id, action="rotated").count() == 1
    other = api_customer("POST", f"/keys/{key_id}/rotate", **{"Idempotency-Key": "rotate-8"})
    assert other.status_code == 200  # another key: another rotation
    assert request_token(client_id, first.json()["client_secret"]).status_code == 401


def test_bad_input_is_a_problem_document_naming_the_fields(api_customer: Caller) -> None:
    response = create(api_customer, name="", lifetime_days=9999)

    problem = assert_problem(response, 422, "not created")
    assert set(problem["errors"]) >= {"name", "lifetime_days"}
    assert not ApiKey.objects.exists()
    assert_problem(api_customer("POST", "/keys", {"api": "sample"}), 422, "not valid")


def test_the_quota_holds_through_the_api(api_customer: Caller, settings: Any) -> None:
    settings.MAX_LIVE_KEYS_PER_USER = 1
    assert create(api_customer, "one").status_code == 201

    assert_problem(create(api_customer, "two"), 409, "the most allowed")


def test_key_actions_are_rate_limited(api_customer: Caller, settings: Any) -> None:
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "keys": {"user": "1/m", "address": "99/m"}}
    assert create(api_customer, "one").status_code == 201

    response = create(api_customer, "two")

    assert_problem(response, 429, "Too many key actions")
    assert response["Retry-After"] == "60"


def test_another_users_key_is_not_found(api_customer: Caller, other: Caller) -> None:
    key_id = create(api_customer).json()["key"]["id"]

    for method, path in (
        ("GET", f"/keys/{key_id}"),
        ("POST", f"/keys/{key_id}/rotate"),
        ("POST", f"/keys/{key_id}/revoke"),
        ("POST", f"/keys/{key_id}/finish"),
        ("POST", f"/keys/{key_id}/discard"),
    ):
        assert_problem(other(method, path), 404, "no key with this id")
    assert ApiKey.objects.get().status == ApiKey.Status.ACTIVE


def test_customers_may_not_use_the_admin_endpoints(api_customer: Caller) -> None:
    for method, path in (
        ("GET", "/admin/keys"),
        ("GET", "/admin/audit"),
        ("GET", "/admin/apis"),
        ("GET", "/admin/workload-issuers"),
        ("DELETE", "/admin/workload-issuers/any"),
    ):
        assert_problem(api_customer(method, path), 403, "portal-admin role")


def test_requests_without_a_valid_token_get_401_problems(api_customer: Caller) -> None:
    anonymous = Client().get(f"{API}/keys")
    assert_problem(anonymous, 401, "Send a Keycloak access token")
    assert anonymous["WWW-Authenticate"].startswith("Bearer")

    key = create(api_customer).json()
    key_token = request_token(key["client_id"], key["client_secret"]).json()["access_token"]
    other_audience = Client().get(f"{API}/keys", headers={"Authorization": f"Bearer {key_token}"})
    assert_problem(other_audience, 401, "not meant for this API")

    validator = bearer_tokens.realm_validator()
    clock = validator.clock
    validator.clock = lambda: time.time() + 3600  # an hour on: the token has expired
    try:
        assert_problem(api_customer("GET", "/keys"), 401, "expired")
    finally:
        validator.clock = clock


def test_an_admin_decides_on_keys_and_reads_the_audit_trail(
    api_customer: Caller, admin: Caller, sample: Api
) -> None:
    sample.requires_approval = True
    sample.save()
    asked = create(api_customer, justification="Reports for finance.").json()
    key_id = asked["key"]["id"]
    assert asked["key"]["status"] == "pending"

    gone_team = assert_problem(admin("GET", f"/admin/keys?team={uuid.uuid4()}"), 422, "not valid")
    assert "No team has this id" in str(gone_team["errors"])
    found = admin("GET", "/admin/keys?status=pending").json()
    assert [k["id"] for k in found["items"]] == [key_id]
    assert found["items"][0]["owner_email"] == api_customer.account.email
    assert admin("POST", f"/admin/keys/{key_id}/approve").json()["status"] == "active"
    assert request_token(asked["client_id"], asked["client_secret"]).status_code == 200
    assert_problem(admin("POST", f"/admin/keys/{key_id}/suspend", {"reason": ""}), 422, "Say why")
    suspended = admin("POST", f"/admin/keys/{key_id}/suspend", {"reason": "Checking."})
    assert suspended.json()["status"] == "suspended"
    assert request_token(asked["client_id"], asked["client_secret"]).status_code == 401
    admin("POST", f"/admin/keys/{key_id}/reinstate", {})
    revoked = admin("POST", f"/admin/keys/{key_id}/revoke", {"reason": "Contract ended."})
    assert revoked.json()["status"] == "revoked"

    trail = admin("GET", f"/admin/audit?key={asked['client_id']}").json()["items"]
    newest_first = ["revoked", "reinstated", "suspended", "approved", "created"]
    assert [e["action"] for e in trail] == newest_first
    assert all(e["via"] == "api" for e in trail)
    assert {e["key_name"] for e in trail} == {"nightly"}
    seen_by_owner = api_customer("GET", "/activity").json()["items"]
    assert {e["actor"] for e in seen_by_owner if e["action"] != "created"} == {"an administrator"}


def test_an_admin_keeps_the_catalog(admin: Caller) -> None:
    made = admin(
        "POST",
        "/admin/apis",
        {"name": "Orders", "slug": "orders", "audience": "orders-api", "max_key_lifetime_days": 30},
    )
    assert made.status_code == 201, made.content
    changed = admin(
        "PUT",
        "/admin/apis/orders",
        {
            "name": "Orders",
            "slug": "orders",
            "audience": "orders-api",
            "access_token_lifespan": 120,
        },
    )
    assert changed.json()["access_token_lifespan"] == 120
    assert admin("POST", "/admin/apis/orders/retire").json()["retired"] is True
    assert_problem(
        admin(
            "POST",
            "/admin/apis",
            {"name": "Zero", "slug": "zero", "audience": "z", "max_key_lifetime_days": 0},
        ),
        422,
        "not saved",
    )
    assert "orders" not in {a["slug"] for a in admin("GET", "/apis").json()}


@pytest.mark.django_db
def test_the_openapi_document_is_openapi_3_1_and_valid(client: Client) -> None:
    from openapi_spec_validator import validate

    document = client.get(f"{API}/openapi.json").json()

    assert document["openapi"].startswith("3.1")
    validate(document)
    assert f"{API}/keys/{{key_id}}/rotate" in document["paths"]
    docs = client.get("/docs/api/")
    assert docs.status_code == 200
    assert "/static/ninja/swagger-ui-bundle.js" in docs.content.decode()


@pytest.mark.django_db
def test_the_openapi_document_names_the_paths_under_which_it_is_served(client: Client) -> None:
    """The document is made once per process and prefix: a portal mounted below the root (a
    proxy's SCRIPT_NAME, which Django makes the script prefix) is given its own paths, not the
    root's cached ones."""
    at_root = client.get(f"{API}/openapi.json").json()
    with override_script_prefix("/portal/"):
        below = client.get(f"{API}/openapi.json").json()
    again = client.get(f"{API}/openapi.json").json()

    assert f"{API}/keys" in at_root["paths"]
    assert f"/portal{API}/keys" in below["paths"]
    assert f"{API}/keys" not in below["paths"]
    assert again == at_root


def test_a_private_key_jwt_key_through_the_api_with_its_rotation(api_customer: Caller) -> None:
    first, second = KeyPair.rsa(), KeyPair.ed25519()

    made = create(
        api_customer, "signed", credential="private_key_jwt", public_key=first.public_jwk()
    )

    assert made.status_code == 201, made.content
    body = made.json()
    assert body["client_secret"] is None
    assert body["assertion_audience"] == settings.TOKEN_ISSUER
    assert [k["kid"] for k in body["key"]["public_keys"]] == [first.kid]
    assert gets_token(first, body["client_id"])
    key_id = body["key"]["id"]
    added = api_customer("POST", f"/keys/{key_id}/public-keys", {"public_key": second.public_jwk()})
    assert added.status_code == 201, added.content
    assert gets_token(second, body["client_id"])
    assert gets_token(first, body["client_id"])
    removed = api_customer("DELETE", f"/keys/{key_id}/public-keys/{first.kid}")
    assert [k["kid"] for k in removed.json()["public_keys"]] == [second.kid]
    assert not gets_token(first, body["client_id"])
    assert_problem(api_customer("POST", f"/keys/{key_id}/rotate"), 409, "signs with a private key")


def test_a_private_key_sent_to_the_api_is_refused_and_not_echoed(api_customer: Caller) -> None:
    pair = KeyPair.rsa()

    answer = create(
        api_customer, "oops", credential="private_key_jwt", public_key=pair.private_jwk()
    )

    problem = assert_problem(answer, 422, "see errors")
    assert "treat it as exposed" in problem["errors"]["public_key"][0]
    assert pair.private_jwk()["d"] not in answer.content.decode()
    assert not ApiKey.objects.exists()


def test_a_rotation_with_grace_through_the_api_and_its_early_end(api_customer: Caller) -> None:
    made = create(api_customer).json()
    key_id, client_id = made["key"]["id"], made["client_id"]

    too_long = api_customer("POST", f"/keys/{key_id}/rotate", {"grace_seconds": 169 * 3600})
    rotated = api_customer("POST", f"/keys/{key_id}/rotate", {"grace_seconds": 3600})

    assert_problem(too_long, 422, "at most 168 hours")
    assert rotated.status_code == 200
    second = rotated.json()
    assert second["key"]["previous_secret_until"] is not None
    assert request_token(client_id, made["client_secret"]).status_code == 200
    assert request_token(client_id, second["client_secret"]).status_code == 200
    ended = api_customer("POST", f"/keys/{key_id}/end-grace")
    assert ended.json()["previous_secret_until"] is None
    assert request_token(client_id, made["client_secret"]).status_code == 401
    assert_problem(api_customer("POST", f"/keys/{key_id}/end-grace"), 409, "already stopped")


def test_checking_a_secret_through_the_api(api_customer: Caller, other: Caller) -> None:
    made = create(api_customer).json()

    mine = api_customer("POST", "/secrets/check", {"secret": made["client_secret"]}).json()
    theirs = other("POST", "/secrets/check", {"secret": made["client_secret"]}).json()

    assert mine["ours"] is True
    assert mine["which"] == "current"
    assert mine["works"] is True
    assert mine["key"]["client_id"] == made["client_id"]
    assert theirs == {
        "ours": False,
        "well_formed": True,
        "which": None,
        "works": False,
        "key": None,
    }


def test_a_misspelt_grace_or_a_body_that_is_not_json_is_refused_and_nothing_rotates(
    api_customer: Caller,
) -> None:
    made = create(api_customer).json()
    key_id = made["key"]["id"]

    misspelt = api_customer("POST", f"/keys/{key_id}/rotate", {"grace": 3600})
    huge = api_customer("POST", f"/keys/{key_id}/rotate", {"grace_seconds": 10**12})
    as_form = api_customer.client.post(
        f"{API}/keys/{key_id}/rotate",
        "grace_seconds=3600",
        content_type="application/x-www-form-urlencoded",
        headers={"Authorization": f"Bearer {api_customer.token}"},
    )

    assert "grace" in assert_problem(misspelt, 422, "see errors")["errors"]
    assert "grace_seconds" in assert_problem(huge, 422, "see errors")["errors"]
    assert_problem(as_form, 415, "application/json")
    assert request_token(made["client_id"], made["client_secret"]).status_code == 200


def test_a_public_key_given_with_a_secret_credential_is_refused_not_ignored(
    api_customer: Caller,
) -> None:
    pair = KeyPair.rsa()

    public = create(api_customer, "mixed", public_key=pair.public_pem())
    private = create(api_customer, "mixed", public_key=pair.private_pem())

    assert (
        "Private key (signed JWT)"
        in assert_problem(public, 422, "see errors")["errors"]["credential"][0]
    )
    assert (
        "treat it as exposed"
        in assert_problem(private, 422, "see errors")["errors"]["public_key"][0]
    )
    assert pair.private_pem().splitlines()[1] not in private.content.decode()
    assert not ApiKey.objects.exists()


def test_webhook_endpoints_through_the_api(api_customer: Caller, other: Caller) -> None:
    from tests.receivers import receiver

    with receiver() as inbox:
        made = api_customer("POST", "/webhooks", {"url": inbox.url, "events": ["key.created"]})
        assert made.status_code == 201, made.content
        assert made["Cache-Control"] == "no-store"
        secret = made.json()["signing_secret"]
        endpoint_id = made.json()["endpoint"]["id"]
        assert [e["id"] for e in api_customer("GET", "/webhooks").json()] == [endpoint_id]
        assert "signing_secret" not in api_customer("GET", f"/webhooks/{endpoint_id}").json()
        assert api_customer("POST", f"/webhooks/{endpoint_id}/test").status_code == 202
        create(api_customer)
        from apikeys.operations import webhooks

        webhooks.deliver_due()
        log = api_customer("GET", f"/webhooks/{endpoint_id}/messages").json()
        assert {m["event_type"] for m in log["items"]} == {"webhook.test", "key.created"}
        assert all(m["attempts_made"][0]["status_code"] == 200 for m in log["items"])
        rotated = api_customer(
            "POST", f"/webhooks/{endpoint_id}/rotate-secret", {"overlap_seconds": 3600}
        ).json()
        assert rotated["signing_secret"] != secret
        assert rotated["endpoint"]["previous_secret_until"] is not None
        paused = api_customer("PATCH", f"/webhooks/{endpoint_id}", {"active": False})
        assert paused.json()["active"] is False
        bad = api_customer("PATCH", f"/webhooks/{endpoint_id}", {"events": ["key.exploded"]})
        assert_problem(bad, 422, "Unknown events: key.exploded")
        assert_problem(other("GET", f"/webhooks/{endpoint_id}"), 404, "no webhook endpoint")
        assert api_customer("DELETE", f"/webhooks/{endpoint_id}").status_code == 204

    assert len(inbox.received) == 2
