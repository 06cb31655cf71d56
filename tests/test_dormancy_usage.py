"""A key's usage, shown to its owner and admins, and the dormant-key policy: warned, then
suspended, then reinstated by the owner in one click (pages without JavaScript, the API)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from apikeys.models import Api, ApiKey, AuditEntry, KeyUsage, UnusedNotice, User, WebhookMessage
from apikeys.operations import dormancy, lifecycle
from tests.accounts import KeycloakUser, force_login_with_second_factor
from tests.factories import issue, works
from tests.test_api import Caller, create

pytestmark = [pytest.mark.embedded, pytest.mark.usefixtures("key_clients")]


def test_the_owner_and_admins_see_the_days_usage_and_a_warning_on_wrong_secrets(
    client: Client, owner: User, admin_user: User, sample: Api
) -> None:
    key = issue(owner, sample, name="reports", lifetime_days=30).key
    today = timezone.now().date()
    KeyUsage.objects.create(key=key, day=today - timedelta(days=3), grants=40)
    KeyUsage.objects.create(key=key, day=today, grants=7, wrong_credentials=12)

    for viewer, page in (
        (owner, reverse("key_detail", args=[key.pk])),
        (admin_user, reverse("manage_key", args=[key.pk])),
    ):
        force_login_with_second_factor(client, viewer)
        html = client.get(page).content.decode()
        assert "12 failed attempts with a wrong secret since yesterday" in html
        assert "someone may be using an old or leaked secret" in html
        assert html.count('class="usage-grants"') == 2
        assert html.count('class="usage-failures"') == 1
        assert "47 tokens issued, 12 failed attempts" in html
        assert "<td>40</td>" in html  # the numbers, without the picture


def test_a_revoked_key_tried_again_is_said_to_get_nothing_not_to_need_a_rotation(
    client: Client, owner: User, sample: Api
) -> None:
    key = issue(owner, sample, name="ended", lifetime_days=30).key
    lifecycle.revoke_key(key, actor=owner)
    KeyUsage.objects.create(key=key, day=timezone.now().date(), wrong_credentials=2, refused=3)
    client.force_login(owner)

    html = client.get(reverse("key_detail", args=[key.pk])).content.decode()

    assert "5 attempts to get a token since yesterday (UTC), refused: the key is revoked." in html
    assert "rotate" not in html.partition('data-testid="usage-warning"')[2][:300].lower()


def test_a_key_never_used_shows_no_chart_and_no_warning(
    client: Client, owner: User, sample: Api
) -> None:
    key = issue(owner, sample, name="quiet", lifetime_days=30).key
    client.force_login(owner)
    html = client.get(reverse("key_detail", args=[key.pk])).content.decode()
    assert "No token requests in the last 30 days." in html
    assert 'data-testid="usage-warning"' not in html


@pytest.mark.usefixtures("sample")
def test_usage_through_the_api(make_keycloak_user: Callable[..., KeycloakUser]) -> None:
    customer = Caller(make_keycloak_user())
    made = create(customer).json()
    key = ApiKey.objects.get(pk=made["key"]["id"])
    KeyUsage.objects.create(key=key, day=timezone.now().date(), grants=3, wrong_credentials=2)

    usage = customer("GET", f"/keys/{key.pk}/usage").json()

    assert len(usage["days"]) == 30
    assert usage["days"][-1] == {
        "day": timezone.now().date().isoformat(),
        "grants": 3,
        "wrong_credentials": 2,
        "outside_networks": 0,
        "refused": 0,
    }
    assert "2 failed attempts" in usage["warning"]
    other = Caller(make_keycloak_user())
    assert other("GET", f"/keys/{key.pk}/usage").status_code == 404


def test_a_dormant_key_is_warned_then_suspended_then_reinstated_by_its_owner(
    client: Client, owner: User, sample: Api, settings: Any
) -> None:
    settings.KEYCLOAK_PUSH_EVENTS = True  # last-used times are pushed: they can be trusted
    revealed = issue(owner, sample, name="nightly", lifetime_days=365)
    key = revealed.key
    now = timezone.now()
    ApiKey.objects.filter(pk=key.pk).update(
        created_at=now - timedelta(days=40), last_used_at=now - timedelta(days=31)
    )

    first = dormancy.run(now)

    assert [k.pk for k in first.warned] == [key.pk]
    assert first.suspended == []
    assert UnusedNotice.objects.filter(key=key).count() == 1
    assert WebhookMessage.objects.filter(event_type="key.unused").exists() is False  # no endpoint
    (warning,) = [m for m in mail.outbox if "has not been used for 31 days" in m.subject]
    assert "suspended in 60 days" in warning.body  # the policy's notice period, 90 - 30
    assert key.audit_entries.filter(action=AuditEntry.Action.DORMANT_WARNED).count() == 1
    assert dormancy.run(now).warned == []  # once per quiet spell

    assert dormancy.run(now + timedelta(days=59)).suspended == []  # quiet 90 days: not yet
    later = now + timedelta(days=60)  # quiet for 91 days, warned 60 days ago
    suspension = dormancy.run(later)

    assert [k.pk for k in suspension.suspended] == [key.pk]
    key.refresh_from_db()
    assert key.status == "suspended"
    assert "suspended by the dormant-key policy" in key.status_reason
    assert not works(revealed)  # disabled in Keycloak
    entry = key.audit_entries.get(action=AuditEntry.Action.SUSPENDED)
    assert entry.actor is None
    assert any("suspended" in m.subject.lower() for m in mail.outbox)

    client.force_login(owner)
    page = client.get(reverse("key_detail", args=[key.pk])).content.decode()
    assert 'data-testid="dormant"' in page
    response = client.post(reverse("reinstate_dormant", args=[key.pk]))

    assert response.status_code == 302
    key.refresh_from_db()
    assert key.status == "active"
    assert works(revealed)
    reinstated = key.audit_entries.get(action=AuditEntry.Action.REINSTATED)
    assert reinstated.actor == owner
    # A new quiet spell starts at the reinstatement: no second suspension on the next run.
    assert dormancy.run(later).suspended == []


def test_a_late_warning_still_gives_the_whole_notice_and_untrusted_use_suspends_nobody(
    owner: User, sample: Api, settings: Any
) -> None:
    key = issue(owner, sample, name="old", lifetime_days=365).key
    now = timezone.now()
    ApiKey.objects.filter(pk=key.pk).update(created_at=now - timedelta(days=200))
    # A notice from before the policy: the webhook event only, no mail to the owner.
    UnusedNotice.objects.create(key=key, since=now - timedelta(days=200), sent_at=now)

    settings.KEYCLOAK_PUSH_EVENTS = True
    assert [k.pk for k in dormancy.run(now).warned] == [key.pk]  # mailed now
    assert any("suspended in 60 days" in m.body for m in mail.outbox)
    assert dormancy.run(now + timedelta(days=1)).suspended == []
    settings.KEYCLOAK_PUSH_EVENTS = False  # and sync_last_used never completed
    assert dormancy.run(now + timedelta(days=61)).suspended == []
    settings.KEYCLOAK_PUSH_EVENTS = True
    assert [k.pk for k in dormancy.run(now + timedelta(days=61)).suspended] == [key.pk]


def test_an_owner_cannot_reinstate_a_key_an_admin_suspended(
    client: Client, owner: User, admin_user: User, sample: Api
) -> None:
    key = issue(owner, sample, name="held", lifetime_days=30).key
    lifecycle.suspend_key(key, actor=admin_user, reason="fraud check")
    client.force_login(owner)
    assert (
        'data-testid="dormant"'
        not in client.get(reverse("key_detail", args=[key.pk])).content.decode()
    )

    response = client.post(reverse("reinstate_dormant", args=[key.pk]), follow=True)

    assert "ask an administrator" in response.content.decode()
    assert ApiKey.objects.get(pk=key.pk).status == "suspended"


def test_an_api_may_warn_sooner_and_never_suspend(owner: User, sample: Api) -> None:
    Api.objects.filter(pk=sample.pk).update(dormant_warn_days=5, dormant_suspend_days=0)
    key = issue(owner, sample, name="rare", lifetime_days=365).key
    now = timezone.now()
    ApiKey.objects.filter(pk=key.pk).update(
        created_at=now - timedelta(days=9), last_used_at=now - timedelta(days=6)
    )

    assert [k.pk for k in dormancy.run(now).warned] == [key.pk]
    assert dormancy.run(now + timedelta(days=900)).suspended == []
    assert ApiKey.objects.get(pk=key.pk).status == "active"


def test_the_api_form_refuses_a_suspension_before_the_warning(
    client: Client, admin_user: User, sample: Api
) -> None:
    force_login_with_second_factor(client, admin_user)
    url = reverse("manage_api_edit", args=[sample.slug])
    form = client.get(url).context["form"]
    data = {name: value for name, value in form.initial.items() if value is not None}
    data.update(dormant_warn_days=30, dormant_suspend_days=10)

    response = client.post(url, data)

    assert response.status_code in (200, 422)
    assert "Suspend after more days than the warning (30)" in response.content.decode()
    assert Api.objects.get(pk=sample.pk).dormant_suspend_days is None
