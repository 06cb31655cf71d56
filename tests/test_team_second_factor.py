"""A team whose owner requires a second factor of its members, and people who see their own.

Real Keycloak users throughout: pages through the Django test client, the JSON API with real
tokens of the CLI's client, the CLI as a process of its own. Whoever has a second factor
enrolled an authenticator app on Keycloak's own page (tests/oidc.py answers it, pyotp gives
the codes); whether someone has one is asked of Keycloak at each act, never stored.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse

from apikeys.keycloak import client as keycloak
from apikeys.keycloak.client import Connection, KeycloakUnavailable
from apikeys.models import Api, ApiKey, AuditEntry, Membership, Team, TeamRole, User
from apikeys.operations import teams
from tests.accounts import KeycloakUser, force_login_with_second_factor
from tests.factories import issue, portal_user, unique_user
from tests.oidc import cli_tokens
from tests.test_api import API, Caller, assert_problem
from tests.test_cli import Cli

pytestmark = pytest.mark.usefixtures("key_clients", "sample")

SIGNING_IN = f"{settings.KEYCLOAK_ACCOUNT_URL}account-security/signing-in"
NO_FACTOR = "requires its members to have a second factor before they change anything"


@pytest.fixture
def person(make_keycloak_user: Callable[..., KeycloakUser], bootstrapped: Connection) -> Any:
    """A Keycloak user and their portal record; with `factor`, Keycloak has them set up an
    authenticator app at their next sign-in (the first token of theirs a test asks for)."""

    def make(*, factor: bool = False) -> tuple[KeycloakUser, User]:
        account = make_keycloak_user()
        if factor:
            bootstrapped.admin.update_user(account.id, {"requiredActions": ["CONFIGURE_TOTP"]})
        return account, portal_user(account)

    return make


def signed_in(user: User, *, factor_used: bool = False) -> Client:
    client = Client()
    if factor_used:
        force_login_with_second_factor(client, user)
    else:
        client.force_login(user)
    return client


def with_token(token: str, method: str, path: str, body: Any = None) -> Any:
    """One API request with `token` (a sign-in other than a `Caller`'s)."""
    send = getattr(Client(), method.lower())
    headers = {"Authorization": f"Bearer {token}"}
    return send(f"{API}{path}", body, content_type="application/json", headers=headers)


def requiring_team(owner: User, *members: tuple[User, str]) -> Team:
    """A team of `owner` that requires a second factor (set as its row, to test the members)."""
    team = teams.create_team(owner, "Acme")
    for member, role in members:
        Membership.objects.create(team=team, user=member, role=role)
    Team.objects.filter(pk=team.pk).update(requires_second_factor=True)
    return Team.objects.get(pk=team.pk)


@pytest.mark.embedded
def test_a_member_without_a_second_factor_reads_the_team_but_changes_nothing(
    person: Any, sample: Api
) -> None:
    account, developer = person()
    boss = unique_user()
    team = requiring_team(boss, (developer, TeamRole.DEVELOPER))
    key = issue(boss, sample, "shared", team=team).key
    pages, api = signed_in(developer), Caller(account)

    page = pages.get(reverse("team", args=[team.pk])).content.decode()
    made = pages.post(
        f"{reverse('new_key')}?team={team.pk}",
        {"name": "mine", "api": "sample", "lifetime_days": "90"},
        follow=True,
    )
    rotated = pages.post(reverse("rotate_key", args=[key.pk]), follow=True)
    created = api("POST", "/keys", {"name": "ci", "api": "sample", "team": str(team.pk)})
    rotated_api = api("POST", f"/keys/{key.pk}/rotate")

    assert key.client_id in page  # reading works
    assert "your Keycloak account has none" in page
    assert SIGNING_IN in page
    assert "New key" not in page
    for refused in (made, rotated):
        assert NO_FACTOR in refused.content.decode()
        assert settings.KEYCLOAK_ACCOUNT_URL in refused.content.decode()
    assert settings.KEYCLOAK_ACCOUNT_URL in assert_problem(created, 403, NO_FACTOR)["detail"]
    assert_problem(rotated_api, 403, NO_FACTOR)
    assert ApiKey.objects.filter(team=team).count() == 1
    listed = api("GET", f"/keys?team={team.pk}")
    assert [k["client_id"] for k in listed.json()["items"]] == [key.client_id]
    assert api("GET", f"/teams/{team.pk}").json()["requires_second_factor"] is True


@pytest.mark.embedded
def test_a_member_who_enrolled_a_second_factor_acts_in_the_team(person: Any) -> None:
    account, developer = person(factor=True)
    team = requiring_team(unique_user(), (developer, TeamRole.DEVELOPER))
    api = Caller(account)  # Keycloak has them enrol, then use it (level 2)

    created = api("POST", "/keys", {"name": "ci", "api": "sample", "team": str(team.pk)})
    pages = signed_in(developer, factor_used=True)
    page = pages.get(reverse("team", args=[team.pk])).content.decode()
    key_id = created.json()["key"]["id"]
    rotated = pages.post(reverse("rotate_key", args=[key_id]))

    assert created.status_code == 201, created.content
    assert "requires a second factor of its members; you have one" in page
    assert "New key" in page
    assert rotated.status_code == 200, rotated.content
    assert "New secret for" in rotated.content.decode()


@pytest.mark.embedded
def test_an_owner_without_a_second_factor_cannot_require_one(person: Any) -> None:
    account, owner = person()
    api = Caller(account)
    team = api("POST", "/teams", {"name": "Acme"}).json()

    refused = api("PATCH", f"/teams/{team['id']}", {"requires_second_factor": True})
    page = signed_in(owner).post(
        reverse("team_second_factor", args=[team["id"]]),
        {"requires_second_factor": "on"},
        HTTP_REFERER=f"http://testserver{reverse('team', args=[team['id']])}",
        follow=True,
    )

    assert SIGNING_IN in assert_problem(refused, 409, "Add a second factor to your own")["detail"]
    assert "Add a second factor to your own account first" in page.content.decode()
    assert not Team.objects.get(pk=team["id"]).requires_second_factor
    assert not AuditEntry.objects.filter(action=AuditEntry.Action.TEAM_CHANGED).exists()


@pytest.mark.embedded
def test_an_owner_with_a_second_factor_requires_one_audited_after_a_recent_use(
    person: Any,
) -> None:
    account, owner = person(factor=True)
    _, member = person()
    weak = cli_tokens(account.email, account.password, step_up=False)["access_token"]
    api = Caller(account)  # signs in with the factor enrolled just before: level 2, now
    team = api("POST", "/teams", {"name": "Acme"}).json()
    Membership.objects.create(team_id=team["id"], user=member, role=TeamRole.VIEWER)
    role_path = f"/teams/{team['id']}/members/{member.pk}"

    stale = with_token(weak, "PATCH", f"/teams/{team['id']}", {"requires_second_factor": True})
    stale_role = with_token(weak, "PATCH", role_path, {"role": "owner"})
    weak_rename = with_token(weak, "PATCH", f"/teams/{team['id']}", {"name": "Acme 2"})
    renamed = api("PATCH", f"/teams/{team['id']}", {"name": "Acme 2"})
    turned_on = api("PATCH", f"/teams/{team['id']}", {"requires_second_factor": True})
    unconfirmed = signed_in(owner).post(reverse("team_second_factor", args=[team["id"]]), {})
    turned_off = signed_in(owner, factor_used=True).post(
        reverse("team_second_factor", args=[team["id"]]), {}, follow=True
    )

    for refused in (stale, stale_role):
        assert refused.status_code == 401, refused.content
        assert "insufficient_user_authentication" in refused["WWW-Authenticate"]
    # Any change by a sign-in that did not use the owner's factor waits for one that does.
    assert weak_rename.status_code == 401, weak_rename.content
    assert renamed.status_code == 200, renamed.content
    assert turned_on.status_code == 200, turned_on.content
    assert turned_on.json()["requires_second_factor"] is True
    assert unconfirmed.status_code == 302
    assert unconfirmed["Location"].startswith(reverse("oidc_step_up"))
    assert "no longer need a second factor" in turned_off.content.decode()
    assert not Team.objects.get(pk=team["id"]).requires_second_factor
    assert Membership.objects.get(user=member).role == TeamRole.VIEWER
    reasons = AuditEntry.objects.filter(
        team_id=team["id"], action=AuditEntry.Action.TEAM_CHANGED
    ).values_list("reason", "actor", "via")
    assert sorted(reasons) == sorted(
        [
            ("Renamed from “Acme”.", owner.pk, "api"),
            (
                "A second factor is required of every member before they change anything.",
                owner.pk,
                "api",
            ),
            ("A second factor is no longer required of the members.", owner.pk, "web"),
        ]
    )


@pytest.mark.embedded
def test_your_account_and_me_say_whether_you_have_a_second_factor(
    person: Any, bootstrapped: Connection
) -> None:
    account, user = person()
    api = Caller(account)

    before = signed_in(user).get(reverse("account")).content.decode()
    me_before = api("GET", "/me").json()
    bootstrapped.admin.update_user(account.id, {"requiredActions": ["CONFIGURE_TOTP"]})
    cli_tokens(account.email, account.password)  # enrols an authenticator app
    after = signed_in(user, factor_used=True).get(reverse("account")).content.decode()
    me_after = api("GET", "/me").json()

    assert account.email in before
    assert "None yet" in before
    assert "Used your password only" in before
    assert SIGNING_IN in before
    assert me_before["second_factor"] is False
    assert "Yes: one-time password." in after
    assert "Used your second factor" in after
    assert me_after["second_factor"] is True
    assert reverse("account") in before  # in the header, on every page


@pytest.mark.embedded
def test_when_keycloak_cannot_be_asked_the_pages_and_me_say_so(
    person: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    account, user = person()
    api = Caller(account)
    team = requiring_team(unique_user(), (user, TeamRole.DEVELOPER))

    def unreachable(*args: Any) -> set[str]:
        raise KeycloakUnavailable("Keycloak did not answer in time.")

    monkeypatch.setattr(keycloak, "credential_types", unreachable)  # an outage, on demand
    account_page = signed_in(user).get(reverse("account"))
    team_page = signed_in(user).get(reverse("team", args=[team.pk]))
    me = api("GET", "/me")

    assert account_page.status_code == 200
    assert "Keycloak cannot say now" in account_page.content.decode()
    assert team_page.status_code == 200
    assert "Keycloak cannot say now whether you have one" in team_page.content.decode()
    assert me.json()["second_factor"] is None


def test_an_owner_sets_the_team_from_the_terminal(
    tmp_path: Path, live_server: Any, make_keycloak_user: Callable[..., KeycloakUser]
) -> None:
    account = make_keycloak_user()
    tool = Cli(tmp_path, live_server.url)
    tool.signed_in_as(account, live_server.url)
    tool("teams", "create", "Acme")

    refused = tool("teams", "set", "Acme", "--require-second-factor")
    renamed = tool("teams", "set", "Acme", "--name", "Acme 2", "--json")
    nothing = tool("teams", "set", "Acme 2")
    me = tool("me")

    assert refused.returncode == 5, (refused.stdout, refused.stderr)
    assert "Add a second factor to your own account first" in refused.stderr
    assert renamed.returncode == 0, renamed.stderr
    assert '"requires_second_factor": false' in renamed.stdout
    assert nothing.returncode == 2
    assert "say what to change" in nothing.stderr
    assert "second_factor" in me.stdout
