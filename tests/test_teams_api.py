"""Teams through the JSON API, with real Keycloak tokens of the CLI's client and real keys:
invitations by mail, roles (404 outside a team, 403 below the role), keys and webhooks held
by a team, moves, and the administrators' routes."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from apikeys.models import ApiKey, Invitation, Membership, Team, User
from tests.accounts import KeycloakUser
from tests.factories import invitation_link, unique_user
from tests.test_api import API, Caller, assert_problem
from tests.tokens import request_token

pytestmark = [pytest.mark.embedded, pytest.mark.usefixtures("key_clients", "sample", "real_smtp")]

People = Callable[..., Caller]


@pytest.fixture
def person(make_keycloak_user: Callable[..., KeycloakUser]) -> People:
    """A new person signed in to the API (admin=True: with the portal-admin role)."""

    def make(*, admin: bool = False) -> Caller:
        return Caller(make_keycloak_user(roles=("portal-admin",) if admin else ()))

    return make


def make_team(owner: Caller, name: str = "Acme") -> str:
    made = owner("POST", "/teams", {"name": name})
    assert made.status_code == 201, made.content
    return str(made.json()["id"])


def join(owner: Caller, team: str, member: Caller, role: str) -> int:
    """`member` invited by `owner` as `role`, joined with the mailed link; their user id."""
    sent = owner(
        "POST", f"/teams/{team}/invitations", {"email": member.account.email, "role": role}
    )
    assert sent.status_code == 201, sent.content
    accepted = member(
        "POST", "/invitations/accept", {"token": invitation_link(member.account.email)}
    )
    assert accepted.status_code == 200, accepted.content
    return User.objects.get(username=member.account.id).pk


def make_key(caller: Caller, name: str = "billing", **fields: Any) -> Any:
    made = caller("POST", "/keys", {"name": name, "api": "sample", **fields})
    assert made.status_code == 201, made.content
    return made.json()


def test_an_owner_invites_by_mail_and_the_invitee_joins_through_the_api(person: People) -> None:
    owner, invitee = person(), person()

    made = owner("POST", "/teams", {"name": "Acme"})

    assert made.status_code == 201, made.content
    team = made.json()
    assert (team["name"], team["role"], team["live_keys"]) == ("Acme", "owner", 0)
    assert team["ownerless_since"] is None
    assert team["key_quota"] > 0
    sent = owner(
        "POST",
        f"/teams/{team['id']}/invitations",
        {"email": invitee.account.email, "role": "viewer"},
    )
    assert sent.status_code == 201, sent.content
    assert sent.json()["invitation"]["state"] == "pending"
    assert sent.json()["mailed"] is True
    link = invitation_link(invitee.account.email)
    token = link.rstrip("/").rsplit("/", 1)[1]
    assert token not in sent.content.decode()
    listed = owner("GET", f"/teams/{team['id']}/invitations")
    assert token not in listed.content.decode()
    assert [i["email"] for i in listed.json()] == [invitee.account.email]

    joined = invitee("POST", "/invitations/accept", {"token": link})

    assert joined.status_code == 200, joined.content
    assert (joined.json()["id"], joined.json()["role"]) == (team["id"], "viewer")
    assert [(t["name"], t["role"]) for t in invitee("GET", "/teams").json()] == [("Acme", "viewer")]
    members = owner("GET", f"/teams/{team['id']}/members").json()
    assert [(m["email"], m["role"]) for m in members] == [
        (owner.account.email, "owner"),
        (invitee.account.email, "viewer"),
    ]
    assert members[1]["user_id"] == User.objects.get(username=invitee.account.id).pk
    assert invitee("GET", f"/teams/{team['id']}/members").status_code == 200
    activity = invitee("GET", f"/teams/{team['id']}/activity").json()
    assert {e["action"] for e in activity["items"]} == {"team_created", "invited", "member_joined"}
    assert all(e["via"] == "api" for e in activity["items"])
    renamed = owner("PATCH", f"/teams/{team['id']}", {"name": "Acme Ltd"})
    assert renamed.json()["name"] == "Acme Ltd"
    assert_problem(owner("POST", "/teams", {"name": ""}), 422, "No team was made")


def test_a_developer_makes_a_team_key_and_a_viewer_only_reads_it(person: People) -> None:
    owner, developer, viewer = person(), person(), person()
    team = make_team(owner)
    join(owner, team, developer, "developer")
    join(owner, team, viewer, "viewer")

    made = make_key(developer, team=team)

    key = made["key"]
    assert (key["team"], key["team_name"]) == (team, "Acme")
    assert request_token(made["client_id"], made["client_secret"]).status_code == 200
    assert ApiKey.objects.get(pk=key["id"]).team_id is not None
    assert developer("GET", "/keys").json()["items"] == []  # personal keys only
    listed = viewer("GET", f"/keys?team={team}").json()["items"]
    assert [k["id"] for k in listed] == [key["id"]]
    assert viewer("GET", f"/teams/{team}").json()["live_keys"] == 1
    for path in (
        f"/keys/{key['id']}",
        f"/keys/{key['id']}/usage",
        f"/keys/{key['id']}/public-keys",
    ):
        assert viewer("GET", path).status_code == 200, path
    for method, path, body in (
        ("POST", f"/keys/{key['id']}/rotate", None),
        ("POST", f"/keys/{key['id']}/revoke", None),
        ("PATCH", f"/keys/{key['id']}", {"name": "mine"}),
        ("POST", "/keys", {"name": "viewer's", "api": "sample", "team": team}),
        ("POST", f"/teams/{team}/invitations", {"email": "x@example.com", "role": "owner"}),
        ("PATCH", f"/teams/{team}", {"name": "Taken"}),
        ("GET", f"/teams/{team}/invitations", None),
    ):
        assert_problem(viewer(method, path, body), 403, "you may not")
    assert_problem(developer("PATCH", f"/teams/{team}", {"name": "x"}), 403, "an owner's right")
    assert request_token(made["client_id"], made["client_secret"]).status_code == 200
    assert ApiKey.objects.filter(team__isnull=False).count() == 1
    rotated = developer("POST", f"/keys/{key['id']}/rotate")
    assert rotated.status_code == 200, rotated.content
    taken = developer("POST", "/keys", {"name": "billing", "api": "sample", "team": team})
    assert "The team Acme already has" in assert_problem(taken, 422, "")["errors"]["name"][0]


def test_outsiders_and_removed_members_get_404_on_every_team_route(person: People) -> None:
    owner, member, stranger = person(), person(), person()
    team = make_team(owner)
    member_id = join(owner, team, member, "developer")
    made = make_key(member, team=team)
    key = made["key"]["id"]
    endpoint = member("POST", "/webhooks", {"url": "http://127.0.0.1:9/hooks", "team": team})
    assert endpoint.status_code == 201, endpoint.content
    hook = endpoint.json()["endpoint"]["id"]
    invited = owner("POST", f"/teams/{team}/invitations", {"email": "y@example.com"}).json()
    make_key(member, "own")
    own = ApiKey.objects.get(name="own").pk

    removed = owner("DELETE", f"/teams/{team}/members/{member_id}")

    assert removed.status_code == 204, removed.content
    routes = (
        ("GET", f"/teams/{team}", None),
        ("PATCH", f"/teams/{team}", {"name": "Mine"}),
        ("GET", f"/teams/{team}/members", None),
        ("PATCH", f"/teams/{team}/members/{member_id}", {"role": "owner"}),
        ("DELETE", f"/teams/{team}/members/{member_id}", None),
        ("GET", f"/teams/{team}/invitations", None),
        ("POST", f"/teams/{team}/invitations", {"email": "z@example.com", "role": "owner"}),
        ("DELETE", f"/teams/{team}/invitations/{invited['invitation']['id']}", None),
        ("GET", f"/teams/{team}/activity", None),
        ("GET", f"/keys?team={team}", None),
        ("POST", "/keys", {"name": "in", "api": "sample", "team": team}),
        ("GET", f"/keys/{key}", None),
        ("GET", f"/keys/{key}/usage", None),
        ("POST", f"/keys/{key}/rotate", None),
        ("POST", f"/keys/{key}/revoke", None),
        ("PATCH", f"/keys/{key}", {"name": "renamed"}),
        ("POST", f"/keys/{own}/move", {"team": team}),
        ("GET", f"/webhooks?team={team}", None),
        ("POST", "/webhooks", {"url": "http://127.0.0.1:9/x", "team": team}),
        ("GET", f"/webhooks/{hook}", None),
        ("DELETE", f"/webhooks/{hook}", None),
    )
    for caller in (member, stranger):
        for method, path, body in routes:
            response = caller(method, path, body)
            assert response.status_code == 404, (caller.account.email, method, path, response)
        assert caller("GET", "/teams").json() == []
    assert request_token(made["client_id"], made["client_secret"]).status_code == 200
    assert ApiKey.objects.get(pk=key).status == ApiKey.Status.ACTIVE
    assert owner("GET", f"/keys/{key}").status_code == 200


def test_the_last_owner_cannot_leave_but_others_can(person: People) -> None:
    owner, developer, second = person(), person(), person()
    team = make_team(owner)
    developer_id = join(owner, team, developer, "developer")
    owner_id = User.objects.get(username=owner.account.id).pk

    assert_problem(owner("DELETE", f"/teams/{team}/members/{owner_id}"), 409, "last owner")
    assert_problem(
        owner("PATCH", f"/teams/{team}/members/{owner_id}", {"role": "viewer"}), 409, "last owner"
    )
    assert_problem(
        developer("DELETE", f"/teams/{team}/members/{owner_id}"), 403, "an owner's right"
    )
    assert developer("DELETE", f"/teams/{team}/members/{developer_id}").status_code == 204
    assert developer("GET", f"/teams/{team}").status_code == 404
    second_id = join(owner, team, second, "developer")
    bad = owner("PATCH", f"/teams/{team}/members/{second_id}", {"role": "boss"})
    assert_problem(bad, 422, "not valid")
    promoted = owner("PATCH", f"/teams/{team}/members/{second_id}", {"role": "owner"})
    assert promoted.json()["role"] == "owner"

    left = owner("DELETE", f"/teams/{team}/members/{owner_id}")

    assert left.status_code == 204, left.content
    assert owner("GET", f"/teams/{team}").status_code == 404
    assert [m.user_id for m in Membership.objects.filter(team_id=team)] == [second_id]


def test_invitations_refused_each_with_its_reason(person: People) -> None:
    owner, invitee, stranger = person(), person(), person()
    team = make_team(owner)
    email = invitee.account.email
    owner("POST", f"/teams/{team}/invitations", {"email": email, "role": "developer"})
    first = invitation_link(email)

    mismatch = stranger("POST", "/invitations/accept", {"token": first})
    assert_problem(mismatch, 409, f"This invitation is for {email}")
    owner("POST", f"/teams/{team}/invitations", {"email": email, "role": "viewer"})
    second = invitation_link(email, besides=(first,))
    assert_problem(invitee("POST", "/invitations/accept", {"token": first}), 409, "revoked")
    token = second.rstrip("/").rsplit("/", 1)[1]
    assert invitee("POST", "/invitations/accept", {"token": token}).json()["role"] == "viewer"
    assert_problem(invitee("POST", "/invitations/accept", {"token": second}), 409, "used already")
    assert_problem(invitee("POST", "/invitations/accept", {"token": "nope"}), 409, "not valid")

    other = stranger.account.email
    sent = owner("POST", f"/teams/{team}/invitations", {"email": other, "role": "viewer"}).json()
    revoked_link = invitation_link(other)
    revoked = owner("DELETE", f"/teams/{team}/invitations/{sent['invitation']['id']}")
    assert revoked.json()["state"] == "revoked"
    assert_problem(stranger("POST", "/invitations/accept", {"token": revoked_link}), 409, "revoked")
    again = owner("DELETE", f"/teams/{team}/invitations/{sent['invitation']['id']}")
    assert_problem(again, 409, "nothing to revoke")
    owner("POST", f"/teams/{team}/invitations", {"email": other, "role": "viewer"})
    late = invitation_link(other, besides=(revoked_link,))
    Invitation.objects.filter(email=other, revoked_at__isnull=True).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert_problem(stranger("POST", "/invitations/accept", {"token": late}), 409, "expired")
    assert_problem(
        owner("POST", f"/teams/{team}/invitations", {"email": email, "role": "viewer"}),
        409,
        "in the team already",
    )
    assert_problem(
        owner("POST", f"/teams/{team}/invitations", {"email": "nope", "role": "viewer"}),
        422,
        "No one was invited",
    )
    assert stranger("GET", "/teams").json() == []


def test_moving_a_personal_key_into_a_team_keeps_its_secret_working(person: People) -> None:
    owner, viewer = person(), person()
    team = make_team(owner)
    join(owner, team, viewer, "viewer")
    made = make_key(owner, "nightly")
    key = made["key"]["id"]
    assert request_token(made["client_id"], made["client_secret"]).status_code == 200

    moved = owner("POST", f"/keys/{key}/move", {"team": team})

    assert moved.status_code == 200, moved.content
    assert (moved.json()["team"], moved.json()["team_name"]) == (team, "Acme")
    assert request_token(made["client_id"], made["client_secret"]).status_code == 200
    assert owner("GET", "/keys").json()["items"] == []
    assert [k["id"] for k in viewer("GET", f"/keys?team={team}").json()["items"]] == [key]
    assert_problem(owner("POST", f"/keys/{key}/move", {"team": team}), 409, "only personal keys")
    theirs = make_key(viewer, "viewer's")["key"]["id"]
    assert_problem(viewer("POST", f"/keys/{theirs}/move", {"team": team}), 403, "you may not")
    activity = viewer("GET", f"/teams/{team}/activity").json()["items"]
    assert "transferred" in {e["action"] for e in activity}


def test_team_webhook_endpoints_through_the_api(person: People) -> None:
    owner, viewer = person(), person()
    team = make_team(owner)
    join(owner, team, viewer, "viewer")

    made = owner("POST", "/webhooks", {"url": "http://127.0.0.1:9/hooks", "team": team})

    assert made.status_code == 201, made.content
    endpoint = made.json()["endpoint"]
    assert endpoint["team"] == team
    assert owner("GET", "/webhooks").json() == []
    assert [e["id"] for e in viewer("GET", f"/webhooks?team={team}").json()] == [endpoint["id"]]
    assert viewer("GET", f"/webhooks/{endpoint['id']}").status_code == 200
    assert viewer("GET", f"/webhooks/{endpoint['id']}/messages").status_code == 200
    paused = viewer("PATCH", f"/webhooks/{endpoint['id']}", {"active": False})
    assert_problem(paused, 403, "you may not")
    denied = viewer("POST", "/webhooks", {"url": "http://127.0.0.1:9/v", "team": team})
    assert_problem(denied, 403, "you may not")
    mine = viewer("POST", "/webhooks", {"url": "http://127.0.0.1:9/v"})
    assert mine.json()["endpoint"]["team"] is None
    entries = viewer("GET", f"/teams/{team}/activity").json()["items"]
    assert "webhook_added" in {e["action"] for e in entries}


def test_administrators_find_teams_appoint_owners_and_move_keys(person: People) -> None:
    owner, admin, heir = person(), person(admin=True), person()
    team = make_team(owner, "Globex Research")
    heir("GET", "/me")  # their portal account
    made = make_key(owner, team=team)
    key = made["key"]["id"]

    found = admin("GET", "/admin/teams?q=globex").json()

    assert [t["id"] for t in found["items"]] == [team]
    assert (found["items"][0]["member_count"], found["items"][0]["live_keys"]) == (1, 1)
    assert_problem(owner("GET", "/admin/teams"), 403, "portal-admin")
    Membership.objects.filter(team_id=team).delete()
    Team.objects.filter(pk=team).update(ownerless_since=timezone.now())
    assert admin("GET", f"/admin/teams/{team}").json()["ownerless"] is True
    appointed = admin(
        "POST", f"/admin/teams/{team}/owners", {"email": heir.account.email, "reason": "ticket 7"}
    )
    assert appointed.status_code == 200, appointed.content
    shown = appointed.json()
    assert (shown["ownerless"], shown["ownerless_since"]) == (False, None)
    assert [(m["email"], m["role"]) for m in shown["members"]] == [(heir.account.email, "owner")]
    assert heir("GET", f"/keys?team={team}").json()["count"] == 1
    assert [k["id"] for k in admin("GET", f"/admin/keys?team={team}").json()["items"]] == [key]

    personal = admin(
        "POST", f"/admin/keys/{key}/move", {"to_email": heir.account.email, "reason": "split"}
    )

    assert personal.status_code == 200, personal.content
    assert (personal.json()["team"], personal.json()["owner_email"]) == (None, heir.account.email)
    assert [k["id"] for k in heir("GET", "/keys").json()["items"]] == [key]
    assert request_token(made["client_id"], made["client_secret"]).status_code == 200
    back = admin("POST", f"/admin/keys/{key}/move", {"to_team": team, "reason": "merged"})
    assert (back.json()["team"], back.json()["owner_email"]) == (team, heir.account.email)
    nowhere = admin("POST", f"/admin/keys/{key}/move", {"reason": "x"})
    assert_problem(nowhere, 422, "see errors")
    assert nowhere.json()["errors"] == {
        "to_email": ["Say where to: a person's email, a team, or both."]
    }
    no_team = str(uuid.uuid4())
    unknown_team = admin("POST", f"/admin/keys/{key}/move", {"to_team": no_team, "reason": "x"})
    assert_problem(unknown_team, 422, "see errors")
    assert unknown_team.json()["errors"] == {
        "to_team": [f"No team is called {no_team} or has this id."]
    }
    gone = unique_user(is_active=False)
    inactive = admin("POST", f"/admin/keys/{key}/move", {"to_email": gone.email, "reason": "x"})
    assert_problem(inactive, 422, "see errors")
    assert inactive.json()["errors"]["to_email"] == [
        f"No active portal account has the email {gone.email}."
    ]
    nobody = {"email": "nobody@example.com", "reason": "x"}
    assert_problem(admin("POST", f"/admin/teams/{team}/owners", nobody), 422, "No one")


def test_the_admin_team_list_is_in_the_pages_order_ownerless_first_then_by_name(
    person: People,
) -> None:
    admin = person(admin=True)
    for name in ("Order Zeta", "Order Alpha", "Order Mid"):
        Team.objects.create(name=name, ownerless_since=timezone.now() if "Mid" in name else None)

    listed = admin("GET", "/admin/teams?q=order").json()["items"]

    assert [t["name"] for t in listed] == ["Order Mid", "Order Alpha", "Order Zeta"]


def test_the_openapi_document_lists_the_team_routes(client: Client) -> None:
    document = client.get(f"{API}/openapi.json").json()

    paths = document["paths"]
    assert {"get", "post"} <= set(paths[f"{API}/teams"])
    assert {"get", "patch"} <= set(paths[f"{API}/teams/{{team_id}}"])
    assert {"patch", "delete"} <= set(paths[f"{API}/teams/{{team_id}}/members/{{user_id}}"])
    assert {"get", "post"} <= set(paths[f"{API}/teams/{{team_id}}/invitations"])
    for path in (
        "/invitations/accept",
        "/teams/{team_id}/activity",
        "/keys/{key_id}/move",
        "/admin/teams",
        "/admin/teams/{team_id}/owners",
        "/admin/keys/{key_id}/move",
    ):
        assert f"{API}{path}" in paths, path
    schemas = document["components"]["schemas"]
    assert {"team", "team_name"} <= set(schemas["KeyOut"]["properties"])
    assert "token" not in schemas["InvitationOut"]["properties"]
