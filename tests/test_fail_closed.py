"""When something fails halfway, a key ends up less usable, never more (real Keycloak).

Where a failure cannot be had from the real server on demand (one client's update failing in
the middle of a run), the gateway function is wrapped to raise it for that client only.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.core import mail
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from apikeys import crash_points
from apikeys.keycloak import client as keycloak
from apikeys.keycloak.client import Connection, KeycloakUnavailable
from apikeys.models import Api, ApiKey, AuditEntry, JobState, User, WrongState
from apikeys.operations import lifecycle
from apikeys.operations.reconcile import reconcile
from tests.accounts import KeycloakUser, force_login_with_second_factor
from tests.factories import issue, portal_user, works
from tests.tokens import request_token

pytestmark = [pytest.mark.embedded, pytest.mark.usefixtures("key_clients")]


def whoami(client: Client, revealed: lifecycle.Revealed) -> int:
    token = request_token(revealed.key.client_id, revealed.secret).json()["access_token"]
    response = client.get(reverse("whoami"), headers={"Authorization": f"Bearer {token}"})
    return int(response.status_code)


def failing_for(monkeypatch: pytest.MonkeyPatch, client_uuid: str) -> None:
    """Keycloak times out on updates of one client (injected); every other call is real."""
    real = keycloak.update_client

    def update(conn: Connection, uuid_: str, rep: dict[str, Any]) -> None:
        if uuid_ == client_uuid:
            raise KeycloakUnavailable("read timed out (injected)")
        real(conn, uuid_, rep)

    monkeypatch.setattr(keycloak, "update_client", update)


# 1. Offboarding never fails open


def test_one_users_failure_does_not_undo_another_users_offboarding(
    make_keycloak_user: Callable[..., KeycloakUser],
    bootstrapped: Connection,
    sample: Api,
    client: Client,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stuck, leaving = (
        portal_user(make_keycloak_user(), first_name="Pat"),
        portal_user(make_keycloak_user(), first_name="Pat"),
    )
    stuck_key, leaving_key = issue(stuck, sample), issue(leaving, sample)
    call_command("sync_users")  # start from now
    before = JobState.objects.get(name="user_sync").watermark
    failing_for(monkeypatch, stuck_key.key.keycloak_id)
    bootstrapped.admin.update_user(stuck.username, {"enabled": False})
    bootstrapped.admin.update_user(leaving.username, {"enabled": False})

    with pytest.raises(CommandError, match="could not be applied"):
        call_command("sync_users")

    assert not works(leaving_key)  # applied, and not rolled back by the other's failure
    assert ApiKey.objects.get(owner=leaving).status == ApiKey.Status.SUSPENDED
    assert not User.objects.get(pk=stuck.pk).is_active  # committed first
    assert ApiKey.objects.get(owner=stuck).status == ApiKey.Status.SUSPENDING
    assert whoami(client, stuck_key) == 401  # refused by strict APIs already
    assert before < JobState.objects.get(name="user_sync").watermark  # moved up to the failure

    monkeypatch.undo()
    call_command("sync_users")  # the next run finishes it

    assert ApiKey.objects.get(owner=stuck).status == ApiKey.Status.SUSPENDED
    assert not works(stuck_key)


def test_a_key_whose_client_is_already_gone_does_not_stop_offboarding(
    make_keycloak_user: Callable[..., KeycloakUser], bootstrapped: Connection, sample: Api
) -> None:
    owner = portal_user(make_keycloak_user(), first_name="Pat")
    gone, other = issue(owner, sample, "gone"), issue(owner, sample, "other")
    keycloak.delete_client(bootstrapped, gone.key.keycloak_id)  # behind the portal's back
    call_command("sync_users")
    bootstrapped.admin.update_user(owner.username, {"enabled": False})

    call_command("sync_users")

    assert set(ApiKey.objects.values_list("status", flat=True)) == {ApiKey.Status.SUSPENDED}
    assert not works(other)
    entry = AuditEntry.objects.get(about_user=owner, action="user_off")
    assert "disabled in Keycloak" in entry.reason


def test_reconcile_never_enables_the_key_of_a_disabled_owner(
    owner: User, sample: Api, client: Client
) -> None:
    revealed = issue(owner, sample)
    User.objects.filter(pk=owner.pk).update(is_active=False)  # deactivated; its keys not yet

    assert whoami(client, revealed) == 401  # strict checks refuse at once
    reconcile(grace=timedelta(0))

    assert not works(revealed)
    with pytest.raises(WrongState, match="owner"):
        lifecycle.reinstate_key(
            lifecycle.suspend_key(revealed.key, actor=None, reason="x"), actor=None
        )


# 2. The restrictive action wins


def test_a_client_disabled_in_keycloak_becomes_an_audited_suspension(
    owner: User, sample: Api, key_clients: Connection
) -> None:
    revealed = issue(owner, sample)
    keycloak.update_client(key_clients, revealed.key.keycloak_id, {"enabled": False})

    reconcile(grace=timedelta(0))

    key = ApiKey.objects.get()
    assert key.status == ApiKey.Status.SUSPENDED
    assert "disabled in Keycloak" in key.status_reason
    assert AuditEntry.objects.filter(key=key, action="suspended", actor=None).exists()
    assert not works(revealed)
    assert reconcile(grace=timedelta(0)).findings == []  # and it stays so


@pytest.mark.parametrize(
    ("point", "act", "final"),
    [
        ("revoke:client-deleted", lifecycle.revoke_key, ApiKey.Status.REVOKED),
        ("suspend:client-disabled", lifecycle.suspend_key, ApiKey.Status.SUSPENDED),
    ],
)
def test_an_admin_action_that_dies_halfway_gives_the_owner_no_working_key_back(
    owner: User,
    admin_user: User,
    sample: Api,
    point: str,
    act: Callable[..., ApiKey],
    final: str,
) -> None:
    revealed = issue(owner, sample)
    crash_points.armed[point] = "raise"
    try:
        with pytest.raises(crash_points.SimulatedCrash):
            act(revealed.key, actor=admin_user, reason="Leaked in a public repository")
    finally:
        crash_points.armed.clear()

    with pytest.raises(WrongState):  # the owner's Rotate would have made a working client
        lifecycle.rotate_secret(ApiKey.objects.get(), actor=owner)
    reconcile(grace=timedelta(0))

    assert ApiKey.objects.get().status == final
    assert not works(revealed)
    assert AuditEntry.objects.get(action=final).actor == admin_user


# 7. Keycloak itself refuses a key past its expiry


def test_keycloak_refuses_a_key_past_its_expiry_before_the_job_runs(
    owner: User, sample: Api
) -> None:
    revealed = issue(owner, sample)
    ApiKey.objects.filter(pk=revealed.key.pk).update(
        expires_at=timezone.now() + timedelta(seconds=3)
    )
    reconcile(grace=timedelta(0))  # tells Keycloak the new expiry
    assert works(revealed)

    time.sleep(4)

    assert not works(revealed)
    assert ApiKey.objects.get().status == ApiKey.Status.ACTIVE  # the expiry job has not run


def test_rotating_keeps_the_expiry_in_keycloak(
    owner: User, sample: Api, key_clients: Connection
) -> None:
    rotated = lifecycle.rotate_secret(issue(owner, sample).key, actor=owner)

    client = keycloak.get_client(key_clients, rotated.key.keycloak_id)

    expiry = int(client["attributes"]["client.secret.expiration.time"])
    assert expiry == int(ApiKey.objects.get().expires_at.timestamp())


# 8. Customers never see administrators' addresses; exports are defused


def test_an_owner_sees_an_administrator_not_their_address(
    client: Client, owner: User, admin_user: User, sample: Api
) -> None:
    key = issue(owner, sample).key
    admin_user.email = '=HYPERLINK("http://evil")@example.com'
    admin_user.save()
    lifecycle.suspend_key(key, actor=admin_user, ip_address="203.0.113.9", reason="Checking")
    client.force_login(owner)

    pages = [
        client.get(reverse(name, args=args)).content.decode()
        for name, args in (("key_detail", [key.pk]), ("activity", []))
    ]
    exported = client.get(reverse("activity"), {"format": "csv"}).getvalue()

    for text in [*pages, exported.decode()]:
        assert "an administrator" in text
        assert "203.0.113.9" not in text
        assert "HYPERLINK" not in text
    admin = Client()
    force_login_with_second_factor(admin, admin_user)
    audit = admin.get(reverse("manage_audit"), {"format": "csv"}).getvalue().decode()
    rows = list(csv.reader(io.StringIO(audit)))
    assert any(row[1].startswith("'=HYPERLINK") and row[5] == "203.0.113.9" for row in rows)


# 9. Small ones


def test_a_bad_forwarded_address_does_not_break_the_audit_after_keycloak_acted(
    client: Client, owner: User, sample: Api, settings: Any
) -> None:
    revealed = issue(owner, sample)
    settings.TRUSTED_PROXIES = 1
    client.force_login(owner)

    client.post(reverse("revoke_key", args=[revealed.key.pk]), HTTP_X_FORWARDED_FOR="nonsense")

    assert ApiKey.objects.get().status == ApiKey.Status.REVOKED
    assert AuditEntry.objects.get(action="revoked").ip_address == "127.0.0.1"


def test_reinstate_refuses_a_note_it_cannot_keep(
    client: Client, owner: User, admin_user: User, sample: Api
) -> None:
    key = lifecycle.suspend_key(issue(owner, sample).key, actor=admin_user, reason="x")
    force_login_with_second_factor(client, admin_user)

    response = client.post(
        reverse("manage_reinstate", args=[key.pk]), {"reason": "y" * 1001}, follow=True
    )

    assert "The note was not accepted" in response.content.decode()
    assert ApiKey.objects.get().status == ApiKey.Status.SUSPENDED


def test_an_admin_cannot_approve_their_own_request(admin_user: User, sample: Api) -> None:
    sample.requires_approval = True
    sample.save()
    key = issue(admin_user, sample, name="mine", lifetime_days=9, justification="for me").key

    with pytest.raises(WrongState, match="your own request"):
        lifecycle.approve_key(key, actor=admin_user)


def test_finishing_a_key_of_a_retired_api_is_refused(owner: User, sample: Api) -> None:
    key = ApiKey.objects.create(owner=owner, api=sample, name="half", expires_at=timezone.now())
    sample.retired_at = timezone.now()
    sample.save()

    with pytest.raises(WrongState, match="retired"):
        lifecycle.finish_key(key, actor=owner)


def test_discards_and_repairs_are_audited(
    owner: User, sample: Api, key_clients: Connection
) -> None:
    half = ApiKey.objects.create(owner=owner, api=sample, name="half", expires_at=timezone.now())
    lifecycle.discard_key(half, actor=owner, ip_address="192.0.2.1")
    revealed = issue(owner, sample)
    keycloak.update_client(key_clients, revealed.key.keycloak_id, {"fullScopeAllowed": True})

    reconcile(grace=timedelta(0))

    discarded = AuditEntry.objects.get(action="discarded")
    assert (discarded.client_id, discarded.about_user) == (half.client_id, owner)
    repaired = AuditEntry.objects.get(action="repaired")
    assert "flags" in repaired.reason
    assert {e.action for e in AuditEntry.objects.of_owner(owner)} >= {"discarded", "repaired"}


# 6. The portal owns the API scopes


def test_reconcile_removes_what_was_added_to_an_api_scope(
    sample: Api, key_clients: Connection
) -> None:
    scope = keycloak.find_client_scope(key_clients, "api-sample")
    assert scope is not None
    keycloak.add_mapper(
        key_clients,
        f"/client-scopes/{scope['id']}",
        {
            "name": "widened",
            "protocol": "openid-connect",
            "protocolMapper": "oidc-audience-mapper",
            "config": {"included.custom.audience": "billing-api", "access.token.claim": "true"},
        },
    )

    report = reconcile(grace=timedelta(0))

    assert [f.problem for f in report.findings] == ["drift in protocol mappers"]
    mappers = keycloak.find_client_scope(key_clients, "api-sample")["protocolMappers"]  # type: ignore[index]
    assert [m["name"] for m in mappers] == ["audience"]
    assert AuditEntry.objects.filter(api=sample, action="repaired").exists()


def test_a_new_api_does_not_take_over_a_scope_the_portal_did_not_make(
    client: Client, admin_user: User, key_clients: Connection
) -> None:
    foreign_id = keycloak.create_client_scope(
        key_clients, {"name": "api-ledger", "protocol": "openid-connect"}
    )
    force_login_with_second_factor(client, admin_user)
    try:
        response = client.post(
            reverse("manage_api_new"),
            {
                "name": "Ledger",
                "slug": "ledger",
                "audience": "ledger-api",
                "max_key_lifetime_days": "30",
                "access_token_lifespan": "300",
            },
        )
    finally:
        keycloak.delete_client_scope(key_clients, foreign_id)

    assert "the portal did not make" in response.content.decode()
    assert not Api.objects.filter(slug="ledger").exists()


# Found in review: the stronger decision wins, and nothing an operator removed comes back


def test_revoking_a_key_being_suspended_revokes_it(
    owner: User, admin_user: User, sample: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    revealed = issue(owner, sample)
    failing_for(monkeypatch, revealed.key.keycloak_id)
    with pytest.raises(KeycloakUnavailable):
        lifecycle.suspend_key(revealed.key, actor=admin_user, reason="looking into it")
    monkeypatch.undo()

    lifecycle.revoke_key(ApiKey.objects.get(), actor=admin_user, reason="leaked")

    assert ApiKey.objects.get().status == ApiKey.Status.REVOKED
    assert AuditEntry.objects.filter(action="revoked", actor=admin_user).exists()


def test_rotating_before_reconcile_does_not_revive_a_client_an_operator_deleted(
    owner: User, sample: Api, key_clients: Connection
) -> None:
    revealed = issue(owner, sample)
    keycloak.delete_client(key_clients, revealed.key.keycloak_id)

    rotated = lifecycle.rotate_secret(ApiKey.objects.get(), actor=owner)

    assert request_token(rotated.key.client_id, rotated.secret).status_code == 401
    assert ApiKey.objects.get().status == ApiKey.Status.SUSPENDED
    assert AuditEntry.objects.filter(action="suspended", actor=None).exists()


def test_enabling_the_owner_again_does_not_undo_an_operators_disable(
    make_keycloak_user: Callable[..., KeycloakUser], bootstrapped: Connection, sample: Api
) -> None:
    owner = portal_user(make_keycloak_user(), first_name="Pat")
    revealed = issue(owner, sample)
    call_command("sync_users")
    keycloak.update_client(bootstrapped, revealed.key.keycloak_id, {"enabled": False})
    bootstrapped.admin.update_user(owner.username, {"enabled": False})
    call_command("sync_users")

    bootstrapped.admin.update_user(owner.username, {"enabled": True})
    call_command("sync_users")

    assert User.objects.get(pk=owner.pk).is_active
    assert ApiKey.objects.get().status == ApiKey.Status.SUSPENDED
    assert not works(revealed)


def test_a_key_the_scan_missed_is_not_taken_for_deleted(
    owner: User, sample: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    revealed = issue(owner, sample)
    real = keycloak.key_clients
    monkeypatch.setattr(  # pages shifted under the scan: the key's client was not listed
        keycloak, "key_clients", lambda *a, **k: ([] for _ in real(*a, **k))
    )

    reconcile(grace=timedelta(0))

    assert ApiKey.objects.get().status == ApiKey.Status.ACTIVE
    assert works(revealed)


def test_a_rejection_completed_by_reconcile_still_tells_the_requester(
    owner: User, admin_user: User, sample: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    sample.requires_approval = True
    sample.save()
    key = issue(owner, sample, name="ask", lifetime_days=9, justification="why").key
    failing_for(monkeypatch, key.keycloak_id)
    real_delete = keycloak.delete_client
    monkeypatch.setattr(
        keycloak,
        "delete_client",
        lambda conn, uuid_: (_ for _ in ()).throw(KeycloakUnavailable("down (injected)")),
    )
    with pytest.raises(KeycloakUnavailable):
        lifecycle.reject_key(key, actor=admin_user, reason="Not for this use.")
    monkeypatch.setattr(keycloak, "delete_client", real_delete)
    mail.outbox.clear()

    reconcile(grace=timedelta(0))

    assert ApiKey.objects.get().status == ApiKey.Status.REJECTED
    (sent,) = mail.outbox
    assert "Not for this use." in sent.body
