"""Teams from the terminal: the `apikeys` tool run as users run it (a process of its own, the
standard library only), against the live portal, Keycloak and the mail sink."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from apikeys.models import ApiKey
from tests.accounts import KeycloakUser
from tests.factories import invitation_link
from tests.test_cli import Cli
from tests.tokens import request_token

pytestmark = pytest.mark.usefixtures("key_clients", "sample", "real_smtp")

Terminals = Callable[[], tuple[Cli, KeycloakUser]]


@pytest.fixture
def terminal(
    tmp_path: Path, live_server: Any, make_keycloak_user: Callable[..., KeycloakUser]
) -> Iterator[Terminals]:
    """A new person with the tool signed in, in a config directory of their own."""
    made: list[Cli] = []

    def make() -> tuple[Cli, KeycloakUser]:
        account = make_keycloak_user()
        tool = Cli(tmp_path / f"person{len(made)}", live_server.url)
        tool.signed_in_as(account, live_server.url)
        made.append(tool)
        return tool, account

    yield make
    for tool in made:
        tool.stop()


def ok(result: Any) -> str:
    assert result.returncode == 0, (result.stdout, result.stderr)
    return str(result.stdout)


def test_a_team_made_shared_and_left_from_the_terminal(terminal: Terminals) -> None:
    owner, _ = terminal()
    developer, developer_account = terminal()
    viewer, viewer_account = terminal()
    team = json.loads(ok(owner("teams", "create", "Acme", "--json")))["id"]
    assert "owner" in ok(owner("teams", "list"))

    invited = ok(owner("teams", "invite", "Acme", developer_account.email, "--role", "developer"))
    assert f"Invited {developer_account.email} as developer" in invited
    joined = ok(developer("teams", "accept", invitation_link(developer_account.email)))
    assert "You joined the team Acme as developer" in joined
    ok(owner("teams", "invite", team, viewer_account.email, "--role", "viewer"))
    token = invitation_link(viewer_account.email).rstrip("/").rsplit("/", 1)[1]
    ok(viewer("teams", "accept", token))
    members = json.loads(ok(owner("teams", "members", "acme", "--json")))
    ids = {m["email"]: m["user_id"] for m in members}
    assert {m["role"] for m in members} == {"owner", "developer", "viewer"}

    made = json.loads(
        ok(developer("keys", "create", "ci", "--api", "sample", "--team", "Acme", "--json"))
    )
    assert made["key"]["team_name"] == "Acme"
    assert request_token(made["client_id"], made["client_secret"]).status_code == 200
    listed = ok(viewer("keys", "list", "--team", "Acme"))
    assert made["client_id"] in listed
    assert "TEAM" in listed.splitlines()[0]
    assert "Acme" in listed.splitlines()[1]
    assert ok(viewer("keys", "list")).strip() == "Nothing."
    refused = viewer("keys", "rotate", made["client_id"])
    assert refused.returncode == 5
    assert "you may not" in refused.stderr
    assert "Acme" in ok(viewer("teams", "show", "Acme"))

    other = ok(owner("teams", "invite", "Acme", "someone@example.com", "--json"))
    invitation = json.loads(other)["invitation"]["id"]
    assert "revoked" in ok(owner("teams", "revoke-invitation", "Acme", invitation))
    states = ok(owner("teams", "invitations", "Acme"))
    assert states.count("accepted") == 2
    assert "revoked" in states
    promoted = ok(owner("teams", "set-role", "Acme", str(ids[viewer_account.email]), "developer"))
    assert "developer" in promoted
    assert owner("teams", "remove", "Acme", str(ids[developer_account.email])).returncode == 2
    ok(owner("teams", "remove", "Acme", str(ids[developer_account.email]), "--yes"))
    assert developer("teams", "show", team).returncode == 4
    assert developer("keys", "show", made["client_id"]).returncode == 4
    last = owner("teams", "leave", "Acme", "--yes")
    assert last.returncode == 5
    assert "last owner" in last.stderr
    ok(viewer("teams", "leave", "Acme", "--yes"))
    assert viewer("teams", "show", "Acme").returncode == 4
    assert "member_removed" in ok(owner("teams", "activity", "Acme"))
    assert request_token(made["client_id"], made["client_secret"]).status_code == 200


def test_a_personal_key_moved_into_a_team_and_team_webhooks_from_the_terminal(
    terminal: Terminals,
) -> None:
    owner, _ = terminal()
    ok(owner("teams", "create", "Globex"))
    made = json.loads(ok(owner("keys", "create", "nightly", "--api", "sample", "--json")))
    assert made["key"]["team"] is None
    assert "personal" in ok(owner("keys", "list"))
    assert request_token(made["client_id"], made["client_secret"]).status_code == 200

    moved = ok(owner("keys", "move", made["client_id"], "--team", "Globex"))

    assert "now a key of the team Globex" in moved
    assert request_token(made["client_id"], made["client_secret"]).status_code == 200
    assert ApiKey.objects.get(client_id=made["client_id"]).team is not None
    assert made["client_id"] in ok(owner("keys", "list", "--team", "Globex"))
    assert ok(owner("keys", "list")).strip() == "Nothing."
    assert owner("keys", "move", made["client_id"], "--team", "Initech").returncode == 4
    hook = ok(owner("webhooks", "create", "http://127.0.0.1:9/hooks", "--team", "Globex"))
    assert "whsec_" in hook
    assert "http://127.0.0.1:9/hooks" in ok(owner("webhooks", "list", "--team", "Globex"))
    assert ok(owner("webhooks", "list")).strip() == "Nothing."


def test_an_administrator_moves_any_key_from_the_terminal(
    terminal: Terminals,
    tmp_path: Path,
    live_server: Any,
    make_keycloak_user: Callable[..., KeycloakUser],
) -> None:
    owner, owner_account = terminal()
    heir, heir_account = terminal()
    admin = Cli(tmp_path / "admin", live_server.url)
    admin.signed_in_as(make_keycloak_user(roles=("portal-admin",)), live_server.url)
    try:
        ok(owner("teams", "create", "Initech"))
        made = json.loads(ok(owner("keys", "create", "handover", "--api", "sample", "--json")))
        key = made["client_id"]
        ok(heir("keys", "list"))  # their portal account, made at their first call

        nowhere = admin("admin", "move", key, "--reason", "x")
        unknown = admin("admin", "move", key, "--to-team", "Nope", "--reason", "x")
        gone = admin("admin", "move", key, "--to-email", "nobody@example.com", "--reason", "x")
        given = ok(admin("admin", "move", key, "--to-email", heir_account.email, "--reason", "x"))
        outsider = admin("admin", "move", key, "--to-team", "initech", "--reason", "Merged.")
        into = ok(
            admin(
                "admin",
                "move",
                key,
                "--to-team",
                "initech",
                "--to-email",
                owner_account.email,
                "--reason",
                "Merged.",
            )
        )

        assert nowhere.returncode == 2
        assert "Say where to: --to-email, --to-team, or both." in nowhere.stderr
        assert unknown.returncode == 5
        assert "to_team: No team is called Nope or has this id." in unknown.stderr
        assert gone.returncode == 5
        assert "No active portal account has the email nobody@example.com." in gone.stderr
        assert heir_account.email in given
        assert outsider.returncode == 5  # its maker, heir, is not in the team
        assert f"{heir_account.email} is not a member of the team Initech" in outsider.stderr
        assert "Initech" in into
        assert key in ok(owner("keys", "list", "--team", "Initech"))  # the team's now
        assert key not in ok(heir("keys", "list"))
        assert request_token(made["client_id"], made["client_secret"]).status_code == 200
    finally:
        admin.stop()
