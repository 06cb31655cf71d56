"""Portal sessions and admin rights follow Keycloak (real sign-in in Chromium)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from django.core.management import call_command
from playwright.sync_api import Page, expect

from apikeys.keycloak.client import Connection
from apikeys.models import AuditEntry, User
from apikeys.operations import notifications
from tests.accounts import KeycloakUser
from tests.browser import answer_second_factor, sign_in

pytestmark = pytest.mark.usefixtures("key_clients")

CHECK_SECONDS = 1


@pytest.fixture
def quick_checks(settings: Any) -> None:
    settings.KEYCLOAK_SESSION_CHECK_SECONDS = CHECK_SECONDS


@pytest.mark.usefixtures("quick_checks")
def test_an_admin_whose_role_is_removed_loses_the_admin_area_at_the_next_check(
    page: Page, make_keycloak_user: Callable[..., KeycloakUser], bootstrapped: Connection
) -> None:
    account = make_keycloak_user(roles=("portal-admin",))
    sign_in(page, account.email)  # sets up an authenticator app
    page.goto("/manage/")  # and uses it: the admin area needs level 2
    answer_second_factor(page, account.email)
    expect(page.get_by_role("heading", name="Key requests waiting for approval")).to_be_visible()

    admin = bootstrapped.admin
    admin.delete_realm_roles_of_user(account.id, [admin.get_realm_role("portal-admin")])
    time.sleep(CHECK_SECONDS + 0.5)

    response = page.goto("/manage/")
    assert response is not None
    assert response.status == 404
    page.goto("/keys/")  # still signed in, as a customer
    expect(page.get_by_role("heading", name="Your API keys")).to_be_visible()
    user = User.objects.get(username=account.id)
    assert not user.is_staff
    assert AuditEntry.objects.filter(about_user=user, action="admin_off").exists()


@pytest.mark.usefixtures("quick_checks")
def test_revoking_a_users_keycloak_sessions_signs_them_out_of_the_portal(
    page: Page, make_keycloak_user: Callable[..., KeycloakUser], bootstrapped: Connection
) -> None:
    account = make_keycloak_user()
    sign_in(page, account.email)

    bootstrapped.admin.user_logout(account.id)
    time.sleep(CHECK_SECONDS + 0.5)
    page.goto("/keys/")

    page.wait_for_url("**/protocol/openid-connect/auth**")  # Keycloak's sign-in page again
    expect(page.locator("#kc-login")).to_be_visible()


@pytest.mark.embedded
@pytest.mark.django_db
def test_the_admin_role_removed_in_keycloak_stops_admin_mail_without_a_sign_in(
    make_keycloak_user: Callable[..., KeycloakUser], bootstrapped: Connection
) -> None:
    account = make_keycloak_user(roles=("portal-admin",))
    user = User.objects.create(username=account.id, email=account.email, is_staff=True)
    call_command("sync_users")
    assert account.email in notifications.admin_recipients()

    admin = bootstrapped.admin
    admin.delete_realm_roles_of_user(account.id, [admin.get_realm_role("portal-admin")])
    call_command("sync_users")

    assert not User.objects.get(pk=user.pk).is_staff
    assert account.email not in notifications.admin_recipients()


@pytest.mark.embedded
def test_a_session_signed_in_before_session_checks_must_sign_in_again(
    client: Any, owner: User
) -> None:
    client.force_login(owner)
    session = client.session
    session["oidc_id_token"] = "signed in through Keycloak, with no refresh token kept"
    session.save()

    response = client.get("/keys/")

    assert response.status_code == 302
    assert "/oidc/authenticate/" in response["Location"]
