"""Permissions from the terminal: the `apikeys` tool run as users run it (a process of its own,
the standard library only), against the live portal and Keycloak."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.accounts import KeycloakUser
from tests.test_cli import Cli
from tests.tokens import claims, request_token

pytestmark = pytest.mark.usefixtures("key_clients", "sample")

READ, WRITE = "orders:read", "orders:write"


@pytest.fixture
def terminal(
    tmp_path: Path, live_server: Any, make_keycloak_user: Callable[..., KeycloakUser]
) -> Callable[..., Cli]:
    """A new person with the tool signed in (admin=True: with the portal-admin role)."""

    def make(*, admin: bool = False) -> Cli:
        account = make_keycloak_user(roles=("portal-admin",) if admin else ())
        tool = Cli(tmp_path / account.id, live_server.url)
        tool.signed_in_as(account, live_server.url)
        return tool

    return make


def ok(result: Any) -> str:
    assert result.returncode == 0, (result.stdout, result.stderr)
    return str(result.stdout)


def scope_of(client_id: str, secret: str) -> set[str]:
    answer = request_token(client_id, secret)
    assert answer.status_code == 200, answer.text
    return set(claims(answer.json()["access_token"]).get("scope", "").split())


@pytest.mark.usefixtures("orders")
def test_keys_are_made_with_the_permissions_named_none_or_the_apis_defaults(
    terminal: Callable[..., Cli],
) -> None:
    cli = terminal()

    named = json.loads(
        ok(cli("keys", "create", "named", "--api", "sample", "--permission", READ, "--json"))
    )
    bare = json.loads(
        ok(cli("keys", "create", "bare", "--api", "sample", "--no-permissions", "--json"))
    )
    defaults = ok(cli("keys", "create", "defaults", "--api", "sample"))

    assert named["key"]["permissions"] == [READ]
    assert READ in scope_of(named["client_id"], named["client_secret"])
    assert bare["key"]["permissions"] == []
    assert re.search(r"^permissions +orders:read$", defaults, re.M)
    unknown = cli("keys", "create", "x", "--api", "sample", "--permission", "refunds:write")
    assert unknown.returncode == 5  # refused
    assert "The key was not created" in unknown.stderr
    assert "permissions: Sample API has no permission refunds:write" in unknown.stderr
    both = cli("keys", "create", "x", "--api", "sample", "--permission", READ, "--no-permissions")
    assert both.returncode == 2
    assert "PERMISSIONS" in ok(cli("keys", "list"))
    catalog = ok(cli("apis"))
    assert "orders:read, orders:write" in catalog


@pytest.mark.usefixtures("orders")
def test_permissions_narrowed_widened_and_approved_from_the_terminal(
    terminal: Callable[..., Cli],
) -> None:
    cli, admin = terminal(), terminal(admin=True)
    made = json.loads(ok(cli("keys", "create", "shop", "--api", "sample", "--json")))
    client_id, secret = made["client_id"], made["client_secret"]
    assert "permissions  orders:read" in ok(cli("keys", "permissions", client_id))

    narrowed = ok(cli("keys", "permissions", client_id, "--set"))

    assert "Removed: orders:read." in narrowed
    assert "permissions  none" in narrowed
    assert READ not in scope_of(client_id, secret)
    unjustified = cli("keys", "permissions", client_id, "--set", READ, WRITE)
    assert unjustified.returncode == 5
    assert "say why the key needs them" in unjustified.stderr

    widened = ok(
        cli("keys", "permissions", client_id, "--set", READ, WRITE, "--justification", "we sell")
    )

    assert "Added: orders:read." in widened
    assert "Requested: orders:write. An administrator decides" in widened
    assert "justification  we sell" in widened
    shown = ok(cli("keys", "show", client_id))
    assert re.search(r"^permission_request +orders:write \(waiting for approval\)$", shown, re.M)
    assert re.search(r"^permissions +orders:read$", shown, re.M)
    assert WRITE not in scope_of(client_id, secret)
    queue = json.loads(ok(admin("admin", "requests", "--json")))
    assert [(r["client_id"], r["permissions"]) for r in queue] == [(client_id, [WRITE])]
    assert client_id in ok(admin("admin", "requests"))
    assert admin("admin", "refuse-permissions", str(queue[0]["id"])).returncode == 2  # no reason

    approved = ok(admin("admin", "approve-permissions", str(queue[0]["id"])))

    assert f"{client_id} has orders:write from its next token on" in approved
    assert scope_of(client_id, secret) >= {READ, WRITE}
    holders = ok(admin("admin", "keys", "--permission", WRITE))
    assert client_id in holders


@pytest.mark.usefixtures("orders")
def test_a_request_withdrawn_or_refused_from_the_terminal(terminal: Callable[..., Cli]) -> None:
    cli, admin = terminal(), terminal(admin=True)
    client_id = json.loads(ok(cli("keys", "create", "shop", "--api", "sample", "--json")))[
        "client_id"
    ]
    wider = ("keys", "permissions", client_id, "--set", READ, WRITE, "--justification", "j")
    ok(cli(*wider))

    withdrawn = ok(cli("keys", "permissions", client_id, "--withdraw"))

    assert "Request withdrawn" in withdrawn
    assert "requested" not in withdrawn
    again = cli("keys", "permissions", client_id, "--withdraw")
    assert again.returncode == 4  # not found
    assert "no request for permissions waiting" in again.stderr
    ok(cli(*wider))
    asked = json.loads(ok(admin("admin", "requests", "--json")))[0]["id"]

    refused = ok(admin("admin", "refuse-permissions", str(asked), "--reason", "not for tests"))

    assert f"orders:write refused for {client_id}" in refused
    assert json.loads(ok(cli("keys", "show", client_id, "--json")))["permissions"] == [READ]
