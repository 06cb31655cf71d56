"""A customer's sensitive acts (rotate, revoke, a key's public keys, permissions and networks,
a webhook endpoint and its URL, a registration token, a team's owners) need a second factor
used within the window of everyone who has one: on the pages, in the API and from the CLI,
against the real Keycloak.

Customers get an authenticator app the way Keycloak gives one: a required action at their next
sign-in, answered on its real enrolment page; codes come from tests/second_factor.py.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from playwright.sync_api import Page, expect

from apikeys.assurance import SESSION_KEY
from apikeys.keycloak.client import Connection
from apikeys.keycloak.desired import SECOND_FACTOR_LEVEL
from apikeys.models import (
    Api,
    ApiKey,
    AuditEntry,
    Membership,
    RegistrationToken,
    Team,
    TeamRole,
    User,
    WebhookEndpoint,
)
from apikeys.operations import teams, webhooks
from tests import cli_browser
from tests.accounts import KeycloakUser
from tests.browser import answer_second_factor, sign_in
from tests.factories import issue, portal_user, record_key, unique_user
from tests.oidc import cli_tokens
from tests.test_cli import Cli
from tests.tokens import claims, request_token

pytestmark = pytest.mark.usefixtures("key_clients", "sample")

API = "/api/v1"


@pytest.fixture
def totp_customer(
    make_keycloak_user: Callable[..., KeycloakUser], bootstrapped: Connection
) -> KeycloakUser:
    """A customer whom Keycloak makes set up an authenticator app at their next sign-in."""
    account = make_keycloak_user()
    bootstrapped.admin.update_user(account.id, {"requiredActions": ["CONFIGURE_TOTP"]})
    return account


@pytest.fixture
def enrolled(totp_customer: KeycloakUser) -> tuple[KeycloakUser, dict[str, Any]]:
    """That customer, who set it up signing in to the CLI's client: their token is level 1
    (setting up a factor is not using it)."""
    tokens = cli_tokens(totp_customer.email, totp_customer.password, step_up=False)
    assert claims(tokens["access_token"])["acr"] == "password"
    return totp_customer, tokens


def signed_in(client: Client, person: User, level: str = "password") -> None:
    """The test client signed in as `person`, the session's sign-in at `level` just now (as the
    ID token of Keycloak's answer says)."""
    client.force_login(person)
    session = client.session
    session[SESSION_KEY] = {"acr": level, "auth_time": int(time.time())}
    session.save()


def wait_until(moment: float) -> None:
    time.sleep(max(moment - time.time(), 0))


def bearer(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


HOOK, ELSEWHERE = "http://127.0.0.1:9/hooks", "http://127.0.0.1:9/elsewhere"
PUBLIC_KEY = (
    "-----BEGIN PUBLIC KEY-----\nnot read: the act is refused first\n-----END PUBLIC KEY-----"
)


@dataclass(frozen=True)
class Holdings:
    """What a person holds that the acts equivalent to a rotation or a role change touch, and
    a team of someone else's."""

    key: ApiKey
    team: Team
    co_owner: User
    developer: User
    endpoint: WebhookEndpoint
    stranger: User
    strangers_team: Team


def holdings_of(person: User, api: Api) -> Holdings:
    team = teams.create_team(person, "Acme")
    co_owner, developer, stranger = unique_user(), unique_user(), unique_user()
    Membership.objects.create(team=team, user=co_owner, role=TeamRole.OWNER)
    Membership.objects.create(team=team, user=developer, role=TeamRole.DEVELOPER)
    return Holdings(
        key=record_key(person, api),
        team=team,
        co_owner=co_owner,
        developer=developer,
        endpoint=webhooks.create_endpoint(person, url=HOOK, events=["key.rotated"]).endpoint,
        stranger=stranger,
        strangers_team=teams.create_team(stranger, "Elsewhere"),
    )


def nothing_changed(held: Holdings) -> bool:
    held.endpoint.refresh_from_db()
    owners = held.team.memberships.filter(role=TeamRole.OWNER).count()
    invited = held.team.invitations.filter(role=TeamRole.OWNER).exists()
    return (
        not held.key.public_keys.exists()
        and owners == 2
        and not invited
        and (held.endpoint.url == HOOK)
    )


# --- The pages ---------------------------------------------------------------------------


def read_credentials(page: Page) -> tuple[str, str]:
    return (
        page.locator("#client-id").inner_text().strip(),
        page.get_by_test_id("client-secret").inner_text().strip(),
    )


def test_a_rotation_steps_up_through_keycloak_and_a_revoke_within_the_window_does_not(
    page: Page, totp_customer: KeycloakUser, settings: Any
) -> None:
    sign_in(page, totp_customer.email)  # sets up the app: this sign-in is level 1
    signed_in_at = time.time()
    page.get_by_role("link", name="Create your first key").click()
    page.get_by_label("Name", exact=True).fill("stepped up")
    page.get_by_role("button", name="Create key").click()
    client_id, first = read_credentials(page)
    page.get_by_role("link", name="I have saved the secret").click()
    row = page.locator(f"tr[data-client-id='{client_id}']")
    # A short window, and a Keycloak sign-in older than it: Keycloak asks for everything again.
    settings.STEP_UP_WINDOW_SECONDS = 2
    wait_until(signed_in_at + 3)

    row.get_by_role("link", name="Rotate…").click()
    page.get_by_role("button", name="Rotate the secret").click()  # htmx: HX-Redirect there
    page.wait_for_selector("#password")
    if page.locator("#username").count():
        page.fill("#username", totp_customer.email)
    page.fill("#password", totp_customer.password)
    page.click("#kc-login")
    answer_second_factor(page, totp_customer.email)
    page.wait_for_url("**/step-up/continue/")
    settings.STEP_UP_WINDOW_SECONDS = 60  # for the test's own clicks from here on
    page.get_by_test_id("step-up-continue").get_by_role("button", name="Continue").click()

    expect(page.get_by_test_id("reveal")).to_be_visible()
    _, second = read_credentials(page)
    assert request_token(client_id, first).status_code == 401
    assert request_token(client_id, second).status_code == 200
    key = ApiKey.objects.get(client_id=client_id)
    assert key.audit_entries.filter(action=AuditEntry.Action.ROTATED).exists()
    stepped = AuditEntry.objects.filter(about_user=key.owner, action=AuditEntry.Action.STEPPED_UP)
    assert SECOND_FACTOR_LEVEL in stepped.get().reason

    page.goto("/keys/")
    row.get_by_role("link", name="Revoke…").click()
    page.get_by_role("button", name="Revoke the key").click()

    expect(page.get_by_role("status")).to_contain_text("is revoked")
    assert page.url.endswith("/keys/")  # not by way of Keycloak
    assert stepped.count() == 1
    assert request_token(client_id, second).status_code == 401


@pytest.mark.embedded
def test_a_customer_without_a_second_factor_rotates_and_revokes_with_no_step_up(
    client: Client, make_keycloak_user: Callable[..., KeycloakUser], sample: Api
) -> None:
    person = portal_user(make_keycloak_user())  # Keycloak has no second factor of theirs
    signed_in(client, person)
    revealed = issue(person, sample)

    rotated = client.post(reverse("rotate_key", args=[revealed.key.pk]), {"grace_hours": "0"})
    revoked = client.post(reverse("revoke_key", args=[revealed.key.pk]))

    assert rotated.status_code == 200
    assert 'data-testid="client-secret"' in rotated.content.decode()
    assert revoked.status_code == 302
    assert revoked["Location"] == reverse("home")
    revealed.key.refresh_from_db()
    assert revealed.key.status == ApiKey.Status.REVOKED


@pytest.mark.embedded
def test_an_htmx_act_that_needs_a_step_up_sends_the_whole_page_to_keycloak(
    client: Client, enrolled: tuple[KeycloakUser, dict[str, Any]], sample: Api
) -> None:
    person = portal_user(enrolled[0])
    signed_in(client, person)
    key = issue(person, sample).key

    answer = client.post(
        reverse("set_networks", args=[key.pk]),
        {"networks": "10.0.0.0/8"},
        headers={"HX-Request": "true"},
    )

    assert answer.status_code == 200  # htmx follows HX-Redirect, not a 302 inside the request
    assert answer["HX-Redirect"] == (
        f"{reverse('oidc_step_up')}?next=%2Fstep-up%2Fcontinue%2F&max_age=600"
    )
    key.refresh_from_db()
    assert key.networks == []


@pytest.mark.embedded
def test_a_teams_act_resumes_after_the_step_up_at_its_address_with_the_team(
    client: Client, enrolled: tuple[KeycloakUser, dict[str, Any]]
) -> None:
    person = portal_user(enrolled[0])
    team = teams.create_team(person, "Acme")
    signed_in(client, person)
    address = f"{reverse('registration_token_new')}?team={team.pk}"
    fields = {"name": "ci", "api": "sample", "max_registrations": "2", "expires_in_days": "7"}
    fields |= {"key_lifetime_days": "30", "permissions_given": "on"}

    refused = client.post(address, fields)
    resumed = client.get(reverse("step_up_continue"))
    signed_in(client, person, SECOND_FACTOR_LEVEL)  # as Keycloak's answer to the step-up says
    made = client.post(address, fields)

    assert refused.status_code == 302
    assert refused["Location"].startswith(reverse("oidc_step_up"))
    assert f'action="{address}"' in resumed.content.decode()
    assert made.status_code == 200
    assert RegistrationToken.objects.get().team == team


@pytest.mark.embedded
def test_the_pages_step_up_to_add_a_public_key_make_or_drop_an_owner_or_move_a_webhook(
    client: Client, enrolled: tuple[KeycloakUser, dict[str, Any]], sample: Api
) -> None:
    person = portal_user(enrolled[0])
    held = holdings_of(person, sample)
    signed_in(client, person)
    team, edit = held.team, reverse("webhook_edit", args=[held.endpoint.pk])

    refused = [
        client.post(reverse("add_public_key", args=[held.key.pk]), {"public_key": PUBLIC_KEY}),
        client.post(reverse("team_invite", args=[team.pk]), {"email": "o@x.test", "role": "owner"}),
        client.post(reverse("team_remove", args=[team.pk, held.co_owner.pk])),
        client.post(edit, {"url": ELSEWHERE, "events": ["key.rotated"]}),
    ]
    stranger = client.post(reverse("team_remove", args=[held.strangers_team.pk, held.stranger.pk]))
    invited = client.post(
        reverse("team_invite", args=[team.pk]), {"email": "d@x.test", "role": "developer"}
    )
    removed = client.post(reverse("team_remove", args=[team.pk, held.developer.pk]))
    described = client.post(edit, {"url": HOOK, "description": "vault", "events": ["key.rotated"]})

    for answer in refused:
        assert answer.status_code == 302
        assert answer["Location"].startswith(reverse("oidc_step_up"))
    assert nothing_changed(held)
    assert stranger.status_code == 404  # no step-up asked of someone outside the team
    for done in (invited, removed, described):  # a developer, a description: no step-up
        assert done.status_code == 302
        assert not done["Location"].startswith(reverse("oidc_step_up"))
    assert team.invitations.get().email == "d@x.test"
    assert not team.memberships.filter(user=held.developer).exists()
    assert held.endpoint.description == "vault"


# --- The API and the CLI -----------------------------------------------------------------


@pytest.mark.embedded
def test_the_api_asks_a_level_1_or_old_sign_in_for_a_fresh_factor_as_rfc_9470_says(
    client: Client, enrolled: tuple[KeycloakUser, dict[str, Any]], settings: Any
) -> None:
    account, weak = enrolled
    order = {"name": "ci", "api": "sample"}
    # Any change by a sign-in that did not use the factor they have (the device grant's).
    unused = client.post(f"{API}/keys", order, "application/json", headers=bearer(weak))
    strong = cli_tokens(account.email, account.password)  # steps up: a one-time password now
    made = client.post(f"{API}/keys", order, "application/json", headers=bearer(strong))
    assert made.status_code == 201, made.content
    client_id, rotate = made.json()["client_id"], f"{API}/keys/{made.json()['key']['id']}/rotate"

    level_1 = client.post(rotate, headers=bearer(weak))
    settings.STEP_UP_WINDOW_SECONDS = 1
    wait_until(claims(strong["access_token"])["auth_time"] + 1.1)
    old = client.post(rotate, headers=bearer(strong))
    settings.STEP_UP_WINDOW_SECONDS = 600
    fresh = client.post(rotate, headers=bearer(strong))

    assert unused.status_code == 401
    assert "did not use it" in unused.json()["detail"]
    assert level_1.status_code == 401
    assert level_1["Content-Type"] == "application/problem+json"
    challenge = level_1["WWW-Authenticate"]
    assert 'error="insufficient_user_authentication"' in challenge
    assert f'acr_values="{SECOND_FACTOR_LEVEL}"' in challenge
    assert 'max_age="600"' in challenge
    assert "second factor" in level_1.json()["detail"]
    assert old.status_code == 401
    assert 'max_age="1"' in old["WWW-Authenticate"]
    assert fresh.status_code == 200, fresh.content
    assert request_token(client_id, fresh.json()["client_secret"]).status_code == 200


@pytest.mark.embedded
def test_the_api_asks_an_old_factor_again_to_add_a_public_key_make_or_drop_an_owner_or_move_a_hook(
    client: Client, totp_customer: KeycloakUser, sample: Api, settings: Any
) -> None:
    # A level-1 token changes nothing at all (apikeys/api/auth.py): these acts need the factor
    # used recently, so the token here used it, longer ago than the window.
    tokens = cli_tokens(totp_customer.email, totp_customer.password)
    settings.STEP_UP_WINDOW_SECONDS = 1
    person = portal_user(totp_customer)
    held = holdings_of(person, sample)
    team, hook = held.team, f"{API}/webhooks/{held.endpoint.pk}"
    wait_until(claims(tokens["access_token"])["auth_time"] + 1.1)

    def call(method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        send = getattr(client, method)
        return send(path, body or "", "application/json", headers=bearer(tokens))

    refused = [
        call("post", f"{API}/keys/{held.key.pk}/public-keys", {"public_key": PUBLIC_KEY}),
        call("post", f"{API}/teams/{team.pk}/invitations", {"email": "o@x.test", "role": "owner"}),
        call("delete", f"{API}/teams/{team.pk}/members/{held.co_owner.pk}"),
        call("patch", hook, {"url": ELSEWHERE}),
    ]
    stranger = call("delete", f"{API}/teams/{held.strangers_team.pk}/members/{held.stranger.pk}")
    invited = call("post", f"{API}/teams/{team.pk}/invitations", {"email": "d@x.test"})
    removed = call("delete", f"{API}/teams/{team.pk}/members/{held.developer.pk}")
    described = call("patch", hook, {"url": HOOK, "description": "vault"})

    assert claims(tokens["access_token"])["acr"] == SECOND_FACTOR_LEVEL
    for answer in refused:
        assert answer.status_code == 401, answer.content
        assert 'error="insufficient_user_authentication"' in answer["WWW-Authenticate"]
        assert 'max_age="1"' in answer["WWW-Authenticate"]
    assert nothing_changed(held)
    assert stranger.status_code == 404  # no step-up asked of someone outside the team
    assert [invited.status_code, removed.status_code, described.status_code] == [201, 204, 200]
    assert team.invitations.get().email == "d@x.test"
    assert described.json()["description"] == "vault"


def test_the_cli_signs_in_again_for_a_second_factor_when_asked_and_goes_on(
    tmp_path: Path, live_server: Any, totp_customer: KeycloakUser
) -> None:
    cli = Cli(tmp_path, live_server.url)
    cli.signed_in_as(totp_customer, live_server.url, step_up=False)  # sets up the app: level 1
    browser, log = cli_browser.install(tmp_path, totp_customer.email, totp_customer.password)
    cli.env["BROWSER"] = str(browser)

    # A sign-in that did not use the factor the person has changes nothing: the CLI signs
    # in again, with it, and goes on; the rotation then needs no other.
    made = cli("keys", "create", "from ci", "--api", "sample", "--json")
    rotated = cli("keys", "rotate", json.loads(made.stdout)["client_id"], "--output", "env")

    assert made.returncode == 0, (made.stderr, log.read_text())
    assert "second factor" in made.stderr
    assert "Signing in again for it." in made.stderr
    client_id = json.loads(made.stdout)["client_id"]
    assert rotated.returncode == 0, rotated.stderr
    assert "Signing in again" not in rotated.stderr
    secret = dict(line.split("=", 1) for line in rotated.stdout.splitlines())["CLIENT_SECRET"]
    assert request_token(client_id, secret).status_code == 200
    kept = json.loads(cli.credentials.read_text())
    assert claims(kept["access_token"])["acr"] == SECOND_FACTOR_LEVEL


@pytest.mark.django_db(transaction=True)
def test_the_clis_admin_command_steps_up_for_an_administrators_level_1_sign_in(
    tmp_path: Path, live_server: Any, make_keycloak_user: Callable[..., KeycloakUser]
) -> None:
    admin = make_keycloak_user(roles=("portal-admin",))
    cli = Cli(tmp_path, live_server.url)
    cli.signed_in_as(admin, live_server.url, step_up=False)  # enrolled, not used: level 1
    browser, log = cli_browser.install(tmp_path, admin.email, admin.password)
    cli.env["BROWSER"] = str(browser)

    listed = cli("admin", "keys", "--json")

    assert listed.returncode == 0, (listed.stderr, log.read_text())
    assert "The admin area needs a second factor" in listed.stderr
    assert isinstance(json.loads(listed.stdout), list | dict)
    kept = json.loads(cli.credentials.read_text())
    assert claims(kept["access_token"])["acr"] == SECOND_FACTOR_LEVEL
