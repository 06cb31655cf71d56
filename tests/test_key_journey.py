"""A customer's whole journey in Chromium: register, verify, create a key, use it, revoke it."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from apikeys.credentials.secret_format import is_well_formed
from apikeys.keycloak.client import Connection
from apikeys.models import Api
from tests.accounts import PASSWORD, KeycloakUser
from tests.browser import (
    broken_words,
    sign_in,
    start_registration,
    sticking_out,
    verification_link,
)
from tests.tokens import request_token

pytestmark = [pytest.mark.embedded, pytest.mark.usefixtures("key_clients", "sample")]


def register(page: Page, email: str) -> None:
    start_registration(page, email, "Grace", "Hopper")
    page.goto(verification_link(email))
    page.fill("#password-new", PASSWORD)
    page.fill("#password-confirm", PASSWORD)
    page.locator("[type=submit]").first.click()
    page.wait_for_url("**/keys/")


def read_credentials(page: Page) -> tuple[str, str]:
    secret = page.get_by_test_id("client-secret").inner_text().strip()
    client_id = page.locator("#client-id").inner_text().strip()
    return client_id, secret


def test_a_new_customer_creates_a_key_uses_it_and_revokes_it(page: Page) -> None:
    register(page, f"grace-{uuid.uuid4().hex[:8]}@example.com")
    expect(page.get_by_text("You have no API keys yet.")).to_be_visible()

    page.get_by_role("link", name="New key").click()  # htmx: the form opens in place
    page.get_by_label("Name", exact=True).fill("nightly export")
    page.get_by_label("API", exact=True).select_option(label="Sample API")
    page.get_by_role("button", name="Create key").click()

    expect(page.get_by_test_id("reveal")).to_be_visible()
    assert page.url.endswith("/keys/")  # no navigation: the panel was swapped in
    client_id, secret = read_credentials(page)
    assert is_well_formed(secret)
    expect(page.get_by_role("button", name="Copy").first).to_be_visible()
    expect(page.locator(f"tr[data-client-id='{client_id}']")).to_contain_text("in 89 days")
    assert request_token(client_id, secret).status_code == 200
    for width in (1024, 600, 375):  # the reveal and the list fit a phone
        page.set_viewport_size({"width": width, "height": 800})
        assert sticking_out(page) == [], width
    page.set_viewport_size({"width": 1280, "height": 800})

    page.locator(f"tr[data-client-id='{client_id}']").get_by_role("link", name="Revoke…").click()
    page.get_by_role("button", name="Revoke the key").click()

    expect(page.get_by_role("status")).to_contain_text("is revoked")
    expect(
        page.get_by_test_id("ended-keys").locator(f"tr[data-client-id='{client_id}']")
    ).to_be_attached()
    assert request_token(client_id, secret).status_code == 401


@pytest.fixture
def page_without_javascript(
    browser: Browser, live_server: Any, bootstrapped: Connection
) -> Iterator[Page]:
    context = browser.new_context(base_url=live_server.url, java_script_enabled=False)
    context.set_default_timeout(20_000)
    yield context.new_page()
    context.close()


def test_everything_works_without_javascript(
    page_without_javascript: Page, make_keycloak_user: Callable[..., KeycloakUser], sample: Api
) -> None:
    page = page_without_javascript
    sign_in(page, make_keycloak_user().email)

    page.get_by_role("link", name="New key").click()
    page.wait_for_url("**/keys/new/")
    page.get_by_label("Name", exact=True).fill("no script")
    page.get_by_role("button", name="Create key").click()
    client_id, first = read_credentials(page)
    page.get_by_role("link", name="I have saved the secret").click()

    page.locator(f"tr[data-client-id='{client_id}']").get_by_role("link", name="Rotate…").click()
    page.get_by_role("button", name="Rotate the secret").click()
    _, second = read_credentials(page)

    assert request_token(client_id, first).status_code == 401
    assert request_token(client_id, second).status_code == 200
    page.goto("/keys/")
    page.locator(f"tr[data-client-id='{client_id}']").get_by_role("link", name="Revoke…").click()
    page.get_by_role("button", name="Revoke the key").click()
    page.wait_for_url("**/keys/")
    expect(page.get_by_role("status")).to_contain_text("is revoked")
    assert request_token(client_id, second).status_code == 401


def test_rotate_and_revoke_work_from_the_keys_own_page_with_javascript(
    page: Page, make_keycloak_user: Callable[..., KeycloakUser]
) -> None:
    sign_in(page, make_keycloak_user().email)
    page.get_by_role("link", name="Create your first key").click()  # a page of its own
    page.get_by_label("Name", exact=True).fill("from its page")
    page.get_by_role("button", name="Create key").click()
    client_id, first = read_credentials(page)
    page.get_by_role("link", name="I have saved the secret").click()

    page.get_by_role("link", name="from its page").click()
    page.get_by_role("link", name="Rotate secret…").click()
    page.get_by_role("button", name="Rotate the secret").click()
    expect(page.get_by_test_id("reveal")).to_contain_text("The old secret has stopped working")
    _, second = read_credentials(page)
    assert request_token(client_id, first).status_code == 401
    assert request_token(client_id, second).status_code == 200
    page.reload()  # the browser sends the rotation again: the secret just shown must live
    expect(page.get_by_test_id("already-rotated")).to_contain_text("Nothing was rotated again")
    assert request_token(client_id, second).status_code == 200

    page.get_by_role("link", name="The key's page").click()
    for width in (600, 375):  # the key's page reads well on a phone
        page.set_viewport_size({"width": width, "height": 800})
        assert sticking_out(page) == [], width
        assert broken_words(page) == [], width
    page.set_viewport_size({"width": 1280, "height": 800})
    page.get_by_role("link", name="Revoke…").click()
    expect(page.get_by_role("main")).to_contain_text("refuses the key's tokens already issued")
    page.get_by_role("button", name="Revoke the key").click()
    expect(page.get_by_role("status")).to_contain_text("is revoked")
    expect(page.get_by_test_id("no-live-keys")).to_be_visible()
    expect(
        page.get_by_test_id("ended-keys").locator(f"tr[data-client-id='{client_id}']")
    ).to_be_visible()
    assert request_token(client_id, second).status_code == 401
