"""Registration tokens through every door: the pages, the JSON API, the CLI and the admin area,
on the real Keycloak. A token is shown once and never again; revoked anywhere, it registers
nothing more at /register; bounds are refused with clear messages and make nothing; in a
team, viewers see and are refused changes, outsiders find nothing."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from apikeys.models import (
    Api,
    ApiKey,
    AuditEntry,
    Membership,
    Permission,
    RegistrationToken,
    Team,
    TeamRole,
    User,
)
from apikeys.operations import registration, teams
from tests.accounts import KeycloakUser, force_login_with_second_factor
from tests.factories import unique_user
from tests.test_api import Caller, assert_problem
from tests.test_cli import Cli

pytestmark = [pytest.mark.embedded, pytest.mark.usefixtures("key_clients", "sample")]

TOKEN = re.compile(r"kcrt_[A-Za-z0-9_]+")


def signed_in(person: User) -> Client:
    client = Client()
    client.force_login(person)
    return client


def register(token: str, name: str = "billing deploy") -> Any:
    """Software registering a key with `token` at the portal's endpoint (RFC 7591)."""
    return Client().post(
        "/register",
        json.dumps({"client_name": name, "grant_types": ["client_credentials"]}),
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )


def assert_refused_as_revoked(token: str) -> None:
    answer = register(token)
    assert answer.status_code == 401, answer.content
    assert answer.json()["error"] == "invalid_token"
    assert "revoked" in answer.json()["error_description"]


def make_token(owner: User, api: Api, **fields: Any) -> registration.NewRegistrationToken:
    order: dict[str, Any] = {"name": "pipeline", "max_registrations": 3, "expires_in_days": 7}
    return registration.create_token(owner, api=api, key_lifetime_days=30, **(order | fields))


def page_form(**fields: str) -> dict[str, str]:
    return {
        "name": "ci",
        "api": "sample",
        "max_registrations": "2",
        "expires_in_days": "7",
        "key_lifetime_days": "30",
        "permissions_given": "on",
        **fields,
    }


def team_with(owner: User, *members: tuple[User, str]) -> Team:
    team = teams.create_team(owner, "Acme")
    for person, role in members:
        Membership.objects.create(team=team, user=person, role=role)
    return team


# --- The pages ---------------------------------------------------------------------------


def test_a_token_made_on_the_page_is_shown_once_and_registers_keys_listed_with_it() -> None:
    person = unique_user()
    browser = signed_in(person)
    assert browser.get(reverse("registration_token_new")).status_code == 200

    shown = browser.post(reverse("registration_token_new"), page_form())

    assert shown.status_code == 200
    assert "no-store" in shown["Cache-Control"]
    page = shown.content.decode()
    secrets = set(TOKEN.findall(page))
    assert len(secrets) == 1
    secret = secrets.pop()
    assert f"{settings.PORTAL_URL}/register" in page
    assert "curl -X POST" in page
    made = RegistrationToken.objects.get(owner=person)
    assert (made.name, made.max_registrations, made.key_lifetime_days) == ("ci", 2, 30)

    registered = register(secret)
    assert registered.status_code == 201, registered.content
    client_id = registered.json()["client_id"]

    listed = browser.get(reverse("registration_tokens")).content.decode()
    assert "ci" in listed
    assert "1/2" in listed
    assert client_id in listed
    assert "kcrt_" not in listed
    detail = browser.get(reverse("registration_token", args=[made.pk])).content.decode()
    assert client_id in detail
    assert "kcrt_" not in detail
    keys = browser.get(reverse("home")).content.decode()
    assert "registered by token “" in keys
    assert reverse("registration_token", args=[made.pk]) in keys
    assert reverse("registration_tokens") in keys


def test_a_token_revoked_on_the_page_registers_nothing_more_and_its_keys_stay(
    sample: Api,
) -> None:
    person = unique_user()
    made = make_token(person, sample)
    key = ApiKey.objects.get(client_id=register(made.secret).json()["client_id"])
    browser = signed_in(person)
    revoke = reverse("registration_token_revoke", args=[made.token.pk])

    confirm = browser.get(revoke)
    assert confirm.status_code == 200
    assert "Revoke the registration token “pipeline”?" in confirm.content.decode()
    done = browser.post(revoke, follow=True)

    assert "is revoked: it registers nothing more" in done.content.decode()
    assert_refused_as_revoked(made.secret)
    assert ApiKey.objects.get(pk=key.pk).status == ApiKey.Status.ACTIVE
    assert AuditEntry.objects.filter(
        action=AuditEntry.Action.REGISTRATION_TOKEN_REVOKED, actor=person
    ).exists()


@pytest.mark.parametrize(
    ("fields", "said"),
    [
        ({"expires_in_days": "91"}, "A registration token lives 1 to 90 days."),
        ({"key_lifetime_days": "366"}, "Keys for Sample API can be valid for at most 365 days."),
        ({"max_registrations": "1001"}, "A registration token registers 1 to 1000 keys."),
        ({"permissions": "sample/orders:delete"}, "Sample API has no permission orders:delete."),
        ({"networks": "10.0.0.0/33"}, "10.0.0.0/33"),
    ],
)
def test_the_page_refuses_what_is_out_of_bounds_and_makes_nothing(
    fields: dict[str, str], said: str
) -> None:
    person = unique_user()

    refused = signed_in(person).post(reverse("registration_token_new"), page_form(**fields))

    assert refused.status_code == 200
    assert said in refused.content.decode()
    assert "kcrt_" not in refused.content.decode()
    assert not RegistrationToken.objects.filter(owner=person).exists()


def test_in_a_team_viewers_see_tokens_developers_make_them_and_outsiders_find_nothing(
    sample: Api,
) -> None:
    boss, developer, viewer, outsider = (unique_user() for _ in range(4))
    team = team_with(boss, (developer, TeamRole.DEVELOPER), (viewer, TeamRole.VIEWER))
    new = f"{reverse('registration_token_new')}?team={team.pk}"

    shown = signed_in(developer).post(new, page_form(name="team ci"))
    assert shown.status_code == 200
    made = RegistrationToken.objects.get(name="team ci")
    assert made.team == team
    secret = TOKEN.findall(shown.content.decode())[0]
    key = ApiKey.objects.get(client_id=register(secret).json()["client_id"])
    assert key.team == team

    as_viewer = signed_in(viewer)
    listed = as_viewer.get(f"{reverse('registration_tokens')}?team={team.pk}").content.decode()
    assert "team ci" in listed
    assert key.client_id in listed
    assert "New registration token" not in listed
    assert "Revoke…" not in listed
    assert "team ci" not in as_viewer.get(reverse("registration_tokens")).content.decode()
    refused = as_viewer.post(new, page_form(name="viewer's"), follow=True)
    assert "you may not" in refused.content.decode()
    revoke = reverse("registration_token_revoke", args=[made.pk])
    assert "you may not" in as_viewer.post(revoke, follow=True).content.decode()
    assert RegistrationToken.objects.filter(team=team).count() == 1
    assert RegistrationToken.objects.get(pk=made.pk).revoked_at is None

    as_outsider = signed_in(outsider)
    for url in (
        f"{reverse('registration_tokens')}?team={team.pk}",
        new,
        reverse("registration_token", args=[made.pk]),
        revoke,
    ):
        assert as_outsider.get(url).status_code == 404, url
    assert as_outsider.post(revoke).status_code == 404
    assert RegistrationToken.objects.get(pk=made.pk).revoked_at is None


# --- The JSON API ------------------------------------------------------------------------


@pytest.fixture
def api_person(make_keycloak_user: Callable[..., KeycloakUser]) -> Callable[..., Caller]:
    """A new person signed in to the API (admin=True: with the portal-admin role)."""

    def make(*, admin: bool = False) -> Caller:
        return Caller(make_keycloak_user(roles=("portal-admin",) if admin else ()))

    return make


def made_through_api(caller: Caller, **fields: Any) -> Any:
    body = {"api": "sample", "name": "nightly", "max_registrations": 2, "expires_in_days": 7}
    return caller("POST", "/registration-tokens", body | fields)


def test_a_token_made_through_the_api_is_shown_once_and_revoked_with_delete(
    api_person: Callable[..., Caller], sample: Api
) -> None:
    Permission.objects.create(api=sample, name="orders:read", description="Read the orders")
    caller = api_person()

    made = made_through_api(caller, permissions=["orders:read"], networks=["127.0.0.1"])

    assert made.status_code == 201, made.content
    assert made["Cache-Control"] == "no-store"
    body = made.json()
    assert body["token"].startswith("kcrt_")
    assert body["registration_endpoint"].endswith("/register")
    shown = body["registration_token"]
    assert shown["permissions"] == ["orders:read"]
    assert shown["networks"] == ["127.0.0.1/32"]
    assert (shown["registrations"], shown["uses_left"], shown["registers"]) == (0, 2, True)
    assert shown["key_lifetime_days"] == 90  # the portal's default, within the API's limit
    listed = caller("GET", "/registration-tokens")
    assert [t["id"] for t in listed.json()["items"]] == [shown["id"]]
    one = caller("GET", f"/registration-tokens/{shown['id']}")
    assert one.status_code == 200
    assert one.json()["keys"] == []
    assert "kcrt_" not in listed.content.decode() + one.content.decode()

    revoked = caller("DELETE", f"/registration-tokens/{shown['id']}")

    assert revoked.status_code == 200, revoked.content
    assert revoked.json()["revoked_at"] is not None
    assert revoked.json()["refusal"] == "The registration token was revoked."
    assert_refused_as_revoked(body["token"])


@pytest.mark.parametrize(
    ("fields", "field", "said"),
    [
        ({"expires_in_days": 91}, "expires_in_days", "A registration token lives 1 to 90 days."),
        ({"expires_in_days": 0}, "expires_in_days", "A registration token lives 1 to 90 days."),
        (
            {"key_lifetime_days": 366},
            "key_lifetime_days",
            "Keys for Sample API can be valid for at most 365 days.",
        ),
        ({"max_registrations": 0}, "max_registrations", "registers 1 to 1000 keys"),
        (
            {"permissions": ["orders:delete"]},
            "permissions",
            "Sample API has no permission orders:delete. Its permissions: none.",
        ),
        ({"networks": ["10.0.0.0/33"]}, "networks", "10.0.0.0/33"),
        ({"api": "nowhere"}, "api", "There is no API with this slug."),
    ],
)
def test_the_api_refuses_what_is_out_of_bounds_by_field_and_makes_nothing(
    api_person: Callable[..., Caller], fields: dict[str, Any], field: str, said: str
) -> None:
    caller = api_person()

    refused = made_through_api(caller, **fields)

    problem = assert_problem(refused, 422, "The registration token was not made")
    assert said in " ".join(problem["errors"][field])
    assert not RegistrationToken.objects.exists()


def test_a_retired_api_takes_no_token_at_any_door(
    api_person: Callable[..., Caller], sample: Api
) -> None:
    sample.retired_at = timezone.now()
    sample.save(update_fields=["retired_at"])
    person = unique_user()

    page = signed_in(person).post(reverse("registration_token_new"), page_form())
    answer = made_through_api(api_person())

    assert "Sample API is retired and takes no new keys." in page.content.decode()
    assert_problem(answer, 409, "Sample API is retired and takes no new keys.")
    assert not RegistrationToken.objects.exists()
    offered = signed_in(person).get(reverse("registration_token_new")).content.decode()
    assert 'value="sample"' not in offered


def test_the_api_answers_viewers_403_and_outsiders_404(
    api_person: Callable[..., Caller], sample: Api
) -> None:
    boss, viewer, outsider = api_person(), api_person(), api_person()
    for caller in (boss, viewer, outsider):
        assert caller("GET", "/me").status_code == 200  # their portal accounts exist now
    boss_user, viewer_user = (User.objects.get(username=c.account.id) for c in (boss, viewer))
    team = team_with(boss_user, (viewer_user, TeamRole.VIEWER))
    made = made_through_api(boss, team=str(team.pk))
    assert made.status_code == 201, made.content
    token = made.json()["registration_token"]
    assert token["team"] == str(team.pk)

    seen = viewer("GET", f"/registration-tokens?team={team.pk}")
    assert [t["id"] for t in seen.json()["items"]] == [token["id"]]
    assert viewer("GET", f"/registration-tokens/{token['id']}").status_code == 200
    assert_problem(made_through_api(viewer, team=str(team.pk)), 403, "you may not")
    assert_problem(viewer("DELETE", f"/registration-tokens/{token['id']}"), 403, "you may not")

    assert_problem(outsider("GET", f"/registration-tokens?team={team.pk}"), 404, "no team")
    for method in ("GET", "DELETE"):
        answer = outsider(method, f"/registration-tokens/{token['id']}")
        assert_problem(answer, 404, "You have no registration token with this id.")
    assert_problem(made_through_api(outsider, team=str(team.pk)), 404, "no team")
    assert outsider("GET", "/registration-tokens").json()["items"] == []
    assert RegistrationToken.objects.get(pk=token["id"]).revoked_at is None


# --- The CLI -----------------------------------------------------------------------------


@pytest.fixture
def terminal(
    tmp_path: Path, live_server: Any, make_keycloak_user: Callable[..., KeycloakUser]
) -> Iterator[Cli]:
    """A person with the tool signed in to the live portal."""
    tool = Cli(tmp_path / "person", live_server.url)
    tool.signed_in_as(make_keycloak_user(), live_server.url)
    yield tool
    tool.stop()


def ok(result: Any) -> str:
    assert result.returncode == 0, (result.stdout, result.stderr)
    return str(result.stdout)


def test_a_token_made_listed_and_revoked_from_the_terminal(terminal: Cli) -> None:
    create = ("registration-tokens", "create", "--api", "sample", "--name", "deploys")

    made = json.loads(
        ok(
            terminal(
                *create,
                "--max",
                "3",
                "--days",
                "5",
                "--key-days",
                "7",
                "--allow-from",
                "127.0.0.1",
                "--json",
            )
        )
    )

    secret = made["token"]
    assert secret.startswith("kcrt_")
    token_id = made["registration_token"]["id"]
    assert register(secret).status_code == 201
    listed = ok(terminal("registration-tokens", "list"))
    assert "deploys" in listed
    assert "1/3" in listed
    assert "active" in listed
    assert "kcrt_" not in listed
    shown = ok(terminal("registration-tokens", "show", token_id))
    assert "127.0.0.1/32" in shown
    assert "billing deploy" in shown
    env = ok(terminal(*create, "--max", "1", "--days", "1", "--output", "env"))
    assert re.search(r"^REGISTRATION_TOKEN=kcrt_", env, re.MULTILINE)
    assert re.search(r"^REGISTRATION_ENDPOINT=http.*/register$", env, re.MULTILINE)

    assert terminal("registration-tokens", "revoke", token_id).returncode == 2  # asks first
    revoked = ok(terminal("registration-tokens", "revoke", token_id, "--yes"))

    assert "registers nothing more" in revoked
    assert_refused_as_revoked(secret)
    assert "The registration token was revoked." in ok(terminal("registration-tokens", "list"))
    too_long = terminal(*create, "--max", "3", "--days", "91")
    assert too_long.returncode == 5
    assert "A registration token lives 1 to 90 days." in too_long.stderr
    assert terminal("registration-tokens", "show", "nope").returncode == 2


# --- The admin area ----------------------------------------------------------------------


def test_administrators_list_and_revoke_every_token_on_the_pages(sample: Api) -> None:
    person, boss, admin = unique_user(), unique_user(), unique_user(staff=True)
    personal = make_token(person, sample, name="personal one")
    teamed = make_token(boss, sample, name="team one", team=team_with(boss))
    as_admin = Client()
    force_login_with_second_factor(as_admin, admin)  # the admin area needs level 2

    listed = as_admin.get(reverse("manage_registration_tokens")).content.decode()
    assert "personal one" in listed
    assert "team one" in listed
    assert person.email in listed
    found = as_admin.get(reverse("manage_registration_tokens"), {"q": "Acme"}).content.decode()
    assert "team one" in found
    assert "personal one" not in found
    revoke = reverse("manage_registration_token_revoke", args=[teamed.token.pk])
    assert as_admin.get(revoke).status_code == 200
    done = as_admin.post(revoke, {"reason": "Its team asked."}, follow=True)

    assert "is revoked: it registers nothing more" in done.content.decode()
    entry = AuditEntry.objects.get(action=AuditEntry.Action.REGISTRATION_TOKEN_REVOKED)
    assert (entry.team, entry.reason.endswith("Its team asked.")) == (teamed.token.team, True)
    assert entry.actor_as_seen_by(boss) == "an administrator"
    assert_refused_as_revoked(teamed.secret)
    assert register(personal.secret).status_code == 201
    for url in (reverse("manage_registration_tokens"), revoke):
        assert signed_in(person).get(url).status_code == 404


def test_administrators_list_and_revoke_every_token_through_the_api(
    api_person: Callable[..., Caller], sample: Api
) -> None:
    admin, customer = api_person(admin=True), api_person()
    made = made_through_api(customer, name="theirs")
    assert made.status_code == 201, made.content
    token = made.json()["registration_token"]

    listed = admin("GET", "/admin/registration-tokens", None)
    assert listed.status_code == 200, listed.content
    assert token["id"] in [t["id"] for t in listed.json()["items"]]
    assert_problem(customer("GET", "/admin/registration-tokens"), 403, "portal-admin")
    assert_problem(
        customer("POST", f"/admin/registration-tokens/{token['id']}/revoke"), 403, "portal-admin"
    )
    path = f"/admin/registration-tokens/{token['id']}/revoke"
    revoked = admin("POST", path, {"reason": "Found in a public CI log."})

    assert revoked.status_code == 200, revoked.content
    assert revoked.json()["revoked_at"] is not None
    assert_refused_as_revoked(made.json()["token"])
    entry = AuditEntry.objects.get(action=AuditEntry.Action.REGISTRATION_TOKEN_REVOKED)
    assert entry.via == "api"
    assert entry.reason.endswith("Found in a public CI log.")
    again = admin("POST", path, {})
    assert again.status_code == 200, again.content
    assert AuditEntry.objects.filter(action=entry.action).count() == 1


def test_an_administrators_token_search_with_a_nul_is_refused_with_a_message_not_a_500(
    client: Client, admin_user: User
) -> None:
    force_login_with_second_factor(client, admin_user)

    page = client.get(reverse("manage_registration_tokens"), {"q": "Sé\x00"})

    assert page.status_code == 400
    assert "The search was not understood: Null characters are not allowed." in (
        page.content.decode()
    )
    assert 'value="Sé"' in page.content.decode()  # as typed, less what no field can hold
    assert 'data-testid="admin-registration-tokens"' not in page.content.decode()
