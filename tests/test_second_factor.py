"""A second factor for administrators, step-up for sensitive acts: the realm bootstrap makes,
and the admin area and admin API that need level 2, against the real Keycloak.

Codes come from pyotp (tests/second_factor.py) for the secret Keycloak's own enrolment page
shows; nothing here imitates Keycloak.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from django.conf import settings
from django.test import Client
from django.urls import reverse
from playwright.sync_api import Page, expect

from apikeys.assurance import SESSION_KEY
from apikeys.keycloak import bootstrap, desired, signin_flow
from apikeys.keycloak import client as keycloak
from apikeys.keycloak.client import Connection
from apikeys.models import AuditEntry, User
from apikeys.views import step_up
from tests.accounts import KeycloakUser
from tests.browser import (
    answer_second_factor,
    overlapping_header_items,
    sign_in,
    signing_out_alone,
    sticking_out,
    wrapped_dates,
)
from tests.conftest import sample_api
from tests.oidc import cli_tokens, sign_in_tokens
from tests.tokens import claims

LEVEL2 = "portal second factor (level 2)"


def flow(conn: Connection) -> list[dict[str, Any]]:
    """The sign-in flow as Keycloak holds it: every step, with its config."""
    steps = keycloak.flow_steps(conn, desired.SIGNIN_FLOW)
    for step in steps:
        if step.get("authenticationConfig"):
            step["config"] = keycloak.get_step_config(conn, step["authenticationConfig"])
    return steps


def test_bootstrap_binds_a_flow_of_levels_and_a_second_run_changes_nothing(
    bootstrapped: Connection,
) -> None:
    realm = keycloak.get_realm(bootstrapped)
    assert realm is not None
    assert realm["browserFlow"] == desired.SIGNIN_FLOW
    assert json.loads(realm["attributes"]["acr.loa.map"]) == {"password": 1, "second-factor": 2}
    actions = {a["alias"]: a for a in keycloak.required_actions(bootstrapped)}
    assert actions["CONFIGURE_TOTP"]["enabled"]
    assert actions["webauthn-register"]["enabled"]
    names = [s["displayName"] for s in flow(bootstrapped)]
    assert LEVEL2 in names
    assert "portal administrators' second factor" in names
    builtin = keycloak.flow_steps(bootstrapped, "browser")
    before = flow(bootstrapped)

    assert bootstrap.run(bootstrapped, [sample_api()]) == []

    assert flow(bootstrapped) == before
    assert keycloak.flow_steps(bootstrapped, "browser") == builtin  # Keycloak's own: untouched


@pytest.fixture
def operator_extras(bootstrapped: Connection) -> Iterator[Connection]:
    """Recovery codes added to level 2 by an operator, and a key of their own in a config;
    taken away after the test."""
    keycloak.add_execution(bootstrapped, LEVEL2, "auth-recovery-authn-code-form")
    added = next(
        s
        for s in keycloak.flow_steps(bootstrapped, LEVEL2)
        if s.get("providerId") == "auth-recovery-authn-code-form"
    )
    keycloak.set_requirement(bootstrapped, LEVEL2, added, "ALTERNATIVE")
    condition = next(
        s
        for s in keycloak.flow_steps(bootstrapped, LEVEL2)
        if s.get("providerId") == "conditional-level-of-authentication"
    )
    config = keycloak.get_step_config(bootstrapped, condition["authenticationConfig"])
    extra = {**config, "config": {**config["config"], "operator-note": "kept"}}
    keycloak.update_step_config(bootstrapped, config["id"], extra)
    yield bootstrapped
    keycloak.delete_execution(bootstrapped, added["id"])
    keycloak.update_step_config(bootstrapped, config["id"], config)


def test_an_operators_extra_flow_settings_survive_bootstrap(operator_extras: Connection) -> None:
    before = flow(operator_extras)

    assert signin_flow.ensure_signin(operator_extras) == []

    after = flow(operator_extras)
    assert after == before
    providers = [s.get("providerId") for s in after]
    assert "auth-recovery-authn-code-form" in providers
    # (Keycloak masks the value of a key its provider does not declare; the key stays.)
    assert any("operator-note" in s["config"]["config"] for s in after if "config" in s)


def test_bootstrap_repairs_the_flow_when_a_step_was_loosened(bootstrapped: Connection) -> None:
    otp = next(
        s
        for s in keycloak.flow_steps(bootstrapped, LEVEL2)
        if s.get("providerId") == "auth-otp-form"
    )
    keycloak.set_requirement(bootstrapped, LEVEL2, otp, "DISABLED")

    changes = signin_flow.ensure_signin(bootstrapped)

    assert changes == [f"set auth-otp-form in {LEVEL2!r} to ALTERNATIVE"]


@pytest.fixture
def fresh_realm(bootstrapped: Connection) -> Iterator[Connection]:
    """A realm of its own for the test (a first bootstrap's path), deleted after it."""
    name = f"signin-{time.time_ns()}"
    keycloak.create_realm(bootstrapped, {"realm": name, "enabled": True})
    conn = keycloak.connect(
        realm=name,
        username=os.environ["KEYCLOAK_BOOTSTRAP_ADMIN_USERNAME"],
        password=os.environ["KEYCLOAK_BOOTSTRAP_ADMIN_PASSWORD"],
        user_realm="master",
    )
    yield conn
    keycloak._request(conn, "DELETE", f"/admin/realms/{name}")


def test_on_a_new_realm_a_first_run_stopped_after_the_copy_is_finished_by_the_next(
    fresh_realm: Connection,
) -> None:
    keycloak.copy_flow(fresh_realm, "browser", desired.SIGNIN_FLOW)  # then the process died

    changes = signin_flow.ensure_signin(fresh_realm)

    forms = [s for s in keycloak.flow_steps(fresh_realm, desired.SIGNIN_FORMS) if s["level"] == 0]
    assert [s["displayName"] for s in forms] == [sub["flow"] for sub in desired.signin_flow()]
    assert f"bound {desired.SIGNIN_FLOW!r} as the realm's browser flow" in changes
    assert signin_flow.ensure_signin(fresh_realm) == []  # steps in a fixed order, too
    # An operator who binds a flow of their own: refused, not taken over.
    keycloak.copy_flow(fresh_realm, "browser", "our own browser")
    keycloak.update_realm(fresh_realm, {"browserFlow": "our own browser"})
    with pytest.raises(signin_flow.SigninFlowTaken):
        signin_flow.ensure_signin(fresh_realm)
    assert keycloak.get_realm(fresh_realm)["browserFlow"] == "our own browser"  # type: ignore[index]


def test_an_operators_own_level_names_stay_in_the_realms_map(bootstrapped: Connection) -> None:
    realm = keycloak.get_realm(bootstrapped)
    assert realm is not None
    attributes = realm["attributes"]
    gold = {"password": 1, "second-factor": 2, "hardware-key": 3}
    keycloak.update_realm(
        bootstrapped, {"attributes": {**attributes, "acr.loa.map": json.dumps(gold)}}
    )
    try:
        bootstrap.ensure_realm(bootstrapped)
        kept = keycloak.get_realm(bootstrapped)
        assert kept is not None
        assert json.loads(kept["attributes"]["acr.loa.map"]) == gold
    finally:
        keycloak.update_realm(bootstrapped, {"attributes": attributes})


@pytest.mark.django_db
def test_asking_for_less_still_asks_for_the_factor_and_a_sign_in_without_it_changes_nothing(
    make_keycloak_user: Callable[..., KeycloakUser], live_server: Any
) -> None:
    account = make_keycloak_user(roles=("portal-admin",))
    enrolled = cli_tokens(account.email, account.password, step_up=False)  # level 1
    forged = sign_in_tokens(account, {"acr_values": "password"})

    made = requests.post(
        f"{live_server.url}/api/v1/keys",
        json={"name": "with level 1", "api": "sample", "lifetime_days": 30},
        headers={"Authorization": f"Bearer {enrolled['access_token']}"},
        timeout=10,
    )

    assert claims(forged["access_token"])["acr"] == "second-factor"  # OTP asked all the same
    assert made.status_code == 401
    assert 'error="insufficient_user_authentication"' in made.headers["WWW-Authenticate"]
    assert "did not use it" in made.json()["detail"]


@pytest.mark.django_db
def test_the_admin_api_refuses_a_level_1_token_with_the_rfc_9470_challenge(
    make_keycloak_user: Callable[..., KeycloakUser], live_server: Any
) -> None:
    account = make_keycloak_user(roles=("portal-admin",))
    weak = cli_tokens(account.email, account.password, step_up=False)
    assert claims(weak["access_token"])["acr"] == "password"  # enrolled, but did not use it

    refused = requests.get(
        f"{live_server.url}/api/v1/admin/keys",
        headers={"Authorization": f"Bearer {weak['access_token']}"},
        timeout=10,
    )
    strong = cli_tokens(account.email, account.password)
    allowed = requests.get(
        f"{live_server.url}/api/v1/admin/keys",
        headers={"Authorization": f"Bearer {strong['access_token']}"},
        timeout=10,
    )

    assert refused.status_code == 401
    challenge = refused.headers["WWW-Authenticate"]
    assert 'error="insufficient_user_authentication"' in challenge
    assert 'acr_values="second-factor"' in challenge
    assert "second factor" in refused.json()["detail"]
    assert claims(strong["access_token"])["acr"] == "second-factor"
    assert allowed.status_code == 200
    # Customers' routes take the level-1 token.
    me = requests.get(
        f"{live_server.url}/api/v1/me",
        headers={"Authorization": f"Bearer {weak['access_token']}"},
        timeout=10,
    )
    assert me.status_code == 200


@pytest.mark.django_db(transaction=True)
def test_an_admin_enrols_at_sign_in_and_the_admin_area_steps_up_to_the_page_it_wanted(
    page: Page, make_keycloak_user: Callable[..., KeycloakUser]
) -> None:
    account = make_keycloak_user(roles=("portal-admin",))

    sign_in(page, account.email)  # Keycloak made them set up an authenticator app
    page.goto("/manage/audit/")  # level 1 (enrolling is not using it): back to Keycloak
    page.wait_for_selector("#otp")
    answer_second_factor(page, account.email)

    page.wait_for_url("**/manage/audit/")
    expect(page.get_by_role("heading", name="Audit trail")).to_be_visible()
    for width in (1440, 1280, 1024, 600, 375):  # every link of an admin's header, none on another
        page.set_viewport_size({"width": width, "height": 800})
        assert overlapping_header_items(page) == [], width
        assert not signing_out_alone(page), width
        assert page.locator("[data-testid=audit] time").count() > 0
        assert wrapped_dates(page) == [], width
        assert sticking_out(page) == [], width  # Sign out too: on the screen
    user = User.objects.get(username=account.id)
    entry = AuditEntry.objects.get(about_user=user, action=AuditEntry.Action.STEPPED_UP)
    assert "second-factor" in entry.reason


@pytest.mark.django_db(transaction=True)
def test_someone_made_admin_during_their_session_enrols_at_the_step_up(
    page: Page, make_keycloak_user: Callable[..., KeycloakUser], bootstrapped: Connection
) -> None:
    account = make_keycloak_user()
    sign_in(page, account.email)  # a customer, no second factor
    admin = bootstrapped.admin
    admin.assign_realm_roles(account.id, [admin.get_realm_role("portal-admin")])
    User.objects.filter(username=account.id).update(is_staff=True)  # as a session check would

    page.goto("/manage/")  # Keycloak makes them set up an authenticator app, which it
    # counts as level 1: the portal sends them once more, and Keycloak asks for a code.
    answer_second_factor(page, account.email)

    page.wait_for_url("**/manage/")
    expect(page.get_by_role("heading", name="Key requests waiting for approval")).to_be_visible()


def just_back_at_level_1(client: Client, user: User) -> None:
    """Signed in, and just back from a step-up that reached only a password."""
    client.force_login(user)
    session = client.session
    session[SESSION_KEY] = {"acr": "password", "auth_time": int(time.time())}
    session[step_up.RETURNED_AT] = time.time()
    session.save()


@pytest.mark.embedded
def test_back_from_a_step_up_still_without_the_level_they_are_told_why_not_sent_round(
    client: Client, admin_user: User
) -> None:
    just_back_at_level_1(client, admin_user)

    answer = client.get(reverse("manage_audit"))
    again = client.get(reverse("manage_audit"))

    assert answer.status_code == 403
    page = answer.content.decode()
    assert "second factor" in page
    assert settings.KEYCLOAK_ACCOUNT_URL in page
    assert "/oidc/step-up/?next=%2Fmanage%2Faudit%2F" in page
    assert again.status_code == 302  # "try again" starts a new step-up
    assert again["Location"].startswith("/oidc/step-up/")


@pytest.mark.embedded
def test_an_htmx_act_back_from_a_step_up_still_short_is_told_on_the_page_it_came_from(
    client: Client, admin_user: User
) -> None:
    just_back_at_level_1(client, admin_user)

    answer = client.get(
        reverse("manage_audit"),
        headers={"HX-Request": "true", "HX-Current-URL": "http://testserver/manage/keys/"},
    )

    assert answer["HX-Redirect"] == "/manage/keys/"  # not a 403 the panel would not show
    shown = client.get(reverse("home")).content.decode()
    assert "Signing in in your Keycloak account" in shown
