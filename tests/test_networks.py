"""Keys limited to network ranges, enforced inside the real Keycloak by the portal's extension
(keycloak-extension/, the `apikey-portal-networks` client policy executor).

The tests stay on loopback: they change the ranges a key allows, not where they send from.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from apikeys.credentials import networks
from apikeys.keycloak import bootstrap
from apikeys.keycloak import client as keycloak
from apikeys.keycloak.client import Connection
from apikeys.models import Api, ApiKey, AuditEntry, KeyUsage, User, WebhookMessage
from apikeys.operations import keycloak_events, lifecycle, webhooks
from apikeys.operations.reconcile import reconcile
from tests.accounts import KeycloakUser
from tests.factories import issue, submit_key_form, works
from tests.test_api import Caller, assert_problem, create
from tests.tokens import request_token

pytestmark = [pytest.mark.embedded, pytest.mark.usefixtures("key_clients")]


@pytest.mark.parametrize(
    ("given", "problem"),
    [
        ("10.0.0.0/33", "“10.0.0.0/33” is not an address or a CIDR range"),
        ("example.com", "“example.com” is not an address or a CIDR range"),
        ("0.0.0.0/0", "0.0.0.0/0 is every address: choose “anywhere”"),
        ("::/0", "::/0 is every address"),
        (", ".join(f"10.0.{n}.0/24" for n in range(21)), "at most 20 ranges (21 given)"),
        ('10.0.0.0/8"}]}, {"protocol": "x', "is not an address or a CIDR range"),
    ],
)
def test_ranges_are_checked_with_a_clear_message(given: str, problem: str) -> None:
    with pytest.raises(networks.BadRanges, match=problem.replace("(", r"\(").replace(")", r"\)")):
        networks.parse(given)


def test_ranges_are_normalised_and_deduplicated() -> None:
    assert networks.parse("203.0.113.7/24\n2001:DB8::1/48, 198.51.100.7 203.0.113.0/24") == [
        "203.0.113.0/24",
        "2001:db8::/48",
        "198.51.100.7/32",
    ]


def test_keycloak_refuses_a_token_from_outside_the_ranges_and_the_usage_says_so(
    owner: User, sample: Api, key_clients: Connection
) -> None:
    began = int(time.time() * 1000) - 1000
    made = issue(owner, sample, "office only", networks=["127.0.0.0/8"])
    assert works(made)

    lifecycle.set_networks(made.key, ["10.0.0.0/8"], actor=owner)

    refused = request_token(made.key.client_id, made.secret)
    assert refused.status_code in (400, 401)
    assert refused.json()["error"] == "unauthorized_client"
    lifecycle.set_networks(made.key, ["::1/128"], actor=owner)  # IPv6 only: not 127.0.0.1
    assert not works(made)
    lifecycle.set_networks(made.key, ["::1/128", "127.0.0.1"], actor=owner)
    assert works(made)
    lifecycle.set_networks(made.key, [], actor=owner)  # anywhere
    assert works(made)

    # Keycloak's own CLIENT_LOGIN_ERROR events, as the listener pushes them, counted.
    events = keycloak.get_events(
        key_clients, "CLIENT_LOGIN_ERROR", since_ms=began, first=0, page=100
    )
    keycloak_events.count_usage(e for e in events if e.get("clientId") == made.key.client_id)
    usage = KeyUsage.objects.get(key=made.key)
    assert usage.outside_networks == 2
    assert usage.refused == 0
    assert usage.wrong_credentials == 0
    entries = AuditEntry.objects.filter(key=made.key, action=AuditEntry.Action.NETWORKS_CHANGED)
    assert entries.count() == 4
    assert entries.first() is not None
    assert entries.first().reason == "From ::1/128, 127.0.0.1/32 to anywhere."  # type: ignore[union-attr]


def test_a_change_of_ranges_is_sent_as_key_updated(owner: User, sample: Api) -> None:
    endpoint = webhooks.create_endpoint(owner, url="http://127.0.0.1:9/h", events=["key.updated"])
    made = issue(owner, sample, "hooked")

    lifecycle.set_networks(made.key, ["192.0.2.0/24"], actor=owner)

    message = WebhookMessage.objects.get(endpoint=endpoint.endpoint, event_type="key.updated")
    assert message.data["key"]["networks"] == ["192.0.2.0/24"]


def test_the_form_refuses_bad_ranges_and_changes_nothing_in_keycloak(
    client: Client, owner: User, sample: Api, key_clients: Connection
) -> None:
    client.force_login(owner)
    answer = submit_key_form(client, "bad", networks="10.0.0.0/8, 300.1.1.1")
    assert "“300.1.1.1” is not an address or a CIDR range" in answer.content.decode()
    assert not ApiKey.objects.filter(owner=owner).exists()

    made = issue(owner, sample, "kept", networks=["127.0.0.0/8"])
    client.post(reverse("set_networks", args=[made.key.pk]), {"networks": "0.0.0.0/0"})
    client_now = keycloak.get_key_client(key_clients, made.key.keycloak_id)
    assert client_now.marks[networks.ATTRIBUTE] == "127.0.0.0/8"
    assert ApiKey.objects.get(pk=made.key.pk).networks == ["127.0.0.0/8"]


def test_an_api_that_requires_ranges_refuses_keys_without_them(
    client: Client, owner: User, sample: Api
) -> None:
    sample.requires_networks = True
    sample.save()
    with pytest.raises(lifecycle.KeyNotIssued, match="must name the networks"):
        issue(owner, sample, "open")
    made = issue(owner, sample, "closed", networks=["127.0.0.1"])
    assert works(made)


def test_reconcile_keeps_ranges_an_operator_narrowed_and_narrows_ones_widened(
    owner: User, sample: Api, key_clients: Connection
) -> None:
    narrowed = issue(owner, sample, "narrowed", networks=["127.0.0.0/8"])
    widened = issue(owner, sample, "widened", networks=["127.0.0.0/8"])
    keycloak.update_client(
        key_clients, narrowed.key.keycloak_id, {"attributes": {networks.ATTRIBUTE: "10.0.0.0/8"}}
    )
    keycloak.update_client(
        key_clients, narrowed.key.keycloak_id, {"attributes": {networks.ATTRIBUTE: "127.0.0.1"}}
    )
    keycloak.update_client(
        key_clients, widened.key.keycloak_id, {"attributes": {networks.ATTRIBUTE: "0.0.0.0/1"}}
    )

    report = reconcile()

    narrow_now = keycloak.get_key_client(key_clients, narrowed.key.keycloak_id)
    assert narrow_now.marks[networks.ATTRIBUTE] == "127.0.0.1"  # kept: restrictive wins
    assert any(
        f.client_id == narrowed.key.client_id and "narrowed" in f.problem for f in report.findings
    )
    wide_now = keycloak.get_key_client(key_clients, widened.key.keycloak_id)
    assert wide_now.marks[networks.ATTRIBUTE] == "127.0.0.0/8"
    assert works(narrowed)
    assert works(widened)


def test_the_api_sets_ranges_and_refuses_bad_ones(
    make_keycloak_user: Callable[..., KeycloakUser], sample: Api
) -> None:
    caller = Caller(make_keycloak_user())
    made = create(caller, networks=["127.0.0.1"]).json()
    assert made["key"]["networks"] == ["127.0.0.1/32"]
    path = f"/keys/{made['key']['id']}/networks"

    bad = caller("PUT", path, {"networks": ["10.0.0.0/8", "::/0"]})
    problem = assert_problem(bad, 422, "Nothing was changed")
    assert "::/0 is every address" in problem["errors"]["networks"][0]

    changed = caller("PUT", path, {"networks": []})
    assert changed.status_code == 200
    assert changed.json()["networks"] == []


@pytest.mark.parametrize(
    ("given", "problem"),
    [
        ("::ffff:0:0/96", "0.0.0.0/0 is every address"),
        ("0.0.0.0/1", "too wide: at most /8 for IPv4"),
        ("2000::/3", "too wide: at most /16 for IPv6"),
        ("fe80::1%eth0", "is not an address or a CIDR range"),
    ],
)
def test_ranges_the_executor_would_read_wider_or_not_at_all_are_refused(
    given: str, problem: str
) -> None:
    with pytest.raises(networks.BadRanges, match=problem):
        networks.parse(given)
    assert networks.parse("::ffff:10.0.0.0/104") == ["10.0.0.0/8"]  # as the executor reads it


def test_ranges_cannot_be_turned_off_while_keys_count_on_them(
    owner: User, sample: Api, key_clients: Connection, settings: Any
) -> None:
    made = issue(owner, sample, "limited", networks=["127.0.0.1"])
    settings.KEYCLOAK_NETWORK_RANGES = False
    with pytest.raises(bootstrap.MissingExecutor, match="1 live keys are limited"):
        bootstrap.run(key_clients, [sample])
    settings.KEYCLOAK_NETWORK_RANGES = True
    assert works(made)
