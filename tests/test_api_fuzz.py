"""The OpenAPI document, fuzzed with schemathesis against the live server (real Keycloak).

Every operation gets generated requests, signed in as a customer and as an administrator:
none may answer 500, and every answer must match what the document promises (status code,
content type, headers, body schema).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from apikeys.api import api
from tests.accounts import KeycloakUser
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


@pytest.fixture
def tokens(make_keycloak_user: Callable[..., KeycloakUser]) -> dict[str, str]:
    customer = make_keycloak_user()
    admin = make_keycloak_user(roles=("portal-admin",))
    return {
        "customer": cli_tokens(customer.email, customer.password)["access_token"],
        "admin": cli_tokens(admin.email, admin.password)["access_token"],
    }


@pytest.mark.parametrize("operation", operations(), ids=lambda op: op.label)
def test_no_operation_fails_or_breaks_its_promise(
    operation: Any, live_server: Any, tokens: dict[str, str]
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
                headers={"Authorization": f"Bearer {tokens[who]}"},
                checks=CHECKS,
            )

    fuzz()
