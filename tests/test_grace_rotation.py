"""Rotating a secret with a grace period: both secrets work until it ends (real Keycloak 26.7.3,
client-secret-rotation feature and the portal's secret-rotation policy)."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from apikeys.credentials.secret_format import is_well_formed
from apikeys.keycloak import client as keycloak
from apikeys.keycloak.client import Connection
from apikeys.keycloak.key_clients import ROTATED_EXPIRY_ATTRIBUTE
from apikeys.models import Api, ApiKey, AuditEntry, User
from apikeys.operations import lifecycle
from apikeys.operations.reconcile import reconcile
from tests.factories import issue, secret_works

pytestmark = pytest.mark.usefixtures("key_clients")


@pytest.mark.embedded
def test_during_the_grace_both_secrets_work_and_after_it_only_the_new_one(
    owner: User, sample: Api, bootstrapped: Connection
) -> None:
    first = issue(owner, sample)

    second = lifecycle.rotate_secret(first.key, actor=owner, grace=timedelta(seconds=4))

    assert is_well_formed(second.secret)
    assert secret_works(first.key, first.secret)
    assert secret_works(first.key, second.secret)
    key = ApiKey.objects.get(pk=first.key.pk)
    assert key.previous_secret_until is not None
    assert key.in_grace
    report = reconcile()  # during the grace: nothing to do, nothing cut short
    assert [f for f in report.findings if f.client_id == key.client_id] == []
    assert secret_works(key, first.secret)
    time.sleep(max((key.previous_secret_until - timezone.now()).total_seconds(), 0) + 1.5)
    assert not secret_works(key, first.secret)
    assert secret_works(key, second.secret)


def test_the_grace_is_chosen_on_the_rotate_page_and_ended_early_from_the_key_page(
    owner: User, sample: Api, client: Client
) -> None:
    first = issue(owner, sample)
    client.force_login(owner)
    form = client.get(reverse("rotate_key", args=[first.key.pk])).content.decode()
    assert "Keep the old secret working for" in form
    assert "7 days" in form
    assert "14 days" not in form  # the sample API allows 168 hours

    rotated = client.post(reverse("rotate_key", args=[first.key.pk]), {"grace_hours": "24"})

    page = rotated.content.decode()
    assert "The old secret keeps working until" in page
    second = page.split('data-testid="client-secret">')[1].split("<")[0]
    assert secret_works(first.key, first.secret)
    assert secret_works(first.key, second)
    detail = client.get(reverse("key_detail", args=[first.key.pk])).content.decode()
    assert "Still works until" in detail
    assert "End it now" in detail

    ended = client.post(reverse("end_grace", args=[first.key.pk]), follow=True)

    assert "The previous secret stopped working" in ended.content.decode()
    assert not secret_works(first.key, first.secret)
    assert secret_works(first.key, second)
    assert AuditEntry.objects.filter(key=first.key, action=AuditEntry.Action.GRACE_ENDED).exists()


def test_a_grace_longer_than_the_api_allows_is_refused_and_nothing_changes(
    owner: User, sample: Api, client: Client
) -> None:
    first = issue(owner, sample)
    client.force_login(owner)

    answer = client.post(reverse("rotate_key", args=[first.key.pk]), {"grace_hours": "720"})

    assert answer.status_code == 200
    assert "Select a valid choice" in answer.content.decode()
    assert secret_works(first.key, first.secret)
    with pytest.raises(ValueError, match="at most 168 hours"):
        lifecycle.rotate_secret(first.key, actor=owner, grace=timedelta(hours=169))
    assert secret_works(first.key, first.secret)


def test_rotating_without_grace_also_stops_a_secret_still_in_an_earlier_grace(
    owner: User, sample: Api
) -> None:
    first = issue(owner, sample)
    second = lifecycle.rotate_secret(first.key, actor=owner, grace=timedelta(hours=1))

    third = lifecycle.rotate_secret(first.key, actor=owner)

    assert not secret_works(first.key, first.secret)
    assert not secret_works(first.key, second.secret)
    assert secret_works(first.key, third.secret)
    assert ApiKey.objects.get(pk=first.key.pk).previous_secret_until is None


def test_reconcile_ends_a_previous_secret_keycloak_still_takes_after_the_record_ended_it(
    owner: User, sample: Api, bootstrapped: Connection
) -> None:
    first = issue(owner, sample)
    second = lifecycle.rotate_secret(first.key, actor=owner, grace=timedelta(hours=1))
    # A crash between Keycloak and the record of "end it now", played out: the record says
    # ended, Keycloak still takes the old secret.
    ApiKey.objects.filter(pk=first.key.pk).update(previous_secret_until=None)
    assert secret_works(first.key, first.secret)

    report = reconcile()

    [finding] = [f for f in report.findings if f.client_id == first.key.client_id]
    assert finding.done
    assert not secret_works(first.key, first.secret)
    assert secret_works(first.key, second.secret)


def test_reconcile_shortens_a_grace_keycloak_holds_longer_than_recorded(
    owner: User, sample: Api, bootstrapped: Connection
) -> None:
    first = issue(owner, sample)
    lifecycle.rotate_secret(first.key, actor=owner, grace=timedelta(hours=1))
    later = str(int((timezone.now() + timedelta(days=30)).timestamp()))
    change: dict[str, Any] = {"attributes": {ROTATED_EXPIRY_ATTRIBUTE: later}}
    keycloak.update_client(bootstrapped, first.key.keycloak_id, change)

    reconcile()

    key = ApiKey.objects.get(pk=first.key.pk)
    held = keycloak.get_key_client(bootstrapped, key.keycloak_id).rotated_secret_until
    assert key.previous_secret_until is not None
    assert held == int(key.previous_secret_until.timestamp())
    assert secret_works(key, first.secret)  # still within the hour the owner chose


def test_the_chosen_grace_is_recorded_in_keycloak_and_audited(
    owner: User, sample: Api, bootstrapped: Connection
) -> None:
    first = issue(owner, sample)
    key = lifecycle.rotate_secret(first.key, actor=owner, grace=timedelta(seconds=90)).key

    assert key.previous_secret_until is not None
    left = (key.previous_secret_until - timezone.now()).total_seconds()
    assert 80 < left <= 90
    held = keycloak.get_key_client(bootstrapped, key.keycloak_id).rotated_secret_until
    assert held == int(key.previous_secret_until.timestamp())
    entry = AuditEntry.objects.filter(key=key, action=AuditEntry.Action.ROTATED).first()
    assert entry is not None
    assert "The previous secret works until" in entry.reason


def test_ending_early_with_keycloak_down_records_the_end_and_reconcile_stops_the_secret(
    owner: User, sample: Api, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = issue(owner, sample)
    second = lifecycle.rotate_secret(first.key, actor=owner, grace=timedelta(hours=1))
    real = keycloak.delete_rotated_secret

    def unreachable(conn: Connection, client_uuid: str) -> None:
        raise keycloak.KeycloakUnavailable("read timed out (injected)")

    monkeypatch.setattr(keycloak, "delete_rotated_secret", unreachable)
    client.force_login(owner)

    answer = client.post(reverse("end_grace", args=[first.key.pk]), follow=True)

    assert "Keycloak could not be told yet" in answer.content.decode()
    key = ApiKey.objects.get(pk=first.key.pk)
    assert key.previous_secret_until is None  # the record says it must not work
    assert AuditEntry.objects.filter(key=key, action=AuditEntry.Action.GRACE_ENDED).exists()
    assert secret_works(key, first.secret)  # Keycloak was not told
    monkeypatch.setattr(keycloak, "delete_rotated_secret", real)

    reconcile()

    assert not secret_works(key, first.secret)
    assert secret_works(key, second.secret)
    assert AuditEntry.objects.filter(key=key, action=AuditEntry.Action.REPAIRED).exists()


def test_reconcile_records_the_end_of_a_grace_keycloak_no_longer_holds(
    owner: User, sample: Api, bootstrapped: Connection
) -> None:
    first = issue(owner, sample)
    lifecycle.rotate_secret(first.key, actor=owner, grace=timedelta(hours=1))
    keycloak.delete_rotated_secret(bootstrapped, first.key.keycloak_id)  # by an operator

    report = reconcile()

    assert any(f.client_id == first.key.client_id and f.done for f in report.findings)
    assert ApiKey.objects.get(pk=first.key.pk).previous_secret_until is None
    assert not secret_works(first.key, first.secret)
