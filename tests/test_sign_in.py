"""Sign-in, registration and sign-out end to end: real browser, real Keycloak, real mail."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

from django.conf import settings
from playwright.sync_api import Page, expect

from apikeys.keycloak.client import Connection
from apikeys.models import User
from tests.accounts import PASSWORD, KeycloakUser
from tests.browser import sign_in, sign_out, start_registration, verification_link
from tests.mail import plain_text, wait_for_message

MakeUser = Callable[..., KeycloakUser]


def test_signing_in_goes_through_keycloak_with_pkce_and_back(
    page: Page, make_keycloak_user: MakeUser
) -> None:
    user = make_keycloak_user()

    page.goto("/keys/")

    assert page.url.startswith(f"{settings.KEYCLOAK_PUBLIC_URL}/realms/{settings.KEYCLOAK_REALM}/")
    assert "code_challenge_method=S256" in page.url
    page.fill("#username", user.email)
    page.fill("#password", user.password)
    page.click("#kc-login")
    page.wait_for_url("**/keys/")
    expect(page.get_by_test_id("signed-in-as")).to_contain_text("Test User")
    portal_user = User.objects.get(username=user.id)
    assert portal_user.email == user.email
    assert not portal_user.is_staff


def test_signing_out_ends_the_portal_and_the_keycloak_session(
    page: Page, make_keycloak_user: MakeUser
) -> None:
    user = make_keycloak_user()
    sign_in(page, user.email)

    sign_out(page)

    expect(page.get_by_role("navigation").get_by_role("link", name="Sign in")).to_be_visible()
    page.goto("/keys/")
    # Keycloak asks for the password again: its session ended too (no silent single sign-on).
    expect(page.locator("#username")).to_be_visible()
    assert page.url.startswith(settings.KEYCLOAK_PUBLIC_URL)


def test_the_portal_admin_role_makes_staff_and_removing_it_unmakes(
    page: Page, make_keycloak_user: MakeUser, bootstrapped: Connection
) -> None:
    user = make_keycloak_user(roles=("portal-admin",))
    sign_in(page, user.email)
    assert User.objects.get(username=user.id).is_staff
    expect(page.get_by_test_id("signed-in-as")).to_contain_text("admin")

    admin = bootstrapped.admin
    admin.delete_realm_roles_of_user(user.id, [admin.get_realm_role("portal-admin")])
    sign_out(page)
    sign_in(page, user.email)

    assert not User.objects.get(username=user.id).is_staff


def test_a_user_whose_email_changes_stays_the_same_portal_user(
    page: Page, make_keycloak_user: MakeUser, bootstrapped: Connection
) -> None:
    user = make_keycloak_user()
    sign_in(page, user.email)
    before = User.objects.get(username=user.id)
    new_email = f"renamed-{uuid.uuid4().hex[:8]}@example.com"
    bootstrapped.admin.update_user(user.id, {"email": new_email, "emailVerified": True})
    sign_out(page)

    sign_in(page, new_email)

    after = User.objects.get(email=new_email)
    assert after.pk == before.pk
    assert User.objects.filter(username=user.id).count() == 1


def test_a_customer_registers_verifies_the_email_sets_a_password_and_lands_signed_in(
    page: Page, bootstrapped: Connection
) -> None:
    # Keycloak 26.7 asks for the password only after the email is verified, so nobody can
    # pre-register someone else's address with a password of their own.
    email = f"new-{uuid.uuid4().hex[:10]}@example.com"
    start_registration(page, email, "Ada", "Lovelace")
    expect(page.get_by_text(re.compile("verify your email", re.IGNORECASE)).first).to_be_visible()
    mailed = plain_text(wait_for_message(email))
    assert re.search(r"expire within 1 hour", mailed), mailed  # time to find the mail
    assert "Someone has created an account on the API key portal with this email" in mailed
    assert "If you didn't create this account" in mailed  # worded again (not "a API key")

    page.goto(verification_link(email))

    page.fill("#password-new", "short")
    page.fill("#password-confirm", "short")
    page.locator("[type=submit]").first.click()
    expect(page.get_by_text(re.compile("minimum length", re.IGNORECASE)).first).to_be_visible()
    page.fill("#password-new", PASSWORD)
    page.fill("#password-confirm", PASSWORD)
    page.locator("[type=submit]").first.click()

    page.wait_for_url("**/keys/")
    expect(page.get_by_test_id("signed-in-as")).to_contain_text("Ada Lovelace")
    assert User.objects.get(email=email).first_name == "Ada"
