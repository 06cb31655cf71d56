"""Revocation that reaches every API: each API's feed of keys no longer in good standing,
read every few seconds by its resource servers, which then make no call per request."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
import requests
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from apikeys.credentials import bearer as bearer_tokens
from apikeys.credentials import revocations
from apikeys.credentials.bearer import RevocationList
from apikeys.credentials.challenge import StandingUnknown
from apikeys.models import Api, User
from apikeys.operations import lifecycle, permissions
from tests.factories import issue, record_key
from tests.tokens import request_token

pytestmark = [pytest.mark.embedded]

TARGET = 5.0


def read_feed(client: Client, token: str) -> Any:
    return client.get(reverse("revocation_feed"), HTTP_AUTHORIZATION=f"Bearer {token}")


def test_the_feed_lists_only_its_apis_keys_that_may_no_longer_be_used(
    client: Client, owner: User, other_user: User, sample: Api
) -> None:
    other = Api.objects.create(name="Other API", slug="other", audience="other-api")
    good = record_key(owner, sample)
    suspended = record_key(owner, sample, "suspended")
    revoked = record_key(owner, sample, "revoked", ended_at=timezone.now())
    long_revoked = record_key(owner, sample, "revoked", ended_at=timezone.now() - timedelta(days=1))
    past_expiry = record_key(owner, sample, expires_at=timezone.now() - timedelta(seconds=1))
    User.objects.filter(pk=other_user.pk).update(is_active=False)
    of_disabled_owner = record_key(other_user, sample)
    elsewhere = record_key(owner, other, "revoked", ended_at=timezone.now())
    waiting = record_key(owner, sample, "pending")
    token = revocations.new_feed_token(sample)

    response = read_feed(client, token)

    assert response.status_code == 200
    feed = response.json()
    assert feed["api"] == "sample"
    refused = feed["refused"]
    assert set(refused) == {
        suspended.client_id,
        revoked.client_id,
        past_expiry.client_id,
        of_disabled_owner.client_id,
        waiting.client_id,
    }
    assert good.client_id not in refused
    assert long_revoked.client_id not in refused  # no token of it can still be unexpired
    assert elsewhere.client_id not in refused  # another API's key: not this API's business
    assert "is revoked" in refused[revoked.client_id]
    assert "has expired" in refused[past_expiry.client_id]
    assert "owner" in refused[of_disabled_owner.client_id]
    assert feed["other_apis"] == {"other-api": "Other API"}


def test_the_feed_needs_its_apis_token(client: Client, sample: Api) -> None:
    old = revocations.new_feed_token(sample)
    current = revocations.new_feed_token(sample)
    assert read_feed(client, current).status_code == 200
    for wrong in (old, "rfeed_guess", "", current + "x"):
        response = read_feed(client, wrong)
        assert response.status_code == 401
        assert "revocation_feed_token" in response.json()["error_description"]


def test_the_command_prints_the_token_once_and_keeps_only_its_digest(
    sample: Api, capsys: pytest.CaptureFixture[str]
) -> None:
    call_command("revocation_feed_token", "sample")
    out = capsys.readouterr().out
    token = out.split("REVOCATION_FEED_TOKEN=")[1].strip()
    sample.refresh_from_db()
    assert token not in sample.feed_token_digest
    assert revocations.api_of(token) == sample
    with pytest.raises(Exception, match="No API with the slug 'nope'"):
        call_command("revocation_feed_token", "nope")


def test_the_sample_api_reads_its_list_every_few_seconds_not_per_request(
    client: Client, settings: Any, owner: User, sample: Api, key_clients: Any
) -> None:
    settings.REVOCATION_FEED_REFRESH_SECONDS = 2
    bearer_tokens.forget_revocation_lists()
    revealed = issue(owner, sample, name="app", lifetime_days=9)
    token = request_token(revealed.key.client_id, revealed.secret).json()["access_token"]
    began = time.monotonic()
    for _ in range(100):
        response = client.get(reverse("whoami"), HTTP_AUTHORIZATION=f"Bearer {token}")
        assert response.status_code == 200
    reads = bearer_tokens.revocation_list(sample.audience).reads
    assert reads <= 1 + (time.monotonic() - began) / 2


def test_a_feed_that_cannot_be_read_any_more_refuses_every_token_after_its_max_age() -> None:
    answers: list[Any] = [{"refused": {}}]

    def fetch() -> dict[str, Any]:
        answer = answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[no-any-return]

    feed = RevocationList(fetch, refresh=0, max_age=0.3)
    assert feed.refusal("apikey-x", []) is None
    answers[0] = requests.ConnectionError("the portal is down")
    assert feed.refusal("apikey-x", []) is None  # the copy it has, while young enough
    time.sleep(0.4)
    with pytest.raises(StandingUnknown):
        feed.refusal("apikey-x", [])
    answers[0] = {"refused": {"apikey-x": "The key apikey-x is revoked."}}
    assert feed.refusal("apikey-x", []) == "The key apikey-x is revoked."


def test_a_feed_of_another_api_is_not_taken_for_this_ones() -> None:
    """A server given the wrong API's feed token refuses every token rather than check
    keys against another API's list."""
    feed = RevocationList(
        lambda: {"audience": "other-api", "refused": {}},
        refresh=0,
        max_age=0,
        audience="sample-api",
    )
    with pytest.raises(StandingUnknown):
        feed.refusal("apikey-x", [])


@pytest.mark.django_db(transaction=True)  # the live server serves the feed from its thread
def test_a_resource_server_of_its_own_refuses_a_revoked_keys_token_within_seconds(
    resource_server: str, owner: User, admin_user: User, sample: Api, key_clients: Any
) -> None:
    # The example's GET /orders needs orders:read: the sample API's keys get it by default.
    permissions.define_permission(
        sample, name="orders:read", description="Read the orders", actor=admin_user
    )
    revealed = issue(owner, sample, name="partner", lifetime_days=9)
    token = request_token(revealed.key.client_id, revealed.secret).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    reads_before = revocations.FEED_READS.labels(api="sample")._value.get()
    began = time.monotonic()
    with requests.Session() as session:
        for _ in range(200):
            response = session.get(resource_server, headers=headers, timeout=5)
            assert response.status_code == 200, response.text
            assert response.json()["client_id"] == revealed.key.client_id
    elapsed = time.monotonic() - began
    reads = revocations.FEED_READS.labels(api="sample")._value.get() - reads_before
    assert reads <= 2 + elapsed / 2  # every 2 s (its default), not per request

    lifecycle.revoke_key(revealed.key, actor=owner)
    revoked_at = time.monotonic()
    while (answer := requests.get(resource_server, headers=headers, timeout=5)).status_code == 200:
        assert time.monotonic() - revoked_at < TARGET, "still accepted"
        time.sleep(0.05)
    assert answer.status_code == 401
    assert "is revoked" in answer.json()["error_description"]
