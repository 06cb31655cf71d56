"""Endpoints that need permissions (`bearer_token_required(permissions=...)`,
`require_permissions`): what a token without them gets, with real tokens of real keys."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import requests
from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.test import Client, RequestFactory
from django.urls import reverse

from apikeys.credentials.bearer import (
    bearer_token_required,
    granted_permissions,
    permission_set,
    realm_validator,
    require_permissions,
)
from apikeys.credentials.challenge import InsufficientScope
from apikeys.http import TokenRequest
from apikeys.models import Api, Permission, User
from apikeys.operations import lifecycle, permissions
from tests.factories import issue
from tests.tokens import claims, request_token

pytestmark = [pytest.mark.embedded, pytest.mark.usefixtures("key_clients")]

READ, WRITE = "orders:read", "orders:write"


@pytest.fixture
def revealed(owner: User, sample: Api) -> lifecycle.Revealed:
    """A key of the sample API with no permissions (its catalog defines none here)."""
    return issue(owner, sample, name="partner app", lifetime_days=30)


def new_token(revealed: lifecycle.Revealed) -> str:
    response = request_token(revealed.key.client_id, revealed.secret)
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


@pytest.fixture
def token(revealed: lifecycle.Revealed) -> str:
    return new_token(revealed)


@pytest.fixture
def orders(sample: Api, admin_user: User) -> dict[str, Permission]:
    """The sample API's permissions, neither given to new keys unless they name it."""
    return {
        name: permissions.define_permission(
            sample, name=name, description=name, default=False, actor=admin_user
        ).permission
        for name in (READ, WRITE)
    }


def endpoint(*needed: str) -> Callable[..., HttpResponse]:
    """A view of the sample API that needs `needed`, declared as a resource server would."""

    @bearer_token_required(audience=settings.WHOAMI_AUDIENCE, permissions=needed)
    def view(request: TokenRequest) -> JsonResponse:
        return JsonResponse({"client_id": request.client_id})

    return view


def call(view: Callable[..., HttpResponse], token: str) -> HttpResponse:
    return view(RequestFactory().get("/", headers={"Authorization": f"Bearer {token}"}))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def json_of(response: HttpResponse) -> Any:
    return json.loads(response.content)


def test_a_token_without_the_permission_gets_403_insufficient_scope(token: str) -> None:
    response = call(endpoint(READ), token)

    detail = "The token does not carry the permission orders:read, which this call needs."
    assert response.status_code == 403
    assert response["WWW-Authenticate"] == (
        'Bearer realm="sample-api", error="insufficient_scope", '
        f'error_description="{detail}", scope="orders:read"'
    )
    assert response["Content-Type"] == "application/json"
    assert response["Cache-Control"] == "no-store"
    assert json_of(response) == {
        "error": "insufficient_scope",
        "error_description": detail,
        "scope": "orders:read",
    }


def test_a_token_with_the_permission_reaches_the_view(
    token: str, sample: Api, revealed: lifecycle.Revealed
) -> None:
    # The API's own scope is in every token's scope claim: a permission every key holds.
    assert sample.scope_name in claims(token)["scope"].split()

    response = call(endpoint(sample.scope_name), token)

    assert response.status_code == 200, response.content
    assert json_of(response) == {"client_id": revealed.key.client_id}


def test_every_needed_permission_is_required(token: str, sample: Api) -> None:
    response = call(endpoint(sample.scope_name, WRITE, READ), token)

    assert response.status_code == 403
    challenge = response["WWW-Authenticate"]
    assert 'error_description="The token does not carry the permissions orders:read ' in challenge
    assert challenge.endswith(f'scope="{sample.scope_name} orders:read orders:write"')


def test_a_key_with_every_needed_permission_is_let_through_and_one_more_is_refused(
    owner: User, orders: dict[str, Permission]
) -> None:
    made = issue(owner, orders[READ].api, "both", permissions=[READ, WRITE])
    token = new_token(made)
    assert {READ, WRITE} <= set(claims(token)["scope"].split())

    assert call(endpoint(READ, WRITE), token).status_code == 200
    refused = call(endpoint(READ, WRITE, "orders:delete"), token)
    assert refused.status_code == 403
    assert "permission orders:delete," in refused["WWW-Authenticate"]


def test_a_token_without_a_scope_claim_carries_no_permission(token: str) -> None:
    verified = realm_validator().validate(token, settings.WHOAMI_AUDIENCE)
    assert verified.permissions == set(verified["scope"].split())
    without_scope = {name: value for name, value in verified.items() if name != "scope"}

    assert granted_permissions(without_scope) == frozenset()
    with pytest.raises(InsufficientScope) as refused:
        require_permissions(without_scope, READ)
    assert refused.value.scope == READ
    assert refused.value.status == 403
    # A scope claim that is not a string gives nothing either: the check fails closed.
    with pytest.raises(InsufficientScope):
        require_permissions(without_scope | {"scope": [READ]}, READ)


def test_require_permissions_takes_a_name_or_several(token: str, sample: Api) -> None:
    verified = realm_validator().validate(token, settings.WHOAMI_AUDIENCE)
    plain = dict(verified)  # the claims as another validator would give them

    for claims_given in (verified, plain):
        require_permissions(claims_given, sample.scope_name)
        require_permissions(claims_given, [sample.scope_name])
        require_permissions(claims_given, permission_set((sample.scope_name,)))
        require_permissions(claims_given, ())
        with pytest.raises(InsufficientScope, match="permission orders:write,"):
            require_permissions(claims_given, (sample.scope_name, WRITE))


@pytest.mark.parametrize("needed", ["orders read", 'orders"read', "", ["orders:read", "a\\b"]])
def test_a_name_no_scope_claim_could_carry_is_refused_when_declared(needed: Any) -> None:
    with pytest.raises(ValueError, match="not a permission's name"):
        bearer_token_required(settings.WHOAMI_AUDIENCE, permissions=needed)


# The sample API's orders


def test_the_sample_orders_refuse_a_key_without_orders_permissions(
    client: Client, token: str
) -> None:
    url = reverse("sample_orders")

    listed = client.get(url, headers=bearer(token))
    placed = client.post(
        url,
        {"item": "widget", "quantity": 2},
        content_type="application/json",
        headers=bearer(token),
    )

    assert listed.status_code == 403
    assert listed["WWW-Authenticate"].endswith(
        'error="insufficient_scope", error_description="The token does not carry the '
        'permission orders:read, which this call needs.", scope="orders:read"'
    )
    assert placed.status_code == 403
    assert placed["WWW-Authenticate"].endswith(', scope="orders:write"')
    assert placed.json()["error_description"] == (
        "The token does not carry the permission orders:write, which this call needs."
    )


def test_the_sample_orders_answer_a_key_with_them(
    client: Client, owner: User, orders: dict[str, Permission]
) -> None:
    made = issue(owner, orders[READ].api, "shop", permissions=[READ, WRITE])
    headers = bearer(new_token(made))
    url = reverse("sample_orders")

    listed = client.get(url, headers=headers)
    placed = client.post(
        url, {"item": "widget", "quantity": 2}, content_type="application/json", headers=headers
    )

    assert listed.status_code == 200, listed.content
    assert listed.json()["client_id"] == made.key.client_id
    assert [order["id"] for order in listed.json()["orders"]] == ["ord-1001", "ord-1002"]
    assert placed.status_code == 201, placed.content
    order = placed.json()["order"]
    assert placed.json()["client_id"] == made.key.client_id
    assert (order["item"], order["quantity"], order["status"]) == ("widget", 2, "open")
    assert client.get(url, headers=headers).json() == listed.json()  # nothing was stored


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ("not json", "body"),
        ("[1, 2]", "body"),
        ('{"quantity": 2}', "item"),
        ('{"item": "   ", "quantity": 2}', "item"),
        ('{"item": "widget", "quantity": 0}', "quantity"),
        ('{"item": "widget", "quantity": true}', "quantity"),
        ('{"item": "widget", "quantity": "2"}', "quantity"),
    ],
)
def test_an_order_that_is_not_valid_is_a_400_that_says_why(
    client: Client, owner: User, orders: dict[str, Permission], body: str, field: str
) -> None:
    made = issue(owner, orders[READ].api, "writer", permissions=[WRITE])

    response = client.post(
        reverse("sample_orders"),
        body,
        content_type="application/json",
        headers=bearer(new_token(made)),
    )

    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert list(response.json()["errors"]) == [field]


def test_a_revoked_keys_token_is_a_401_whatever_permission_it_lacks(
    client: Client, token: str, revealed: lifecycle.Revealed, owner: User
) -> None:
    lifecycle.revoke_key(revealed.key, actor=owner)

    response = client.get(reverse("sample_orders"), headers=bearer(token))

    assert response.status_code == 401
    assert "is revoked" in response.json()["error_description"]


def test_the_sample_orders_take_only_get_and_post(client: Client, token: str) -> None:
    assert client.put(reverse("sample_orders"), headers=bearer(token)).status_code == 405


# examples/resource_server.py


@pytest.mark.django_db(transaction=True)  # the live server serves the feed from its thread
def test_the_example_resource_server_checks_each_endpoints_permission(
    resource_server: str, owner: User, orders: dict[str, Permission]
) -> None:
    made = issue(owner, orders[READ].api, "reader", permissions=[READ])
    headers = bearer(new_token(made))

    listed = requests.get(resource_server, headers=headers, timeout=5)
    placed = requests.post(resource_server, json={"item": "widget"}, headers=headers, timeout=5)

    assert listed.status_code == 200, listed.text
    assert listed.json()["client_id"] == made.key.client_id
    assert placed.status_code == 403
    assert placed.headers["WWW-Authenticate"].endswith(
        'error="insufficient_scope", error_description="The token does not carry the '
        'permission orders:write, which this call needs.", scope="orders:write"'
    )
