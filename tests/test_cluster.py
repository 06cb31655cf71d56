"""Keycloak as it runs in production: two nodes (`kc.sh start`) on PostgreSQL behind nginx.

The cluster is the project's own (devstack/keycloak_cluster.py, with deploy/keycloak.conf,
the options docker-compose uses). The portal is pointed at one node, or at the balancer,
and partners ask the other node for tokens.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from django.conf import settings as django_settings

from apikeys.keycloak import bootstrap
from apikeys.keycloak import client as keycloak
from apikeys.keycloak.client import Connection
from apikeys.models import Api, User
from apikeys.operations import lifecycle
from devstack import keycloak_cluster
from devstack.keycloak_server import Instance
from tests.conftest import sample_api
from tests.factories import issue

pytestmark = pytest.mark.cluster
FIRST, SECOND = keycloak_cluster.NODES


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    keycloak_cluster.start()
    yield
    keycloak_cluster.stop_all()


def admin_of(where: str) -> Connection:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(django_settings, "KEYCLOAK_URL", where)
        return keycloak.connect(
            realm=django_settings.KEYCLOAK_REALM,
            username=os.environ["KEYCLOAK_BOOTSTRAP_ADMIN_USERNAME"],
            password=os.environ["KEYCLOAK_BOOTSTRAP_ADMIN_PASSWORD"],
            user_realm="master",
            timeout=30,
        )


@pytest.fixture
def on(cluster: None, settings: Any, sample: Api) -> Iterator[Any]:
    """`on(url)` points the portal at a node or the balancer; the realm is bootstrapped."""
    bootstrap.run(admin_of(keycloak_cluster.url()), [sample_api()])

    def point(where: str) -> None:
        settings.KEYCLOAK_URL = where

    yield point
    admin = admin_of(keycloak_cluster.url())
    for page in keycloak.key_clients(admin, "apikey-"):
        for client in page:
            keycloak.delete_client(admin, client.id)


def token_from(node: Instance, client_id: str, secret: str) -> int:
    answer = requests.post(
        f"{node.url}/realms/{django_settings.KEYCLOAK_REALM}/protocol/openid-connect/token",
        data={"grant_type": "client_credentials"},
        auth=(client_id, secret),
        timeout=10,
    )
    return answer.status_code


def test_a_key_made_through_one_node_works_on_the_other_and_a_revoke_reaches_it(
    on: Any, owner: User, sample: Api
) -> None:
    on(FIRST.url)
    made = issue(owner, sample, name="clustered", lifetime_days=30)

    assert token_from(SECOND, made.key.client_id, made.secret) == 200  # at once

    rotated = lifecycle.rotate_secret(made.key, actor=owner)
    assert token_from(SECOND, made.key.client_id, made.secret) == 401
    assert token_from(SECOND, made.key.client_id, rotated.secret) == 200
    lifecycle.revoke_key(rotated.key, actor=owner)
    assert token_from(SECOND, made.key.client_id, rotated.secret) == 401  # the next request


def test_the_portal_carries_on_through_the_balancer_when_a_node_dies(
    on: Any, owner: User, sample: Api
) -> None:
    on(keycloak_cluster.url())
    before = issue(owner, sample, name="before", lifetime_days=30)

    keycloak_cluster.kill(1)
    try:
        during = issue(owner, sample, name="during", lifetime_days=30)
        assert token_from(SECOND, during.key.client_id, during.secret) == 200
        assert token_from(SECOND, before.key.client_id, before.secret) == 200
        lifecycle.revoke_key(before.key, actor=owner)
    finally:
        keycloak_cluster.start_node(FIRST)

    assert token_from(FIRST, during.key.client_id, during.secret) == 200
    assert token_from(FIRST, before.key.client_id, before.secret) == 401
