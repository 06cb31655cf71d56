"""The OpenAPI document, fuzzed with schemathesis against the live server (real Keycloak).

Every operation gets generated requests, signed in as a customer and as an administrator (at
level 2: the admin API needs their second factor):
none may answer 500, and every answer must match what the document promises (status code,
content type, headers, body schema).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from keycloak import KeycloakAdmin
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from apikeys.api import api
from apikeys.keycloak.client import Connection
from tests.accounts import PASSWORD, create_keycloak_user
from tests.oidc import cli_tokens

pytestmark = pytest.mark.usefixtures("key_clients", "sample")

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


def operations() -> list[Any]:
    """The operations of the document the portal serves at /api/v1/openapi.json."""
    document = json.loads(json.dumps(api.get_openapi_schema(path_prefix="/api/v1/"), default=str))
    schema = schemathesis.openapi.from_dict(document)
    return [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]


class Callers:
    """A customer and an administrator in Keycloak for the whole module (made once: each
    sign-in costs a second, an administrator's a code of their authenticator too), their
    tokens taken again when a minute old, well before Keycloak's lifespan ends them."""

    def __init__(self, admin: KeycloakAdmin) -> None:
        self.admin = admin
        self.people: dict[str, tuple[str, str]] = {}
        self.tokens: dict[str, tuple[float, str]] = {}
        for who, roles in (("customer", ()), ("admin", ("portal-admin",))):
            made = create_keycloak_user(admin, prefix=f"fuzz-{who}", roles=roles)
            self.people[who] = (made.id, made.email)

    def token(self, who: str) -> str:
        taken, token = self.tokens.get(who, (0.0, ""))
        if time.monotonic() - taken > 60:
            token = cli_tokens(self.people[who][1], PASSWORD)["access_token"]
            self.tokens[who] = (time.monotonic(), token)
        return token

    def forget(self) -> None:
        for user_id, _ in self.people.values():
            self.admin.delete_user(user_id)


@pytest.fixture(scope="module")
def callers(bootstrapped: Connection) -> Iterator[Callers]:
    made = Callers(bootstrapped.admin)
    yield made
    made.forget()


@pytest.mark.parametrize("operation", operations(), ids=lambda op: op.label)
def test_no_operation_fails_or_breaks_its_promise(
    operation: Any, live_server: Any, callers: Callers
) -> None:
    @given(case=operation.as_strategy())
    @settings(
        max_examples=12,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        database=None,
    )
    def fuzz(case: Any) -> None:
        for who in ("customer", "admin"):
            case.call_and_validate(
                base_url=live_server.url,
                headers={"Authorization": f"Bearer {callers.token(who)}"},
                checks=CHECKS,
            )

    fuzz()
