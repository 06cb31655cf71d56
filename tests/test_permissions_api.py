"""Permissions through the JSON API, with real Keycloak tokens of the CLI's client and real
keys: chosen at creation, changed (narrowing at once, widening through an administrator's
approval), withdrawn, refused; the catalog's permissions defined and changed by administrators.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from apikeys.keycloak import client as keycloak
from apikeys.keycloak.client import Connection
from apikeys.models import ApiKey, AuditEntry, Membership, Permission, Team, User
from tests.accounts import KeycloakUser
from tests.test_api import Caller, assert_problem, create
from tests.tokens import claims, request_token

pytestmark = [pytest.mark.embedded, pytest.mark.usefixtures("key_clients", "sample")]

READ, WRITE = "orders:read", "orders:write"


@pytest.fixture
def customer_api(make_keycloak_user: Callable[..., KeycloakUser]) -> Caller:
    return Caller(make_keycloak_user())


@pytest.fixture
def admin_api(make_keycloak_user: Callable[..., KeycloakUser]) -> Caller:
    return Caller(make_keycloak_user(roles=("portal-admin",)))


def made(caller: Caller, name: str = "orders", **fields: Any) -> dict[str, Any]:
    answer = create(caller, name, **fields)
    assert answer.status_code == 201, answer.content
    return dict(answer.json())


def scope_of(credentials: dict[str, Any]) -> set[str]:
    """The scope of a token the key gets now."""
    answer = request_token(credentials["client_id"], credentials["client_secret"])
    assert answer.status_code == 200, answer.text
    return set(claims(answer.json()["access_token"]).get("scope", "").split())


@pytest.mark.usefixtures("orders")
def test_a_key_gets_the_apis_defaults_or_the_permissions_it_names(customer_api: Caller) -> None:
    defaults = made(customer_api, "defaults")
    named = made(customer_api, "named", permissions=[READ])
    bare = made(customer_api, "bare", permissions=[])
    left_null = made(customer_api, "null", permissions=None)

    assert defaults["key"]["permissions"] == [READ]
    assert defaults["key"]["permission_request"] is None
    assert named["key"]["permissions"] == [READ]
    assert bare["key"]["permissions"] == []
    assert left_null["key"]["permissions"] == [READ]
    assert READ in scope_of(defaults)
    assert not scope_of(bare) & {READ, WRITE}
    listed = customer_api("GET", "/keys").json()["items"]
    assert {k["name"]: k["permissions"] for k in listed} == {
        "defaults": [READ],
        "named": [READ],
        "bare": [],
        "null": [READ],
    }


@pytest.mark.usefixtures("orders")
def test_an_unknown_permission_is_refused_naming_it_and_the_ones_there_are(
    customer_api: Caller,
) -> None:
    answer = create(customer_api, "x", permissions=[READ, "refunds:write"])

    problem = assert_problem(answer, 422, "not created")
    assert problem["errors"]["permissions"] == [
        "Sample API has no permission refunds:write. Its permissions: orders:read, orders:write."
    ]
    assert not ApiKey.objects.exists()


@pytest.mark.usefixtures("orders")
def test_a_permission_that_needs_approval_needs_a_justification_and_waits(
    customer_api: Caller,
) -> None:
    refused = create(customer_api, "writer", permissions=[WRITE])
    problem = assert_problem(refused, 422, "not created")
    assert "orders:write needs an administrator's approval" in problem["errors"]["justification"][0]

    writer = made(customer_api, "writer", permissions=[WRITE], justification="We sell")

    assert writer["key"]["status"] == "pending"
    assert writer["key"]["permissions"] == [WRITE]


@pytest.mark.usefixtures("orders")
def test_narrowing_is_at_once_and_widening_waits_for_an_administrators_approval(
    customer_api: Caller, admin_api: Caller
) -> None:
    key = made(customer_api)
    path = f"/keys/{key['key']['id']}/permissions"
    assert READ in scope_of(key)

    narrowed = customer_api("PUT", path, {"permissions": []})

    assert narrowed.status_code == 200, narrowed.content
    assert narrowed.json() | {"key": None} == {
        "key": None,
        "added": [],
        "removed": [READ],
        "requested": None,
    }
    assert narrowed.json()["key"]["permissions"] == []
    assert READ not in scope_of(key)
    unjustified = customer_api("PUT", path, {"permissions": [READ, WRITE]})
    assert_problem(unjustified, 422, "Nothing was changed: orders:write need an administrator")

    widened = customer_api(
        "PUT", path, {"permissions": [READ, WRITE], "justification": "We place orders now"}
    ).json()

    assert (widened["added"], widened["removed"]) == ([READ], [])
    asked = widened["requested"]
    assert (asked["permissions"], asked["justification"]) == ([WRITE], "We place orders now")
    assert scope_of(key) >= {READ}
    assert WRITE not in scope_of(key)
    shown = customer_api("GET", f"/keys/{key['key']['id']}").json()
    assert shown["permission_request"] == asked
    again = customer_api("PUT", path, {"permissions": [READ, WRITE], "justification": "again"})
    assert_problem(again, 422, "already has a request waiting")
    assert_problem(customer_api("GET", "/admin/permission-requests"), 403, "portal-admin")
    queue = admin_api("GET", "/admin/permission-requests").json()
    assert [(r["id"], r["client_id"], r["held"]) for r in queue] == [
        (asked["id"], key["client_id"], [READ])
    ]

    approved = admin_api("POST", f"/admin/permission-requests/{asked['id']}/approve")

    assert approved.status_code == 200, approved.content
    assert approved.json()["approved"] is True
    assert scope_of(key) >= {READ, WRITE}
    shown = customer_api("GET", f"/keys/{key['key']['id']}").json()
    assert (shown["permissions"], shown["permission_request"]) == ([READ, WRITE], None)
    assert admin_api("GET", "/admin/permission-requests").json() == []
    decided_again = admin_api("POST", f"/admin/permission-requests/{asked['id']}/approve")
    assert_problem(decided_again, 409, "already decided")


@pytest.mark.usefixtures("orders")
def test_a_request_is_withdrawn_by_its_key_holder(customer_api: Caller) -> None:
    key = made(customer_api)["key"]
    body = {"permissions": [READ, WRITE], "justification": "please"}
    customer_api("PUT", f"/keys/{key['id']}/permissions", body)

    withdrawn = customer_api("DELETE", f"/keys/{key['id']}/permission-request")

    assert withdrawn.status_code == 200, withdrawn.content
    assert (withdrawn.json()["permission_request"], withdrawn.json()["permissions"]) == (
        None,
        [READ],
    )
    nothing = customer_api("DELETE", f"/keys/{key['id']}/permission-request")
    assert_problem(nothing, 404, "no request for permissions waiting")
    entry = AuditEntry.objects.filter(client_id=key["client_id"]).latest("at")
    assert entry.reason == "Request for orders:write withdrawn."


@pytest.mark.usefixtures("orders")
def test_an_administrator_refuses_a_request_saying_why(
    customer_api: Caller, admin_api: Caller
) -> None:
    key = made(customer_api)
    body = {"permissions": [READ, WRITE], "justification": "please"}
    asked = customer_api("PUT", f"/keys/{key['key']['id']}/permissions", body).json()
    refuse = f"/admin/permission-requests/{asked['requested']['id']}/refuse"

    assert_problem(admin_api("POST", refuse, {"reason": "  "}), 422, "Say why")
    refused = admin_api("POST", refuse, {"reason": "Not for tests"})

    assert refused.status_code == 200, refused.content
    assert (refused.json()["approved"], refused.json()["reason"]) == (False, "Not for tests")
    assert WRITE not in scope_of(key)
    entry = AuditEntry.objects.filter(client_id=key["client_id"]).latest("at")
    assert entry.reason == "Refused orders:write: Not for tests"
    assert_problem(
        admin_api("POST", "/admin/permission-requests/999999/refuse", {"reason": "x"}),
        404,
        "no permission request with this id",
    )


@pytest.mark.usefixtures("orders")
def test_a_viewer_in_a_team_sees_the_permissions_and_may_not_change_them(
    make_keycloak_user: Callable[..., KeycloakUser],
) -> None:
    owner, viewer, stranger = (Caller(make_keycloak_user()) for _ in range(3))
    team = owner("POST", "/teams", {"name": "Acme"}).json()["id"]
    viewer("GET", "/me")
    Membership.objects.create(
        team=Team.objects.get(pk=team),
        user=User.objects.get(username=viewer.account.id),
        role="viewer",
    )
    key = made(owner, team=team)["key"]
    path = f"/keys/{key['id']}/permissions"

    assert viewer("GET", f"/keys/{key['id']}").json()["permissions"] == [READ]
    assert_problem(viewer("PUT", path, {"permissions": []}), 403, "you may not")
    assert_problem(stranger("PUT", path, {"permissions": []}), 404, "no key with this id")
    withdraw = f"/keys/{key['id']}/permission-request"
    assert_problem(viewer("DELETE", withdraw), 403, "you may not")
    assert ApiKey.objects.get(pk=key["id"]).permission_names == [READ]


@pytest.mark.usefixtures("orders")
def test_the_admin_key_list_finds_the_keys_holding_a_permission(
    customer_api: Caller, admin_api: Caller
) -> None:
    reader = made(customer_api, "reader")
    made(customer_api, "bare", permissions=[])

    found = admin_api("GET", f"/admin/keys?permission={READ}").json()

    assert [k["client_id"] for k in found["items"]] == [reader["client_id"]]
    assert found["items"][0]["permissions"] == [READ]
    assert admin_api("GET", f"/admin/keys?permission={WRITE}").json()["items"] == []
    for unknown in ("refunds:write", "%00", "x" * 300):
        problem = assert_problem(
            admin_api("GET", f"/admin/keys?permission={unknown}"), 422, "filters are not valid"
        )
        assert "permission" in problem["errors"]


@pytest.mark.usefixtures("orders")
def test_the_catalog_shows_each_apis_permissions(customer_api: Caller) -> None:
    catalog = customer_api("GET", "/apis").json()

    assert [api["permissions"] for api in catalog if api["slug"] == "sample"] == [
        [
            {
                "name": READ,
                "description": "Read the orders",
                "requires_approval": False,
                "default": True,
            },
            {
                "name": WRITE,
                "description": "Place orders",
                "requires_approval": True,
                "default": False,
            },
        ]
    ]


def test_an_administrator_defines_and_changes_a_permission(
    admin_api: Caller, customer_api: Caller, key_clients: Connection
) -> None:
    old = made(customer_api, "old key")
    path = "/admin/apis/sample/permissions"
    bad = admin_api("POST", path, {"name": "Invoices Read", "description": "d"})
    problem = assert_problem(bad, 422, "not added")
    assert "resource and an action" in problem["errors"]["name"][0]
    assert keycloak.find_client_scope(key_clients, "Invoices Read") is None
    assert_problem(customer_api("POST", path, {"name": "a:b", "description": "d"}), 403, "")

    body = {"name": "invoices:read", "description": "Read invoices", "give_to_live_keys": True}
    try:
        defined = admin_api("POST", path, body)

        assert defined.status_code == 201, defined.content
        assert defined.json() == {
            "name": "invoices:read",
            "description": "Read invoices",
            "requires_approval": False,
            "default": True,
            "keys_not_updated": [],
        }
        scope = keycloak.find_client_scope(key_clients, "invoices:read")
        assert scope is not None
        assert "invoices:read" in scope_of(old)
        taken = assert_problem(admin_api("POST", path, body), 422, "not added")
        assert "already exists" in taken["errors"]["name"][0]

        changed = admin_api(
            "PATCH", f"{path}/invoices:read", {"requires_approval": True, "default": False}
        )

        assert changed.status_code == 200, changed.content
        assert changed.json() == {
            "name": "invoices:read",
            "description": "Read invoices",
            "requires_approval": True,
            "default": False,
        }
        blank = admin_api("PATCH", f"{path}/invoices:read", {"description": ""})
        assert_problem(blank, 422, "Nothing was changed")
        assert_problem(admin_api("PATCH", f"{path}/nope:x", {}), 404, "no permission")
        assert_problem(admin_api("PATCH", "/admin/apis/nope/permissions/a:b", {}), 404, "no API")
    finally:
        if scope := keycloak.find_client_scope(key_clients, "invoices:read"):
            _detach_and_delete(key_clients, scope["id"])


def test_a_name_keycloak_has_for_another_scope_is_a_conflict(
    admin_api: Caller, key_clients: Connection
) -> None:
    theirs = {"name": "billing:export", "protocol": "openid-connect"}
    existing = keycloak.find_client_scope(key_clients, "billing:export")
    scope_id = existing["id"] if existing else keycloak.create_client_scope(key_clients, theirs)
    try:
        body = {"name": "billing:export", "description": "Export bills"}
        answer = admin_api("POST", "/admin/apis/sample/permissions", body)

        problem = assert_problem(answer, 409, "Keycloak already has a client scope billing:export")
        assert "name" in problem["errors"]
        assert not Permission.objects.exists()
    finally:
        keycloak.delete_client_scope(key_clients, scope_id)


def _detach_and_delete(conn: Connection, scope_id: str) -> None:
    """A permission's scope the test made, taken off the keys that hold it (Keycloak keeps a
    scope clients use), then deleted."""
    for key in ApiKey.objects.filter(permissions__scope_id=scope_id).exclude(keycloak_id=""):
        keycloak.set_client_scope_of_client(
            conn, key.keycloak_id, "default", scope_id, attached=False
        )
    keycloak.delete_client_scope(conn, scope_id)
