"""Webhooks: every event, signed per Standard Webhooks, delivered to real receivers on loopback.

The receivers are real HTTP servers; the signatures are checked with the Standard Webhooks
reference library (`standardwebhooks`), as a customer's receiver would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from apikeys.models import (
    EVENT_TYPES,
    Api,
    ApiKey,
    AuditEntry,
    User,
    WebhookEndpoint,
    WebhookMessage,
)
from apikeys.operations import dormancy, jobs, lifecycle, teams, webhooks
from tests.factories import issue
from tests.mail import plain_text, wait_for_message
from tests.receivers import Receiver, free_port, receiver

pytestmark = pytest.mark.usefixtures("key_clients")
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def fast_retries(settings: Any) -> None:
    settings.WEBHOOK_BACKOFF_SECONDS = 0.2
    settings.WEBHOOK_LEASE_SECONDS = 2


def deliver_until(done: Callable[[], bool], timeout: float = 30) -> None:
    """Run the worker's loop in this process until `done()`, as `deliver_webhooks` does."""
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "not delivered in time"
        webhooks.deliver_due()
        time.sleep(0.05)


def nothing_pending() -> bool:
    return not WebhookMessage.objects.filter(status=WebhookMessage.Status.PENDING).exists()


def verified(secret: str, arrived: Any) -> dict[str, Any]:
    payload: dict[str, Any] = Webhook(secret).verify(arrived.body, arrived.headers)
    return payload


@pytest.mark.embedded
def test_each_event_arrives_signed_and_verifies_with_the_standard_webhooks_library(
    customer: User, sample: Api, admin_user: User
) -> None:
    with receiver() as inbox:
        made = webhooks.create_endpoint(customer, url=inbox.url, events=EVENT_TYPES)
        sample.requires_approval = True
        sample.save()
        asked = issue(customer, sample, name="asked", lifetime_days=30, justification="reports")
        lifecycle.approve_key(asked.key, actor=admin_user)
        refused = issue(customer, sample, name="refused", lifetime_days=30, justification="reports")
        lifecycle.reject_key(refused.key, actor=admin_user, reason="not this one")
        rotated = lifecycle.rotate_secret(asked.key, actor=customer)
        lifecycle.suspend_key(asked.key, actor=admin_user, reason="checking")
        lifecycle.reinstate_key(asked.key, actor=admin_user)
        lifecycle.revoke_key(asked.key, actor=customer)
        soon = issue(customer, sample, name="soon", lifetime_days=1, justification="reports").key
        lifecycle.approve_key(soon, actor=admin_user)
        jobs.send_expiry_reminders()
        ApiKey.objects.filter(pk=soon.pk).update(created_at=timezone.now() - timedelta(days=90))
        dormancy.run()
        ApiKey.objects.filter(pk=soon.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
        lifecycle.expire_due_keys()
        moving = issue(customer, sample, name="moving", lifetime_days=30, justification="reports")
        team = teams.create_team(customer, "Acme")
        teams.move_key(moving.key, owner=customer, team=team, actor=customer)
        ranged = issue(customer, sample, name="ranged", lifetime_days=30, justification="reports")
        lifecycle.set_networks(ranged.key, ["127.0.0.0/8"], actor=customer)
        webhooks.send_test(made.endpoint)

        deliver_until(nothing_pending)

    payloads = [verified(made.secret, arrived) for arrived in inbox.received]
    types = {p["type"] for p in payloads}
    assert types == {*EVENT_TYPES, "webhook.test"}
    assert len(inbox.ids()) == len(set(inbox.ids()))  # each message once
    for arrived in inbox.received:
        for secret in (asked.secret, refused.secret, rotated.secret):
            assert secret.encode() not in arrived.body
    suspended = next(p for p in payloads if p["type"] == "key.suspended")
    assert suspended["data"]["key"]["client_id"] == asked.key.client_id
    assert suspended["data"]["reason"] == "checking"
    assert suspended["data"]["actor"] == "an administrator"
    assert suspended["data"]["key"]["status"] == "suspended"  # the decision, as it stands
    revoked = next(p for p in payloads if p["type"] == "key.revoked")
    assert revoked["data"]["key"]["status"] == "revoked"
    moved = next(p for p in payloads if p["type"] == "key.transferred")  # the space it left
    assert moved["data"]["key"]["team"] == str(team.pk)
    assert moved["data"]["reason"] == "Moved to another holder."  # not who holds it now
    expiring = next(p for p in payloads if p["type"] == "key.expiring")
    assert expiring["data"]["days_left"] == 1
    forged = inbox.received[0]
    with pytest.raises(WebhookVerificationError):
        Webhook(webhooks.new_signing_secret()).verify(forged.body, forged.headers)


@pytest.mark.embedded
def test_a_receiver_down_for_a_while_gets_each_event_once_when_it_is_back(
    customer: User, sample: Api, fast_retries: None
) -> None:
    port = free_port()
    down = Receiver(port=port)
    made = webhooks.create_endpoint(customer, url=down.url, events=["key.created"])
    for n in range(3):
        issue(customer, sample, name=f"k{n}", lifetime_days=30)
    for _ in range(4):  # refused connections, retried with backoff
        webhooks.deliver_due()
        time.sleep(0.3)
    assert WebhookMessage.objects.filter(status=WebhookMessage.Status.DELIVERED).count() == 0

    with receiver(port=port) as inbox:
        deliver_until(nothing_pending)

    assert sorted(inbox.ids()) == sorted(WebhookMessage.objects.values_list("id", flat=True))
    for message in WebhookMessage.objects.all():
        attempts = list(message.attempts_made.order_by("at"))
        assert len(attempts) >= 2
        assert attempts[-1].status_code == 200
        assert "could not be reached" in attempts[0].error
        verified(
            made.secret, next(r for r in inbox.received if r.headers["webhook-id"] == message.id)
        )


@pytest.mark.embedded
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_in_the_middle_of_a_delivery_delivers_after_restart(
    customer: User, sample: Api
) -> None:
    with receiver(hang=20) as inbox:
        webhooks.create_endpoint(customer, url=inbox.url, events=["key.created"])
        issue(customer, sample, name="k", lifetime_days=30)
        [message] = WebhookMessage.objects.all()
        worker = start_worker()
        try:
            deadline = time.monotonic() + 30
            while not inbox.received:  # the worker is inside the delivery now
                assert time.monotonic() < deadline
                time.sleep(0.1)
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=10)
            message.refresh_from_db()
            assert message.status == WebhookMessage.Status.PENDING
            assert message.locked_until is not None  # the dead worker's lease

            worker = start_worker()
            deadline = time.monotonic() + 30
            while message.status != WebhookMessage.Status.DELIVERED:
                assert time.monotonic() < deadline, "not delivered after the restart"
                time.sleep(0.2)
                message.refresh_from_db()
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=10)

    assert inbox.ids() == [message.id, message.id]  # at least once: the same id both times
    attempts = list(message.attempts_made.order_by("at"))
    assert attempts[0].error == webhooks.INTERRUPTED
    assert attempts[-1].status_code == 200


def start_worker() -> subprocess.Popen[bytes]:
    """`manage.py deliver_webhooks` as its own process, on this test's database."""
    database = connection.settings_dict
    if database["ENGINE"].endswith("sqlite3"):
        url = f"sqlite:///{database['NAME']}"
    else:
        url = (
            f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}/"
            f"{database['NAME']}"
        )
    env = os.environ | {
        "DATABASE_URL": url,
        "WEBHOOK_LEASE_SECONDS": "2",
        "WEBHOOK_POLL_SECONDS": "0.1",
    }
    command = [sys.executable, "manage.py", "deliver_webhooks"]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)


def test_in_production_an_endpoint_on_a_private_address_is_refused(
    customer: User, settings: Any, client: Client
) -> None:
    settings.OUTBOUND_ALLOW_PRIVATE = False
    client.force_login(customer)

    for url in (
        "https://127.0.0.1/hooks",
        "https://169.254.169.254/latest",
        "http://example.com",
        "https://localhost/hooks",  # a name that resolves to a private address
        "https://[::ffff:0:7f00:1]/hooks",
        "https://example.com:8443/hooks",
    ):
        with pytest.raises(webhooks.Refused):
            webhooks.create_endpoint(customer, url=url, events=["key.created"])
    page = client.post(
        reverse("webhook_new"), {"url": "https://10.0.0.7/hooks", "events": ["key.created"]}
    )

    assert "private or reserved address" in page.content.decode()
    assert not WebhookEndpoint.objects.exists()


def test_a_redirect_is_not_followed(customer: User, sample: Api, fast_retries: None) -> None:
    with receiver() as target, receiver(answers=[302], location="") as bouncer:
        bouncer.location = target.url
        webhooks.create_endpoint(customer, url=bouncer.url, events=["key.created"])
        issue(customer, sample, name="k", lifetime_days=30)
        webhooks.deliver_due()

    [message] = WebhookMessage.objects.all()
    assert message.attempts_made.get().status_code == 302
    assert message.status == WebhookMessage.Status.PENDING  # a 3xx is not a delivery
    assert target.received == []


@pytest.mark.embedded
def test_during_a_secret_rotation_signatures_verify_with_either_secret(
    customer: User, client: Client
) -> None:
    with receiver() as inbox:
        made = webhooks.create_endpoint(customer, url=inbox.url, events=EVENT_TYPES)
        client.force_login(customer)
        page = client.post(
            reverse("webhook_rotate", args=[made.endpoint.pk]), {"overlap_hours": "24"}
        )
        new = page.content.decode().split('data-testid="signing-secret">')[1].split("<")[0]
        assert page["Cache-Control"].startswith("max-age=0")
        webhooks.send_test(made.endpoint)
        deliver_until(nothing_pending)
        WebhookEndpoint.objects.filter(pk=made.endpoint.pk).update(
            previous_secret_until=timezone.now() - timedelta(seconds=1)
        )
        webhooks.send_test(made.endpoint)
        deliver_until(nothing_pending)

    during, after = inbox.received
    assert verified(made.secret, during)["type"] == "webhook.test"
    assert verified(new, during)["type"] == "webhook.test"
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    assert verified(new, after)
    with pytest.raises(WebhookVerificationError):
        verified(made.secret, after)


def test_a_410_pauses_the_endpoint_and_the_owner_is_told(
    customer: User, sample: Api, real_smtp: None
) -> None:
    with receiver(answers=[410]) as inbox:
        made = webhooks.create_endpoint(customer, url=inbox.url, events=["key.created"])
        issue(customer, sample, name="a", lifetime_days=30)
        webhooks.deliver_due()
        issue(customer, sample, name="b", lifetime_days=30)
        webhooks.deliver_due()

        endpoint = WebhookEndpoint.objects.get(pk=made.endpoint.pk)
        assert not endpoint.active
        assert "410" in endpoint.disabled_reason
        assert len(inbox.received) == 1  # nothing more is sent while it is paused
        assert "answered 410 Gone" in plain_text(wait_for_message(customer.email))
        webhooks.update_endpoint(endpoint, actor=customer, active=True)
        deliver_until(lambda: len(inbox.received) == 2)

    assert WebhookMessage.objects.filter(status=WebhookMessage.Status.DELIVERED).count() == 1


def test_after_the_retry_window_a_message_is_given_up_and_the_owner_mailed_once(
    customer: User, sample: Api, settings: Any, real_smtp: None, fast_retries: None
) -> None:
    settings.WEBHOOK_RETRY_HOURS = 1 / 3600  # a second
    with receiver(answers=[500] * 50) as inbox:
        webhooks.create_endpoint(customer, url=inbox.url, events=["key.created"])
        issue(customer, sample, name="a", lifetime_days=30)
        issue(customer, sample, name="b", lifetime_days=30)
        deliver_until(nothing_pending)

    assert set(WebhookMessage.objects.values_list("status", flat=True)) == {"failed"}
    text = plain_text(wait_for_message(customer.email))
    assert "could not deliver an event" in text
    time.sleep(1)
    from tests.mail import messages_to

    assert len(messages_to(customer.email)) == 1  # once a day per endpoint, not per message
    first = WebhookMessage.objects.earliest("created_at")
    resent = webhooks.resend(first)
    assert resent.status == WebhookMessage.Status.PENDING
    assert resent.failures == 0  # a fresh retry window
    assert resent.retry_from > first.retry_from


@pytest.mark.embedded
def test_endpoints_in_the_pages_secret_once_other_users_404_test_and_resend(
    customer: User, other_user: User, client: Client
) -> None:
    client.force_login(customer)
    with receiver() as inbox:
        made = client.post(
            reverse("webhook_new"),
            {"url": inbox.url, "description": "vault sync", "events": ["key.rotated"]},
        )
        assert made.status_code == 200
        secret = made.content.decode().split('data-testid="signing-secret">')[1].split("<")[0]
        assert secret.startswith("whsec_")
        endpoint = WebhookEndpoint.objects.get()
        assert secret not in endpoint.secret_encrypted  # kept encrypted
        detail = client.get(reverse("webhook_detail", args=[endpoint.pk])).content.decode()
        assert secret not in detail
        assert "vault sync" in detail

        client.post(reverse("webhook_test", args=[endpoint.pk]))
        deliver_until(nothing_pending)
        [message] = WebhookMessage.objects.all()
        log = client.get(reverse("webhook_detail", args=[endpoint.pk])).content.decode()
        assert message.id in log
        assert "200" in log
        client.post(reverse("webhook_resend", args=[endpoint.pk, message.id]))
        deliver_until(nothing_pending)

    assert inbox.ids() == [message.id, message.id]
    stranger = Client()
    stranger.force_login(other_user)
    for name in ("webhook_detail", "webhook_rotate", "webhook_delete"):
        assert stranger.get(reverse(name, args=[endpoint.pk])).status_code == 404
    assert stranger.post(reverse("webhook_test", args=[endpoint.pk])).status_code == 404
    client.post(reverse("webhook_pause", args=[endpoint.pk]))
    assert not WebhookEndpoint.objects.get().active
    client.post(reverse("webhook_delete", args=[endpoint.pk]))
    assert not WebhookEndpoint.objects.exists()
    actions = set(AuditEntry.objects.filter(about_user=customer).values_list("action", flat=True))
    assert {"webhook_added", "webhook_changed", "webhook_removed"} <= actions


def test_a_state_change_and_its_message_commit_together(
    customer: User, sample: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    webhooks.create_endpoint(customer, url="http://127.0.0.1:9/hooks", events=EVENT_TYPES)
    revealed = issue(customer, sample, name="k", lifetime_days=30)
    real = AuditEntry.record

    def recorded_then_failing(*args: Any, **kwargs: Any) -> AuditEntry:
        real(*args, **kwargs)  # the entry and its message are written...
        raise RuntimeError("the process dies before the commit (injected)")

    monkeypatch.setattr(AuditEntry, "record", recorded_then_failing)
    with pytest.raises(RuntimeError):
        lifecycle.rotate_secret(revealed.key, actor=customer)

    types = list(WebhookMessage.objects.values_list("event_type", flat=True))
    assert types == ["key.created"]  # ...and rolled back with the rotation


@pytest.mark.django_db(transaction=True)  # the workers' threads see what was committed
def test_two_workers_at_once_deliver_each_message_once(customer: User, sample: Api) -> None:
    import threading

    with receiver(delay=0.2) as inbox:
        webhooks.create_endpoint(customer, url=inbox.url, events=["key.created"])
        for n in range(6):
            issue(customer, sample, name=f"k{n}", lifetime_days=30)

        def worker() -> None:
            try:
                webhooks.deliver_due()
            finally:
                connection.close()  # this thread's own connection

        workers = [threading.Thread(target=worker) for _ in range(2)]
        for thread in workers:
            thread.start()
        for thread in workers:
            thread.join(timeout=30)

    ids = inbox.ids()
    assert sorted(ids) == sorted(WebhookMessage.objects.values_list("id", flat=True))
    assert len(ids) == len(set(ids)) == 6


def test_a_receiver_that_trickles_is_cut_at_the_deadline_and_retried(
    customer: User, sample: Api, settings: Any
) -> None:
    settings.WEBHOOK_TIMEOUT = 1
    with receiver(trickle=True) as inbox:
        webhooks.create_endpoint(customer, url=inbox.url, events=["key.created"])
        issue(customer, sample, name="k", lifetime_days=30)
        started = time.monotonic()
        webhooks.deliver_due()
        took = time.monotonic() - started

    [message] = WebhookMessage.objects.all()
    assert took < 3
    assert "took longer than 1 s" in message.attempts_made.get().error
    assert message.status == WebhookMessage.Status.PENDING
    assert len(inbox.received) == 1


def test_a_signing_secret_the_portal_cannot_read_is_logged_and_the_worker_goes_on(
    customer: User, sample: Api, settings: Any
) -> None:
    with receiver() as inbox:
        broken = webhooks.create_endpoint(customer, url=inbox.url, events=["key.created"])
        settings.WEBHOOK_ENCRYPTION_KEY = "another-key-after-a-careless-change-0123456789"
        issue(customer, sample, name="k", lifetime_days=30)

        webhooks.deliver_due()

        [message] = WebhookMessage.objects.all()
        assert message.attempts_made.get().error == webhooks.NOT_SIGNED
        assert inbox.received == []
        fresh = webhooks.rotate_signing_secret(broken.endpoint, actor=customer)
        WebhookMessage.objects.update(next_attempt_at=timezone.now())  # its retry, now
        webhooks.deliver_due()

    [arrived] = inbox.received
    assert verified(fresh.secret, arrived)["type"] == "key.created"


def test_payloads_are_json_with_type_timestamp_and_data(customer: User, sample: Api) -> None:
    with receiver() as inbox:
        webhooks.create_endpoint(customer, url=inbox.url, events=["key.created"])
        issue(customer, sample, name="k", lifetime_days=30)
        deliver_until(nothing_pending)

    [arrived] = inbox.received
    body = json.loads(arrived.body)
    assert set(body) == {"type", "timestamp", "data"}
    assert arrived.headers["content-type"] == "application/json"
    assert body["data"]["key"]["name"] == "k"


@pytest.mark.embedded
def test_every_event_is_offered_and_kept_once(customer: User, client: Client) -> None:
    client.force_login(customer)

    offered = client.get(reverse("webhook_new")).content.decode()
    made = webhooks.create_endpoint(customer, url="http://127.0.0.1:9/hook", events=EVENT_TYPES)

    assert offered.count('value="key.updated"') == 1  # three actions send it
    assert made.endpoint.events == list(dict.fromkeys(made.endpoint.events))
    assert made.endpoint.events.count("key.updated") == 1
