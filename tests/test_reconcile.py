"""Reconciliation with Keycloak: drift made behind the portal's back, and crashes between steps.

The crash tests arm each fault point of `apikeys.operations.lifecycle` in turn (the step boundaries
where a process may die after changing Keycloak and before recording it), then run
reconcile and the retry a person would make, and check that nothing is orphaned or lost.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from apikeys import crash_points
from apikeys.crash_points import POINTS as FAULT_POINTS
from apikeys.crash_points import SimulatedCrash
from apikeys.keycloak import client as keycloak
from apikeys.keycloak import desired
from apikeys.keycloak.client import Connection
from apikeys.models import Api, ApiKey, AuditEntry, User, WrongState
from apikeys.operations import lifecycle
from apikeys.operations.reconcile import reconcile
from tests.conftest import key_clients_in_keycloak
from tests.factories import issue
from tests.tokens import request_token

pytestmark = [pytest.mark.embedded, pytest.mark.usefixtures("key_clients")]
NOW_GRACE = timedelta(0)


def run_reconcile() -> list[str]:
    report = reconcile(grace=NOW_GRACE)
    assert all(f.done for f in report.findings), report.findings
    return [f.problem for f in report.findings]


def assert_in_agreement(conn: Connection) -> None:
    """No orphaned client, no live key without its client, enabled state as recorded."""
    now = timezone.now()
    clients = {c["clientId"]: c for c in key_clients_in_keycloak(conn)}
    records = {k.client_id: k for k in ApiKey.objects.all()}
    for client_id, client in clients.items():
        assert client_id in records, f"orphaned client {client_id}"
        key = records[client_id]
        assert key.status not in ("revoked", "rejected"), f"{client_id} ended but has a client"
        wanted = key.status == "active" and key.expires_at > now
        assert client["enabled"] is wanted or key.status == "provisioning", client_id
    for client_id, key in records.items():
        if key.status in ("active", "pending", "suspended"):
            assert client_id in clients or key.client_missing_since, f"lost client {client_id}"


@pytest.fixture
def armed() -> Iterator[Callable[[str], None]]:
    def arm(point: str) -> None:
        crash_points.armed[point] = "raise"

    yield arm
    crash_points.armed.clear()


# Drift made directly in Keycloak


def test_a_client_enabled_behind_the_portals_back_is_disabled_again(
    owner: User, sample: Api, admin_user: User, key_clients: Connection
) -> None:
    revealed = issue(owner, sample, "key", justification="why")
    lifecycle.suspend_key(revealed.key, actor=admin_user, reason="test")
    keycloak.update_client(key_clients, revealed.key.keycloak_id, {"enabled": True})
    assert request_token(revealed.key.client_id, revealed.secret).status_code == 200

    dry = reconcile(dry_run=True)
    assert [f.problem for f in dry.findings] == ["drift in enabled"]
    assert request_token(revealed.key.client_id, revealed.secret).status_code == 200
    call_command("reconcile_keycloak")

    assert request_token(revealed.key.client_id, revealed.secret).status_code == 401
    assert_in_agreement(key_clients)


def test_a_removed_scope_and_changed_settings_are_restored(
    owner: User, sample: Api, key_clients: Connection
) -> None:
    revealed = issue(owner, sample, "key", justification="why")
    uuid_ = revealed.key.keycloak_id
    scope = keycloak.find_client_scope(key_clients, "api-sample")
    assert scope is not None
    keycloak.set_client_scope_of_client(key_clients, uuid_, "default", scope["id"], attached=False)
    keycloak.update_client(
        key_clients,
        uuid_,
        {
            "directAccessGrantsEnabled": True,
            "attributes": {"access.token.lifespan": "86400"},
        },
    )
    assert "aud" not in request_token(revealed.key.client_id, revealed.secret).text

    problems = run_reconcile()

    assert problems == ["drift in flags, attributes, default scopes"]
    client = keycloak.get_client(key_clients, uuid_)
    assert client["directAccessGrantsEnabled"] is False
    assert client["attributes"]["access.token.lifespan"] == "300"
    assert "api-sample" in client["defaultClientScopes"]
    token = request_token(revealed.key.client_id, revealed.secret).json()
    assert token["expires_in"] == 300
    assert run_reconcile() == []


def test_a_client_deleted_in_keycloak_suspends_the_key_until_an_admin_decides(
    client: Any, owner: User, admin_user: User, sample: Api, key_clients: Connection
) -> None:
    revealed = issue(owner, sample, "key", justification="why")
    keycloak.delete_client(key_clients, revealed.key.keycloak_id)

    assert run_reconcile() == ["active key has no client in Keycloak"]
    key = ApiKey.objects.get()
    assert key.client_missing_since is not None
    assert key.status == ApiKey.Status.SUSPENDED
    assert AuditEntry.objects.filter(key=key, action="suspended", actor=None).exists()
    client.force_login(owner)
    assert "client is missing" in client.get(f"/keys/{key.pk}/").content.decode()
    assert run_reconcile() == []  # reported once

    rotated = lifecycle.rotate_secret(key, actor=owner)  # a new client, not a working key

    assert request_token(key.client_id, rotated.secret).status_code == 401
    assert ApiKey.objects.get().client_missing_since is None
    assert_in_agreement(key_clients)
    lifecycle.reinstate_key(key, actor=admin_user, reason="checked with the operator")
    assert request_token(key.client_id, rotated.secret).status_code == 200


def test_a_marked_client_with_no_record_is_recovered_and_a_foreign_one_left_alone(
    owner: User, sample: Api, key_clients: Connection
) -> None:
    stray = ApiKey(owner=owner, api=sample, name="ghost", expires_at=timezone.now())
    stray.client_id = f"apikey-{stray.pk.hex}"
    keycloak.create_client(  # by the portal, whose record of it was lost
        keycloak.portal_connection(), desired.key_client(stray, now=timezone.now(), secret="kcak_x")
    )
    keycloak.create_client(key_clients, {"clientId": "apikey-made-by-hand", "publicClient": True})

    dry = reconcile(dry_run=True, grace=NOW_GRACE)
    assert {f.client_id for f in dry.findings} == {stray.client_id, "apikey-made-by-hand"}
    run_reconcile()

    remaining = {c["clientId"] for c in key_clients_in_keycloak(key_clients)}
    assert remaining == {"apikey-made-by-hand", stray.client_id}  # nothing deleted
    assert ApiKey.objects.get(pk=stray.pk).status == "expired"  # as its client says


def test_reconcile_pages_through_more_clients_than_one_page(
    owner: User, sample: Api, key_clients: Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    from apikeys.operations import reconcile as module

    monkeypatch.setattr(module, "PAGE", 2)
    keys = [issue(owner, sample, f"k{n}", justification="why").key for n in range(5)]
    keycloak.update_client(key_clients, keys[4].keycloak_id, {"enabled": False})

    report = reconcile(grace=NOW_GRACE)

    assert report.clients_seen == 5
    assert [f.client_id for f in report.findings] == [keys[4].client_id]


def test_a_search_of_many_pages_is_split_by_the_next_digit_and_every_client_seen_once(
    owner: User, sample: Api, key_clients: Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    from apikeys.operations import reconcile as module

    monkeypatch.setattr(module, "PAGE", 2)
    monkeypatch.setattr(keycloak, "_SPLIT_PAST_PAGES", 0)  # as if each search held many pages
    searched: list[str] = []
    list_clients = keycloak.list_clients

    def spy(conn: Connection, start: str, first: int, page: int) -> list[Any]:
        searched.append(start)
        return list_clients(conn, start, first, page)

    monkeypatch.setattr(keycloak, "list_clients", spy)
    keys = [issue(owner, sample, f"k{n}", justification="why").key for n in range(5)]
    keycloak.update_client(key_clients, keys[3].keycloak_id, {"enabled": False})

    report = reconcile(grace=NOW_GRACE)

    assert report.clients_seen == 5
    assert [f.client_id for f in report.findings] == [keys[3].client_id]
    prefix = ApiKey.CLIENT_ID_PREFIX
    assert {prefix + digit for digit in "0123456789abcdef"} <= set(searched)


def test_where_a_first_page_ends_tells_how_many_pages_a_search_holds() -> None:
    def ending(client_id: str) -> list[Any]:
        return [{"clientId": client_id}]

    # A page of 1,000 from 100,000 uniform ids ends about 1% into the hex space.
    assert 90 < keycloak._pages_ahead(ending("apikey-028f1c"), "apikey-") < 110
    assert keycloak._pages_ahead(ending("apikey-0A8F1C"), "apikey-0") == 65536 / 0xA8F2
    assert keycloak._pages_ahead(ending("apikey-made-by-hand"), "apikey-") == 0  # not a key's
    assert keycloak._pages_ahead(ending("apikey-"), "apikey-") == 0  # nothing left to split by


# Crashes between steps


def _issue_crash(owner: User, sample: Api, point: str, arm: Callable[[str], None]) -> Any:
    arm(point)
    with pytest.raises(SimulatedCrash):
        issue(owner, sample, "key", justification="why")
    crash_points.armed.clear()
    return None


def scenario_issue_reserved(ctx: dict[str, Any]) -> None:
    _issue_crash(ctx["owner"], ctx["api"], "issue:reserved", ctx["arm"])
    run_reconcile()
    assert not ApiKey.objects.exists()


def scenario_issue_client_created(ctx: dict[str, Any]) -> None:
    _issue_crash(ctx["owner"], ctx["api"], "issue:client-created", ctx["arm"])
    run_reconcile()  # adopts the client: the key stays unfinished for its owner
    key = ApiKey.objects.get()
    assert key.status == "provisioning"
    assert key.keycloak_id
    revealed = lifecycle.finish_key(key, actor=ctx["owner"])  # the owner's retry
    assert request_token(key.client_id, revealed.secret).status_code == 200


def scenario_discard_client_deleted(ctx: dict[str, Any]) -> None:
    key = ApiKey.objects.create(
        owner=ctx["owner"],
        api=ctx["api"],
        name="half",
        expires_at=timezone.now() + timedelta(days=1),
    )
    keycloak.create_client(
        ctx["conn"], desired.key_client(key, now=timezone.now(), secret="kcak_z")
    )
    ctx["arm"]("discard:client-deleted")
    with pytest.raises(SimulatedCrash):
        lifecycle.discard_key(key)
    crash_points.armed.clear()
    run_reconcile()
    assert not ApiKey.objects.exists()


def scenario_rotate_secret_set(ctx: dict[str, Any]) -> None:
    revealed = issue(ctx["owner"], ctx["api"], "key", justification="why")
    ctx["arm"]("rotate:secret-set")
    with pytest.raises(SimulatedCrash):
        lifecycle.rotate_secret(revealed.key, actor=ctx["owner"])
    crash_points.armed.clear()
    run_reconcile()
    again = lifecycle.rotate_secret(revealed.key, actor=ctx["owner"])  # the owner's retry
    assert request_token(revealed.key.client_id, again.secret).status_code == 200


@dataclass(frozen=True)
class Ending:
    """A crash inside an action that ends or restores a key: what it is, and where it ends."""

    action: Callable[[dict[str, Any], ApiKey], object]
    final: str
    works: bool
    setup: Callable[[dict[str, Any], ApiKey], object] | None = None
    needs_approval: bool = False


ENDINGS = {
    "revoke:client-deleted": Ending(
        lambda ctx, k: lifecycle.revoke_key(k, actor=ctx["owner"]), "revoked", works=False
    ),
    "approve:client-enabled": Ending(
        lambda ctx, k: lifecycle.approve_key(k, actor=ctx["admin"]),
        "active",
        works=True,
        needs_approval=True,
    ),
    "reject:client-deleted": Ending(
        lambda ctx, k: lifecycle.reject_key(k, actor=ctx["admin"], reason="no"),
        "rejected",
        works=False,
        needs_approval=True,
    ),
    "suspend:client-disabled": Ending(
        lambda ctx, k: lifecycle.suspend_key(k, actor=ctx["admin"], reason="r"),
        "suspended",
        works=False,
    ),
    "reinstate:client-enabled": Ending(
        lambda ctx, k: lifecycle.reinstate_key(k, actor=ctx["admin"]),
        "active",
        works=True,
        setup=lambda ctx, k: lifecycle.suspend_key(k, actor=ctx["admin"], reason="r"),
    ),
    "expire:client-disabled": Ending(
        lambda ctx, k: lifecycle.expire_due_keys(),
        "expired",
        works=False,
        setup=lambda ctx, k: ApiKey.objects.filter(pk=k.pk).update(
            expires_at=timezone.now() - timedelta(minutes=1)
        ),
    ),
}


def scenario_ended(point: str) -> Callable[[dict[str, Any]], None]:
    """A crash at `point`, then reconcile, then the retry a person would make, if offered."""
    ending = ENDINGS[point]

    def run(ctx: dict[str, Any]) -> None:
        if ending.needs_approval:
            ctx["api"].requires_approval = True
            ctx["api"].save()
        revealed = issue(ctx["owner"], ctx["api"], "key", justification="why")
        if ending.setup:
            ending.setup(ctx, revealed.key)
        ctx["arm"](point)
        with pytest.raises(SimulatedCrash):
            ending.action(ctx, revealed.key)
        crash_points.armed.clear()
        run_reconcile()  # carries out a decision recorded before the crash
        key = ApiKey.objects.get(pk=revealed.key.pk)
        with contextlib.suppress(WrongState):
            ending.action(ctx, key)
        assert ApiKey.objects.get(pk=revealed.key.pk).status == ending.final
        code = request_token(revealed.key.client_id, revealed.secret).status_code
        assert code == (200 if ending.works else 401)

    return run


SCENARIOS = {
    "issue:reserved": scenario_issue_reserved,
    "issue:client-created": scenario_issue_client_created,
    "discard:client-deleted": scenario_discard_client_deleted,
    "rotate:secret-set": scenario_rotate_secret_set,
    **{point: scenario_ended(point) for point in ENDINGS},
}


def test_every_fault_point_has_a_crash_scenario() -> None:
    assert set(SCENARIOS) == set(FAULT_POINTS)
    assert len(FAULT_POINTS) == 10


@pytest.mark.parametrize("point", FAULT_POINTS)
def test_a_crash_at_each_step_boundary_converges_after_reconcile_and_retry(
    point: str,
    owner: User,
    admin_user: User,
    sample: Api,
    key_clients: Connection,
    armed: Callable[[str], None],
) -> None:
    ctx = {"owner": owner, "admin": admin_user, "api": sample, "conn": key_clients, "arm": armed}

    SCENARIOS[point](ctx)

    assert_in_agreement(key_clients)
    assert run_reconcile() == []


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("point", ["issue:reserved", "issue:client-created"])
def test_a_process_killed_while_issuing_leaves_nothing_behind_after_reconcile(
    point: str, sample: Api, key_clients: Connection
) -> None:
    owner = User.objects.create(username=f"killed-{point}", email="killed@example.com")
    script = (
        "import django; django.setup()\n"
        "from apikeys.models import Api, User\n"
        "from tests.factories import issue\n"
        f"issue(User.objects.get(pk={owner.pk}), Api.objects.get(slug='sample'),"
        " name='doomed', lifetime_days=9)\n"
    )
    env = {
        **os.environ,
        "PORTAL_FAULTS": f"{point}=exit",
        "DATABASE_URL": _database_url(),
        "DJANGO_SETTINGS_MODULE": "portal.settings",
    }
    died = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, timeout=60, check=False
    )
    assert died.returncode == 137, died.stderr.decode()[-2000:]

    run_reconcile()

    if point == "issue:client-created":  # the record was committed before; the client adopted
        key = ApiKey.objects.get()
        assert key.status == "provisioning"
        lifecycle.discard_key(key)  # or finish it; either way nothing is left over
    assert not ApiKey.objects.exists()
    assert key_clients_in_keycloak(key_clients) == []


def _database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
