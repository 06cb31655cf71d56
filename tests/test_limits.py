"""Abuse has limits: per user and per address on key actions, a daily cap, registration."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from playwright.sync_api import Page, expect

from apikeys.keycloak.client import Connection
from apikeys.models import Api, ApiKey, User
from apikeys.operations import lifecycle
from tests.accounts import KeycloakUser
from tests.browser import sign_in
from tests.conftest import key_clients_in_keycloak
from tests.factories import issue, submit_key_form

pytestmark = [pytest.mark.embedded, pytest.mark.usefixtures("key_clients")]


@pytest.mark.usefixtures("sample")
def test_a_create_revoke_loop_is_stopped_with_a_clear_429(
    client: Client, owner: User, settings: Any, key_clients: Connection
) -> None:
    # Per hour: a minute's window may end between the requests (see below).
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "keys": {"user": "4/h", "address": "100/h"}}
    client.force_login(owner)
    for n in range(2):
        submit_key_form(client, f"loop {n}", lifetime_days="9")
        client.post(reverse("revoke_key", args=[ApiKey.objects.get(name=f"loop {n}").pk]))

    response = submit_key_form(client, "one too many", lifetime_days="9")

    assert response.status_code == 429
    assert response["Retry-After"] == "60"
    assert "Please slow down" in response.content.decode()
    assert not ApiKey.objects.filter(name="one too many").exists()
    assert [c["clientId"] for c in key_clients_in_keycloak(key_clients)] == []
    htmx = submit_key_form(
        client, "in the panel", lifetime_days="9", headers={"HX-Request": "true"}
    )
    assert htmx.status_code == 429
    assert 'data-testid="too-many"' in htmx.content.decode()


@pytest.mark.usefixtures("sample")
def test_many_accounts_from_one_address_share_its_limit(
    client: Client, owner: User, other_user: User, settings: Any
) -> None:
    # Per hour, not per minute: django-ratelimit's windows start at an offset of their own
    # (a hash of the key), so a minute's boundary may fall between the three requests.
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "keys": {"user": "100/h", "address": "2/h"}}
    client.force_login(owner)
    assert submit_key_form(client, "first", lifetime_days="9").status_code == 200
    client.force_login(other_user)
    assert submit_key_form(client, "second", lifetime_days="9").status_code == 200

    assert submit_key_form(client, "third", lifetime_days="9").status_code == 429


def test_the_daily_cap_on_keys_made_counts_revoked_ones(
    owner: User, sample: Api, settings: Any
) -> None:
    settings.MAX_KEYS_MADE_PER_DAY = 2
    for n in range(2):
        made = issue(owner, sample, name=f"k{n}", lifetime_days=9)
        lifecycle.revoke_key(made.key, actor=owner)

    with pytest.raises(lifecycle.QuotaExceeded, match="in the last 24 hours"):
        issue(owner, sample, name="k2", lifetime_days=9)


@pytest.mark.django_db
def test_starting_registrations_from_one_address_is_limited(client: Client, settings: Any) -> None:
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "register": {"address": "2/h"}}
    for _ in range(2):
        assert client.get(reverse("register")).status_code == 302  # on to Keycloak's page

    response = client.get(reverse("register"))

    assert response.status_code == 429
    assert "Too many accounts were started from your address" in response.content.decode()


@pytest.mark.usefixtures("sample")
def test_with_javascript_the_limit_is_said_in_the_panel(
    page: Page, make_keycloak_user: Callable[..., KeycloakUser], settings: Any
) -> None:
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "keys": {"user": "1/m", "address": "100/m"}}
    sign_in(page, make_keycloak_user().email)
    page.get_by_role("link", name="New key").click()
    page.get_by_label("Name", exact=True).fill("first")
    page.get_by_role("button", name="Create key").click()
    expect(page.get_by_test_id("reveal")).to_be_visible()

    page.get_by_role("link", name="New key").click()
    page.get_by_label("Name", exact=True).fill("second")
    page.get_by_role("button", name="Create key").click()

    expect(page.get_by_test_id("too-many")).to_contain_text("Please slow down")
    assert ApiKey.objects.filter(name="second").count() == 0
