"""Permissions within an API, on the real Keycloak: each a client scope the portal makes, a
default scope of the keys that hold it, in their tokens' `scope` claim; fewer on request
(the extension's `apikey-portal-permissions` executor), never more (Keycloak refuses)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse

from apikeys.keycloak import bootstrap, desired
from apikeys.keycloak import client as keycloak
from apikeys.keycloak.client import Connection, KeycloakUnavailable
from apikeys.models import (
    Api,
    ApiKey,
    AuditEntry,
    Permission,
    PermissionRequest,
    User,
    WebhookMessage,
    WrongState,
)
from apikeys.operations import lifecycle, permissions, webhooks
from apikeys.operations.reconcile import reconcile
from tests.accounts import force_login_with_second_factor
from tests.factories import issue, submit_key_form
from tests.test_restore import take_backup
from tests.tokens import claims, request_token

pytestmark = [pytest.mark.embedded, pytest.mark.usefixtures("key_clients")]

READ, WRITE = "orders:read", "orders:write"


def scope_of(made: lifecycle.Revealed, *, scope: str | None = None) -> set[str]:
    answer = request_token(made.key.client_id, made.secret, scope=scope)
    assert answer.status_code == 200, answer.text
    return set(claims(answer.json()["access_token"]).get("scope", "").split())


def bearer(made: lifecycle.Revealed) -> dict[str, str]:
    token = request_token(made.key.client_id, made.secret).json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


def test_a_read_only_key_reads_and_is_refused_writing(
    client: Client, owner: User, orders: dict[str, Permission]
) -> None:
    made = issue(owner, orders[READ].api, "reader")  # the API's defaults: read only

    assert made.key.status == ApiKey.Status.ACTIVE
    scope = scope_of(made)
    assert READ in scope
    assert WRITE not in scope
    assert client.get("/api/v1/sample/orders", headers=bearer(made)).status_code == 200
    order = {"item": "x"}
    refused = client.post(
        "/api/v1/sample/orders", order, content_type="application/json", headers=bearer(made)
    )
    assert refused.status_code == 403
    challenge = refused["WWW-Authenticate"]
    assert 'error="insufficient_scope"' in challenge
    assert f'scope="{WRITE}"' in challenge


def test_narrowing_takes_effect_on_the_next_token_and_is_audited(
    owner: User, orders: dict[str, Permission]
) -> None:
    made = issue(owner, orders[READ].api, "both", permissions=[READ], lifetime_days=5)
    assert READ in scope_of(made)

    outcome = permissions.set_key_permissions(made.key, [], actor=owner)

    assert outcome.removed == [READ]
    assert outcome.requested is None
    assert READ not in scope_of(made)
    entry = AuditEntry.objects.filter(key=made.key).latest("at")
    assert entry.action == AuditEntry.Action.PERMISSIONS_CHANGED
    assert entry.reason == "Removed orders:read. Now: none."


def test_widening_to_a_permission_that_needs_approval_waits_for_an_administrator(
    owner: User, admin_user: User, orders: dict[str, Permission]
) -> None:
    made = issue(owner, orders[READ].api, "grows")
    with pytest.raises(permissions.PermissionRefused, match="say why"):
        permissions.set_key_permissions(made.key, [READ, WRITE], actor=owner)

    outcome = permissions.set_key_permissions(
        made.key, [READ, WRITE], justification="We place orders now", actor=owner
    )

    assert outcome.requested is not None
    assert outcome.requested.names == [WRITE]
    assert WRITE not in scope_of(made)  # the key works meanwhile, with what it had
    assert READ in scope_of(made)
    with pytest.raises(permissions.PermissionRefused, match="already has a request waiting"):
        permissions.set_key_permissions(made.key, [READ, WRITE], justification="again", actor=owner)
    with pytest.raises(WrongState, match="your own request"):
        permissions.decide_request(outcome.requested, approve=True, actor=owner)

    permissions.decide_request(outcome.requested, approve=True, actor=admin_user)

    assert scope_of(made) >= {READ, WRITE}
    assert ApiKey.objects.get(pk=made.key.pk).permission_names == [READ, WRITE]


def test_a_refused_request_changes_nothing_and_says_why(
    owner: User, admin_user: User, orders: dict[str, Permission]
) -> None:
    made = issue(owner, orders[READ].api, "refused")
    asked = permissions.set_key_permissions(
        made.key, [READ, WRITE], justification="please", actor=owner
    ).requested
    assert asked is not None

    permissions.decide_request(asked, approve=False, actor=admin_user, reason="Not for tests")

    assert WRITE not in scope_of(made)
    entry = AuditEntry.objects.filter(key=made.key).latest("at")
    assert entry.action == AuditEntry.Action.PERMISSIONS_REFUSED
    assert entry.reason == "Refused orders:write: Not for tests"
    with pytest.raises(WrongState, match="already decided"):
        permissions.decide_request(asked, approve=True, actor=admin_user)


def test_a_new_key_asking_for_a_permission_that_needs_approval_waits_as_a_whole(
    owner: User, admin_user: User, orders: dict[str, Permission]
) -> None:
    api = orders[READ].api
    with pytest.raises(lifecycle.KeyNotIssued, match="orders:write needs an administrator"):
        issue(owner, api, "writer", permissions=[WRITE])

    made = issue(owner, api, "writer", permissions=[WRITE], justification="we sell")

    assert made.key.status == ApiKey.Status.PENDING
    assert request_token(made.key.client_id, made.secret).status_code != 200  # disabled
    lifecycle.approve_key(made.key, actor=admin_user)
    assert scope_of(made) >= {WRITE}


def test_a_partner_may_ask_for_fewer_and_never_gets_more(
    owner: User, admin_user: User, orders: dict[str, Permission]
) -> None:
    made = issue(owner, orders[READ].api, "all", permissions=[READ, WRITE], justification="j")
    lifecycle.approve_key(made.key, actor=admin_user)
    assert scope_of(made) >= {READ, WRITE}

    assert WRITE not in scope_of(made, scope=READ)
    assert READ in scope_of(made, scope=READ)
    assert not scope_of(made, scope=orders[READ].api.scope_name) & {READ, WRITE}

    reader = issue(owner, orders[READ].api, "reader only")
    more = request_token(reader.key.client_id, reader.secret, scope=f"{READ} {WRITE}")
    assert more.status_code == 400
    assert more.json()["error"] == "invalid_scope"
    assert more.json()["error_description"] == f"Invalid scopes: {READ} {WRITE}"


def test_an_unknown_permission_is_refused_with_the_ones_there_are(
    owner: User, orders: dict[str, Permission]
) -> None:
    with pytest.raises(lifecycle.KeyNotIssued, match=r"has no permission refunds:write\. Its perm"):
        issue(owner, orders[READ].api, "x", permissions=["refunds:write"])
    assert not ApiKey.objects.filter(owner=owner).exists()


@pytest.mark.parametrize(
    "name",
    [
        "orders",  # no action
        "Orders:Read",
        "orders:read write",
        "${jndi:ldap://x}:read",
        'a:b"}],"protocolMappers":[{"x":"y',
        "openid",
        "api-sample:x:y:z",
    ],
)
def test_permission_names_are_strict_and_nothing_reaches_keycloak(
    sample: Api, admin_user: User, key_clients: Connection, name: str
) -> None:
    with pytest.raises(ValidationError, match="resource and an action"):
        permissions.define_permission(sample, name=name, description="d", actor=admin_user)
    assert not Permission.objects.exists()
    assert keycloak.find_client_scope(key_clients, name) is None


def test_a_name_taken_in_the_realm_by_someone_else_is_refused(
    sample: Api, admin_user: User, key_clients: Connection
) -> None:
    theirs = {"name": "billing:export", "protocol": "openid-connect"}
    existing = keycloak.find_client_scope(key_clients, "billing:export")
    scope_id = existing["id"] if existing else keycloak.create_client_scope(key_clients, theirs)
    try:
        with pytest.raises(bootstrap.ScopeTaken):
            permissions.define_permission(
                sample, name="billing:export", description="d", actor=admin_user
            )
        assert not Permission.objects.exists()
    finally:
        keycloak.delete_client_scope(key_clients, scope_id)


def test_keys_that_exist_are_given_a_new_permission_when_the_admin_says_so(
    owner: User, sample: Api, admin_user: User
) -> None:
    made = issue(owner, sample, "old key")
    assert made.key.permission_names == []

    permissions.define_permission(
        sample, name=READ, description="Read", give_to_live_keys=True, actor=admin_user
    )

    assert ApiKey.objects.get(pk=made.key.pk).permission_names == [READ]
    assert READ in scope_of(made)


def test_a_change_of_permissions_is_sent_as_key_updated(
    owner: User, orders: dict[str, Permission]
) -> None:
    endpoint = webhooks.create_endpoint(owner, url="http://127.0.0.1:9/h", events=["key.updated"])
    made = issue(owner, orders[READ].api, "hooked")

    permissions.set_key_permissions(made.key, [], actor=owner)

    message = WebhookMessage.objects.get(endpoint=endpoint.endpoint, event_type="key.updated")
    assert message.data["key"]["permissions"] == []


def test_reconcile_takes_off_a_scope_added_by_hand_and_keeps_one_taken_off(
    owner: User, admin_user: User, orders: dict[str, Permission], key_clients: Connection
) -> None:
    made = issue(owner, orders[READ].api, "drift")
    client_uuid = made.key.keycloak_id
    write_id, read_id = orders[WRITE].scope_id, orders[READ].scope_id
    # An operator gives the key orders:write in the admin console: reconcile takes it back.
    scopes = keycloak.set_client_scope_of_client
    scopes(key_clients, client_uuid, "default", write_id, attached=True)
    assert WRITE in scope_of(made)

    report = reconcile()

    assert WRITE not in scope_of(made)
    assert any("drift in default scopes" in f.problem for f in report.findings)
    # An operator takes orders:read off: restrictive wins, it stays off and is reported.
    scopes(key_clients, client_uuid, "default", read_id, attached=False)

    report = reconcile()

    assert READ not in scope_of(made)
    kept = [f for f in report.findings if f.client_id == made.key.client_id]
    assert kept
    assert kept[0].problem == "permissions narrowed in Keycloak, outside the portal"
    assert ApiKey.objects.get(pk=made.key.pk).permission_names == []  # the record follows
    entry = AuditEntry.objects.filter(key=made.key).latest("at")
    assert entry.actor is None
    assert entry.reason.startswith("orders:read taken off its client in Keycloak")
    assert not [f for f in reconcile().findings if f.client_id == made.key.client_id]


def test_reconcile_restores_a_permission_scope_changed_by_hand(
    orders: dict[str, Permission], key_clients: Connection
) -> None:
    read = orders[READ]
    keycloak.update_client_scope(
        key_clients,
        read.scope_id,
        desired.permission_scope(read) | {"attributes": {"include.in.token.scope": "false"}},
    )

    report = reconcile()

    assert any(f.client_id == READ for f in report.findings)
    scope = keycloak.find_client_scope(key_clients, READ)
    assert scope is not None
    assert scope["attributes"]["include.in.token.scope"] == "true"
    assert scope["attributes"][desired.PERMISSION_ATTRIBUTE] == "true"


def test_the_create_form_gives_the_ticked_permissions_of_the_chosen_api_only(
    client: Client, owner: User, orders: dict[str, Permission]
) -> None:
    client.force_login(owner)
    page = client.get(reverse("new_key")).content.decode()
    assert 'value="sample/orders:read"' in page
    assert "orders:write — Place orders (needs approval)" in page

    submit_key_form(client, "ticked", permissions_given="True", permissions=["sample/orders:read"])
    submit_key_form(client, "none ticked", permissions_given="True")
    answer = submit_key_form(
        client, "writer", permissions_given="True", permissions=["sample/orders:write"]
    )

    assert "orders:write needs an administrator" in answer.content.decode()
    made = {k.name: k.permission_names for k in ApiKey.objects.filter(owner=owner)}
    assert made == {"ticked": [READ], "none ticked": []}


def test_the_key_page_narrows_at_once_and_asks_for_more(
    client: Client, owner: User, orders: dict[str, Permission]
) -> None:
    made = issue(owner, orders[READ].api, "paged")
    client.force_login(owner)
    url = reverse("set_permissions", args=[made.key.pk])

    refused = client.post(url, {"permissions": [READ, WRITE]}, follow=True)
    assert "say why the key needs them" in refused.content.decode()
    answer = client.post(
        url, {"permissions": [WRITE], "justification": "We sell"}, follow=True
    ).content.decode()

    assert "From the next token on, its permissions are: none." in answer
    assert "orders:write asked for: an administrator decides" in answer
    assert 'data-testid="permission-request"' in answer
    assert READ not in scope_of(made)
    client.post(reverse("withdraw_permission_request", args=[made.key.pk]))
    assert not PermissionRequest.objects.filter(decided_at__isnull=True).exists()


def test_an_admin_decides_requests_from_the_queue(
    client: Client, owner: User, admin_user: User, orders: dict[str, Permission]
) -> None:
    made = issue(owner, orders[READ].api, "queued")
    asked = permissions.set_key_permissions(
        made.key, [READ, WRITE], justification="Orders from the shop", actor=owner
    ).requested
    assert asked is not None
    force_login_with_second_factor(client, admin_user)
    queue = client.get(reverse("manage_approvals")).content.decode()
    assert "Orders from the shop" in queue
    assert "asks for orders:write" in queue

    refused = client.post(reverse("manage_refuse_permissions", args=[asked.pk]), follow=True)
    assert "Say why the permissions are refused" in refused.content.decode()
    client.post(reverse("manage_grant_permissions", args=[asked.pk]))

    assert WRITE in scope_of(made)
    listed = client.get(reverse("manage_keys"), {"permission": WRITE}).content.decode()
    assert made.key.client_id in listed


def test_an_admin_adds_a_permission_on_the_api_page(
    client: Client, sample: Api, admin_user: User, key_clients: Connection
) -> None:
    force_login_with_second_factor(client, admin_user)
    url = reverse("manage_permission_add", args=[sample.slug])

    bad = client.post(url, {"name": "Refunds", "description": "Give money back"})
    assert bad.status_code == 422
    assert "resource and an action" in bad.content.decode()
    assert keycloak.find_client_scope(key_clients, "Refunds") is None
    client.post(url, {"name": "refunds:write", "description": "Give money back", "default": ""})

    permission = Permission.objects.get(name="refunds:write")
    assert not permission.default
    scope = keycloak.find_client_scope(key_clients, "refunds:write")
    assert scope is not None
    assert scope["id"] == permission.scope_id
    assert (
        'data-testid="permission-refunds:write"'
        in client.get(reverse("manage_api_edit", args=[sample.slug])).content.decode()
    )


@pytest.mark.django_db(transaction=True)  # the backup must see what was committed
def test_a_key_rebuilt_after_a_restore_keeps_its_permissions(
    owner: User, orders: dict[str, Permission], tmp_path: Path
) -> None:
    put_back = take_backup(tmp_path / "backup")
    made = issue(owner, orders[READ].api, "after the backup", permissions=[READ])

    put_back()
    reconcile(grace=timedelta(0))

    assert ApiKey.objects.get(client_id=made.key.client_id).permission_names == [READ]
    assert READ in scope_of(made)
    assert reconcile(grace=timedelta(0)).findings == []


def test_a_pending_key_asks_for_what_needs_approval_like_any_other(
    owner: User, admin_user: User, orders: dict[str, Permission]
) -> None:
    """Its approver approves what it held when asked: more waits for a decision of its own."""
    made = issue(owner, orders[READ].api, "pending", permissions=[WRITE], justification="j")
    assert made.key.status == ApiKey.Status.PENDING

    outcome = permissions.set_key_permissions(
        made.key, [READ, WRITE], justification="and read", actor=owner
    )
    assert outcome.added == [READ]
    assert outcome.requested is None  # orders:write is held already: its key's approval
    permissions.set_key_permissions(made.key, [READ], actor=owner)
    asked = permissions.set_key_permissions(
        made.key, [READ, WRITE], justification="back", actor=owner
    ).requested

    assert asked is not None
    assert asked.names == [WRITE]


def test_keycloak_failing_midway_leaves_the_key_as_it_was(
    owner: User, orders: dict[str, Permission], monkeypatch: pytest.MonkeyPatch
) -> None:
    write = orders[WRITE]
    write.requires_approval = False
    write.save()
    made = issue(owner, orders[READ].api, "half", permissions=[READ])
    real = keycloak.set_client_scope_of_client

    def fails_to_attach(conn: Connection, *args: object, attached: bool) -> None:
        if attached and args[-1] == write.scope_id:
            raise KeycloakUnavailable("Keycloak is unreachable.", reached=False)
        real(conn, *args, attached=attached)  # type: ignore[arg-type]

    monkeypatch.setattr(keycloak, "set_client_scope_of_client", fails_to_attach)
    with pytest.raises(KeycloakUnavailable):
        permissions.set_key_permissions(made.key, [WRITE], actor=owner)  # read off, write on
    monkeypatch.undo()

    assert ApiKey.objects.get(pk=made.key.pk).permission_names == [READ]
    assert scope_of(made) & {READ, WRITE} == {READ}  # orders:read was put back
    assert not [f for f in reconcile().findings if f.client_id == made.key.client_id]


def test_a_request_ends_with_its_key_and_decisions_are_mailed_to_who_asked(
    owner: User, admin_user: User, orders: dict[str, Permission], mailoutbox: list[Any]
) -> None:
    made = issue(owner, orders[READ].api, "mailed")
    asked = permissions.set_key_permissions(
        made.key, [READ, WRITE], justification="j", actor=owner
    ).requested
    assert asked is not None
    permissions.decide_request(asked, approve=False, actor=admin_user, reason="Not now")
    refusal = mailoutbox[-1]
    assert refusal.to == [owner.email]
    assert refusal.subject == "Permissions refused for your API key “mailed”: orders:write"
    assert "Why: Not now" in str(refusal.body)

    again = permissions.set_key_permissions(
        made.key, [READ, WRITE], justification="j", actor=owner
    ).requested
    assert again is not None
    permissions.withdraw_request(again, actor=owner)
    entry = AuditEntry.objects.filter(key=made.key).latest("at")
    assert entry.action == AuditEntry.Action.PERMISSIONS_WITHDRAWN
    last = permissions.set_key_permissions(
        made.key, [READ, WRITE], justification="j", actor=owner
    ).requested
    assert last is not None

    lifecycle.revoke_key(made.key, actor=owner)

    last.refresh_from_db()
    assert last.decided_at is not None
    assert last.reason == "The key was revoked."
