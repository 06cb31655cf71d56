"""What an attacker's review of the portal tried, each refused (issue "Hardening", item 4).

Each test failed on the code before its fix. The review's other findings, and those judged not
to be defects, are in docs/security.md.
"""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.test import Client, RequestFactory
from django.urls import reverse
from django.utils import timezone

from apikeys import limits
from apikeys.api.auth import _portal_user
from apikeys.keycloak import client as keycloak
from apikeys.keycloak import desired
from apikeys.keycloak.client import Connection
from apikeys.models import Api, ApiKey, AuditEntry, ExpiryReminder, User, WrongState
from apikeys.operations import accounts, catalog, dormancy, jobs, lifecycle
from apikeys.operations.reconcile import describe, reconcile
from portal.outbound import is_public
from tests.factories import issue, record_key, works
from tests.oidc import cli_tokens
from tests.tokens import claims as token_claims

pytestmark = [pytest.mark.embedded, pytest.mark.usefixtures("key_clients")]


# POST /keycloak/events


@pytest.mark.parametrize(
    ("body", "signature"),
    [(b'{"events": []}', "garbage"), (b"\xff\xfe", "v1,AAAA")],
    ids=["a signature without its version", "a body that is not UTF-8"],
)
def test_a_malformed_push_of_events_is_refused_not_an_error(
    client: Client, body: bytes, signature: str
) -> None:
    headers = {
        "webhook-id": "msg_x",
        "webhook-timestamp": str(int(time.time())),
        "webhook-signature": signature,
    }

    answer = client.post(
        reverse("keycloak_events"), body, content_type="application/json", headers=headers
    )

    assert answer.status_code == 401


# The JSON API's sign-in


@pytest.mark.django_db
def test_an_unverified_email_in_a_token_does_not_replace_the_persons_address() -> None:
    person = User.objects.create(username=str(uuid.uuid4()), email="pat@customer.example")

    _portal_user({"sub": person.username, "email": "ceo@victim.example", "email_verified": False})

    assert User.objects.get(pk=person.pk).email == "pat@customer.example"


# Rate limits and outbound addresses


def test_addresses_of_one_ipv6_64_count_as_one_for_the_limits() -> None:
    one, other = RequestFactory().get("/"), RequestFactory().get("/")
    one.META["REMOTE_ADDR"], other.META["REMOTE_ADDR"] = "2001:db8::1", "2001:db8::b"

    assert limits._by_address("register", one) == limits._by_address("register", other)


@pytest.mark.parametrize("address", ["224.0.0.1", "ff0e::1", "fec0::1"])
def test_multicast_and_site_local_addresses_are_not_public(address: str) -> None:
    assert not is_public(address)


# A second deployment's records


@pytest.mark.django_db(transaction=True)
def test_a_catalog_change_and_reminders_leave_another_deployments_keys_alone(
    owner: User, admin_user: User, sample: Api, settings: Any
) -> None:
    theirs = record_key(
        owner,
        sample,
        instance="other-portal",
        keycloak_id=str(uuid.uuid4()),
        expires_at=timezone.now() + timedelta(days=2),
    )
    settings.EXPIRY_REMINDER_DAYS = [7]

    sample.access_token_lifespan = 120
    change = catalog.save_api(sample, actor=admin_user)
    jobs.send_expiry_reminders()

    assert theirs.client_id not in change.keys_not_updated  # never sent to Keycloak
    assert not ExpiryReminder.objects.filter(key=theirs).exists()


# Restores: whose client is it?


def test_copied_marks_naming_another_owner_are_not_adopted(
    owner: User, other_user: User, sample: Api, key_clients: Connection
) -> None:
    made = issue(owner, sample)
    forged = ApiKey(owner=other_user, api=sample, name="x", expires_at=timezone.now())
    forged.client_id = f"{ApiKey.CLIENT_ID_PREFIX}{forged.pk.hex}"
    representation = desired.key_client(forged, now=timezone.now(), secret="kcak_forged")
    sealed = keycloak.get_client(key_clients, made.key.keycloak_id)["attributes"]
    representation["attributes"]["portal.seal"] = sealed["portal.seal"]  # a seal, copied
    keycloak.create_client(keycloak.portal_connection(), representation)

    report = reconcile(grace=timedelta(0))

    assert [f.action for f in report.findings] == ["quarantine it (disable)"], list(
        describe(report)
    )
    assert "seal" in report.findings[0].problem
    assert not ApiKey.objects.filter(client_id=forged.client_id).exists()


def test_a_client_whose_id_is_not_a_uuid_is_left_alone(
    owner: User, sample: Api, key_clients: Connection
) -> None:
    key = ApiKey(owner=owner, api=sample, name="x", expires_at=timezone.now())
    key.client_id = f"{ApiKey.CLIENT_ID_PREFIX}{key.pk.hex}"
    representation = desired.key_client(key, now=timezone.now(), secret="kcak_wild")
    representation["id"] = "________-____-____-____-____________"  # a LIKE pattern, as an id
    keycloak.create_client(key_clients, representation)

    report = reconcile(grace=timedelta(0))

    assert [f.action for f in report.findings] == ["left alone (not made by the portal)"]
    assert not ApiKey.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_an_unfinished_record_of_a_client_partners_use_is_finished_not_discarded(
    owner: User, sample: Api
) -> None:
    made = issue(owner, sample)
    assert works(made)  # a partner got a token: Keycloak stored the login
    ApiKey.objects.filter(pk=made.key.pk).update(  # the database went back to that instant
        status=ApiKey.Status.UNFINISHED,
        keycloak_id="",
        created_at=timezone.now() - timedelta(days=2),
    )
    made.key.fingerprints.all().delete()

    reconcile(grace=timedelta(0))

    assert ApiKey.objects.get(pk=made.key.pk).status == ApiKey.Status.ACTIVE
    assert works(made)


# Who lifts a suspension


def test_an_administrators_suspension_of_a_dormant_key_is_theirs_to_lift(
    owner: User, sample: Api, admin_user: User
) -> None:
    made = issue(owner, sample)
    lifecycle.suspend_key(made.key, actor=None, reason=dormancy.SUSPENDED_REASON.format(days=90))

    lifecycle.suspend_key(made.key, actor=admin_user, reason="Abuse reported by a partner.")

    key = ApiKey.objects.get(pk=made.key.pk)
    with pytest.raises(WrongState):
        dormancy.reinstate_by_owner(key, owner=owner)
    assert AuditEntry.objects.filter(key=key, action="suspended", actor=admin_user).exists()
    assert not works(made)


def test_an_administrators_decision_during_an_automatic_one_is_recorded(
    owner: User, sample: Api, admin_user: User
) -> None:
    made = issue(owner, sample)
    lifecycle.decide(  # the dormancy job's decision, not yet carried out (Keycloak down)
        made.key,
        action="suspend",
        actor=None,
        ip_address=None,
        reason=dormancy.SUSPENDED_REASON.format(days=90),
    )

    lifecycle.suspend_key(made.key, actor=admin_user, reason="Abuse reported by a partner.")

    key = ApiKey.objects.get(pk=made.key.pk)
    assert key.status_reason == "Abuse reported by a partner."
    assert AuditEntry.objects.filter(key=key, action="suspended", actor=admin_user).exists()
    assert not dormancy.is_dormant_suspension(key)


# Admin rights from events out of order


@pytest.mark.django_db
def test_an_older_admin_grant_arriving_late_does_not_undo_a_removal() -> None:
    person = User.objects.create(username=str(uuid.uuid4()), email="ex-admin@example.com")
    removed_at = int(time.time() * 1000)

    accounts.apply_change(person.username, "admin removed", removed_at)
    accounts.apply_change(person.username, "admin granted", removed_at - 5_000)

    assert not User.objects.get(pk=person.pk).is_staff


# Admin rights from a forged claim


@pytest.fixture
def forged_admin_claim(key_clients: Connection) -> Any:
    """A mapper someone who manages clients added to the CLI's client: every token of it
    claims the portal-admin role, whoever signs in."""
    cli = keycloak.find_client(key_clients, settings.CLI_CLIENT_ID)
    assert cli is not None
    path = f"/clients/{cli['id']}"
    keycloak.add_mapper(
        key_clients,
        path,
        {
            "name": "forged-admin",
            "protocol": "openid-connect",
            "protocolMapper": "oidc-hardcoded-claim-mapper",
            "config": {
                "claim.name": settings.OIDC_ROLES_CLAIM,
                "claim.value": '["portal-admin"]',
                "jsonType.label": "JSON",
                "access.token.claim": "true",
                "id.token.claim": "true",
            },
        },
    )
    yield
    mappers = keycloak._request(key_clients, "GET", f"{path}/protocol-mappers/models")
    for mapper in mappers:
        if mapper["name"] == "forged-admin":
            keycloak.delete_mapper(key_clients, path, mapper["id"])


@pytest.mark.usefixtures("forged_admin_claim")
@pytest.mark.django_db
def test_a_claimed_admin_role_keycloak_does_not_map_opens_no_admin_route(
    client: Client, make_keycloak_user: Any
) -> None:
    account = make_keycloak_user()
    token = cli_tokens(account.email, account.password)["access_token"]
    assert "portal-admin" in token_claims(token)[settings.OIDC_ROLES_CLAIM]

    answer = client.get("/api/v1/admin/keys", headers={"Authorization": f"Bearer {token}"})

    assert answer.status_code == 403
    assert not User.objects.get(username=account.id).is_staff
