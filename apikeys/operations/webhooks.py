"""Webhooks: customers' systems hear about their keys, signed, retried, nothing lost.

- **Endpoints** belong to a customer: a URL, the events it wants, a signing secret shown once
  (`whsec_…`, Standard Webhooks' format), rotated with an overlap during which both the old
  and the new secret sign. The portal keeps the secrets encrypted (Fernet, under a key
  derived from WEBHOOK_ENCRYPTION_KEY): it needs them to sign.
- **The outbox.** An event is a `WebhookMessage` per endpoint, written in the database
  transaction of the change it reports (`AuditEntry.record` for a key's audited changes, the
  jobs for reminders and dormancy): the change and its message commit together or not at all.
- **Delivery** (`deliver_due`, run by `manage.py deliver_webhooks`): a worker leases due
  messages with a conditional UPDATE (two workers never hold one message; a dead worker's
  lease runs out and another delivers it), POSTs each signed per Standard Webhooks with its
  maintained library (`webhook-id`, `webhook-timestamp`, `webhook-signature`), records the
  attempt, and on failure retries with exponential backoff and jitter for at least
  WEBHOOK_RETRY_HOURS (24, counted from the message's creation, or its resend or resume),
  then gives up and mails the owner. Only the lease's holder records an outcome, and a
  lease covers one delivery, which a deadline bounds. A 410 Gone pauses the
  endpoint. The message id stays the same across retries: receivers deduplicate on it.
  Delivery is at least once: a worker that dies after the receiver answered but before
  recording it delivers again.
- **Where**: through `portal/outbound.py`, so in production never to a private, loopback,
  link-local or metadata address, checked after DNS resolution, redirects not followed, with
  a short timeout and a capped answer.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import random
import secrets
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

import psycopg
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import F, Q
from django.shortcuts import get_object_or_404
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables
from standardwebhooks.webhooks import Webhook

from apikeys.models import (
    EVENT_TYPES,
    TEST_EVENT,
    WAKE_CHANNEL,
    AuditEntry,
    Team,
    User,
    WebhookAttempt,
    WebhookEndpoint,
    WebhookMessage,
    WrongState,
    wake_workers,
)
from apikeys.operations import job_runs, notifications
from portal import outbound
from portal.request_ids import start_run

log = logging.getLogger(__name__)

RESPONSE_EXCERPT = 500
RESPONSE_CAP = 4096  # bytes read from a receiver's answer
BACKOFF_CAP = 3600.0  # seconds: the longest wait between two attempts
NOTE_ALIVE_SECONDS = 30.0  # how often the worker notes it is going round (metrics)
USER_AGENT = "apikey-portal-webhooks/1"
INTERRUPTED = "No answer recorded: the worker stopped during this attempt."
NOT_SIGNED = (
    "Not sent: the signing secret cannot be read (WEBHOOK_ENCRYPTION_KEY changed?). "
    "Rotate the endpoint's signing secret."
)


class Refused(ValueError):
    """The endpoint cannot be saved as given; the message says why, for the customer."""


# Endpoints


@dataclass(frozen=True)
class Revealed:
    endpoint: WebhookEndpoint
    secret: str


@sensitive_variables()  # the new signing secret
def create_endpoint(
    owner: User,
    *,
    url: str,
    events: Iterable[str],
    description: str = "",
    ip_address: str | None = None,
    team: Team | None = None,
) -> Revealed:
    """A new endpoint with a new signing secret, shown once (audited); `team`'s, if given
    (the caller checked `owner` may), else `owner`'s own."""
    check_url(url)
    with transaction.atomic():
        # Counted under the lock of the space's holder: the team, or the owner.
        if team is not None:
            Team.objects.select_for_update().get(pk=team.pk)
        else:
            User.objects.select_for_update().get(pk=owner.pk)
        most = settings.MAX_WEBHOOK_ENDPOINTS_PER_USER
        if WebhookEndpoint.objects.held_by(owner, team).count() >= most:
            who = f"The team {team.name} already has" if team is not None else "You already have"
            raise Refused(f"{who} {most} webhook endpoints, the most allowed: delete one first.")
        secret = new_signing_secret()
        endpoint = WebhookEndpoint.objects.create(
            owner=owner,
            team=team,
            url=url,
            events=_known(events),
            description=description,
            secret_encrypted=encrypt(secret),
        )
        AuditEntry.record(
            owner,
            AuditEntry.Action.WEBHOOK_ADDED,
            actor=owner,
            ip_address=ip_address,
            reason=f"{url} ({', '.join(endpoint.events) or 'no events'})",
            team=team,
        )
    return Revealed(endpoint, secret)


def update_endpoint(
    endpoint: WebhookEndpoint,
    *,
    actor: User | None,
    ip_address: str | None = None,
    url: str | None = None,
    events: Iterable[str] | None = None,
    description: str | None = None,
    active: bool | None = None,
) -> WebhookEndpoint:
    """Change what was given; resuming a paused endpoint delivers what waited (audited)."""
    if url is not None:
        check_url(url)
    with transaction.atomic():
        endpoint = get_object_or_404(WebhookEndpoint.objects.select_for_update(), pk=endpoint.pk)
        changes = []
        if url is not None and url != endpoint.url:
            changes.append(f"URL {endpoint.url} → {url}")
            endpoint.url = url
        if events is not None and _known(events) != endpoint.events:
            endpoint.events = _known(events)
            changes.append(f"events: {', '.join(endpoint.events) or 'none'}")
        if description is not None and description != endpoint.description:
            endpoint.description = description
            changes.append("description")
        if active is not None and active != endpoint.active:
            endpoint.active = active
            endpoint.disabled_reason = ""
            changes.append("resumed" if active else "paused")
            if active:  # what waited gets a fresh retry window, at once
                now = timezone.now()
                endpoint.messages.filter(status=WebhookMessage.Status.PENDING).update(
                    retry_from=now, next_attempt_at=now, failures=0
                )
                wake_workers()
        if not changes:
            return endpoint
        endpoint.save()
        AuditEntry.record(
            endpoint.owner,
            AuditEntry.Action.WEBHOOK_CHANGED,
            actor=actor,
            ip_address=ip_address,
            reason=f"{endpoint.url}: {'; '.join(changes)}",
            team=endpoint.team,
        )
    return endpoint


def delete_endpoint(
    endpoint: WebhookEndpoint, *, actor: User, ip_address: str | None = None
) -> None:
    """Delete an endpoint with its messages and delivery log (audited)."""
    with transaction.atomic():
        endpoint = get_object_or_404(WebhookEndpoint.objects.select_for_update(), pk=endpoint.pk)
        AuditEntry.record(
            endpoint.owner,
            AuditEntry.Action.WEBHOOK_REMOVED,
            actor=actor,
            ip_address=ip_address,
            reason=endpoint.url,
            team=endpoint.team,
        )
        endpoint.delete()


@sensitive_variables()  # the signing secrets
def rotate_signing_secret(
    endpoint: WebhookEndpoint,
    *,
    actor: User,
    overlap: timedelta = timedelta(0),
    ip_address: str | None = None,
) -> Revealed:
    """A new signing secret, shown once. During `overlap` both sign each message (audited)."""
    if not timedelta(0) <= overlap <= timedelta(days=7):
        raise Refused("The overlap is from none up to 7 days.")
    with transaction.atomic():
        endpoint = get_object_or_404(WebhookEndpoint.objects.select_for_update(), pk=endpoint.pk)
        secret = new_signing_secret()
        now = timezone.now()
        if overlap:
            endpoint.previous_secret_encrypted = endpoint.secret_encrypted
            endpoint.previous_secret_until = now + overlap
        else:
            endpoint.previous_secret_encrypted, endpoint.previous_secret_until = "", None
        endpoint.secret_encrypted = encrypt(secret)
        endpoint.save()
        until = (
            f" the old one signs too until {now + overlap:%Y-%m-%d %H:%M} UTC" if overlap else ""
        )
        AuditEntry.record(
            endpoint.owner,
            AuditEntry.Action.WEBHOOK_CHANGED,
            actor=actor,
            ip_address=ip_address,
            reason=f"{endpoint.url}: signing secret rotated;{until or ' the old one stopped'}",
            team=endpoint.team,
        )
    return Revealed(endpoint, secret)


def send_test(endpoint: WebhookEndpoint) -> WebhookMessage:
    """A test event for one endpoint (not while it is paused: nothing is delivered then)."""
    if not endpoint.active:
        raise WrongState("The endpoint is paused: resume it first.")
    data = {"message": "A test event from the API key portal.", "endpoint": str(endpoint.pk)}
    with transaction.atomic():
        message = WebhookMessage.objects.create(endpoint=endpoint, event_type=TEST_EVENT, data=data)
        wake_workers()
    return message


def resend(message: WebhookMessage) -> WebhookMessage:
    """Deliver a message again, with the same id (receivers that saw it can tell)."""
    with transaction.atomic():
        message = get_object_or_404(WebhookMessage.objects.select_for_update(), pk=message.pk)
        if message.status == WebhookMessage.Status.PENDING:
            raise WrongState("This message is still being delivered.")
        message.status = WebhookMessage.Status.PENDING
        message.next_attempt_at = message.retry_from = timezone.now()
        message.failures = 0
        message.save(update_fields=["status", "next_attempt_at", "retry_from", "failures"])
        wake_workers()
    return message


def check_url(url: str) -> None:
    """Refused unless the portal may post to `url` (public https in production)."""
    try:
        outbound.check_address(url)
    except outbound.RefusedAddress as refusal:
        raise Refused(f"The portal cannot post to this address: {refusal}") from None


def _known(events: Iterable[str]) -> list[str]:
    chosen = set(events)
    if unknown := chosen - set(EVENT_TYPES):
        raise Refused(f"Unknown events: {', '.join(sorted(unknown))}.")
    return [event for event in EVENT_TYPES if event in chosen]


# Secrets


def new_signing_secret() -> str:
    """Standard Webhooks' format: whsec_ and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


@cache
def _fernet(key: str) -> Fernet:
    derived = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"apikey-portal webhook secrets"
    ).derive(key.encode())
    return Fernet(base64.urlsafe_b64encode(derived))


@sensitive_variables()
def encrypt(secret: str) -> str:
    return _fernet(settings.WEBHOOK_ENCRYPTION_KEY).encrypt(secret.encode()).decode()


@sensitive_variables()
def decrypt(token: str) -> str:
    return _fernet(settings.WEBHOOK_ENCRYPTION_KEY).decrypt(token.encode()).decode()


@sensitive_variables()
def signature_headers(
    endpoint: WebhookEndpoint, message: WebhookMessage, body: str, now: datetime
) -> dict[str, str]:
    """The three Standard Webhooks headers; during an overlap, both secrets' signatures."""
    signatures = [Webhook(decrypt(endpoint.secret_encrypted)).sign(message.id, now, body)]
    if endpoint.previous_secret_encrypted and (endpoint.previous_secret_until or now) > now:
        # The old secret may be unreadable (the encryption key changed, then a rotation):
        # the new one's signature is enough.
        with contextlib.suppress(InvalidToken):
            previous = decrypt(endpoint.previous_secret_encrypted)
            signatures.append(Webhook(previous).sign(message.id, now, body))
    return {
        "webhook-id": message.id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": " ".join(signatures),
    }


# Delivery


@dataclass
class Run:
    delivered: int = 0
    retrying: int = 0
    failed: int = 0


def deliver_due(*, limit: int = 100, now: Callable[[], datetime] = timezone.now) -> Run:
    """Deliver up to `limit` due messages, leasing one at a time (a lease always outlasts
    the one delivery it covers); what happened."""
    run = Run()
    holder = uuid.uuid4().hex
    for _ in range(limit):
        message = claim(holder=holder, now=now())
        if message is None:
            break
        try:
            outcome = deliver(message, holder=holder)
        except Exception:  # one message's trouble must not stop the others' delivery
            log.exception("Delivering %s failed in the portal", message.pk)
            outcome = _give_back(message, holder=holder)
        if outcome == WebhookMessage.Status.DELIVERED:
            run.delivered += 1
        elif outcome == WebhookMessage.Status.FAILED:
            run.failed += 1
        else:
            run.retrying += 1
    return run


def claim(*, holder: str, now: datetime) -> WebhookMessage | None:
    """The next due message, now held by `holder`: taken by a conditional UPDATE, so that
    two workers (or a worker and a resend) never both hold one, on PostgreSQL and SQLite."""
    lease = now + timedelta(seconds=settings.WEBHOOK_LEASE_SECONDS)
    due = WebhookMessage.objects.due(now).filter(endpoint__active=True).order_by("next_attempt_at")
    for pk in due.values_list("pk", flat=True)[:10]:
        won = (
            WebhookMessage.objects.filter(pk=pk, status=WebhookMessage.Status.PENDING)
            .filter(Q(locked_until__isnull=True) | Q(locked_until__lt=now))
            .update(locked_until=lease, locked_by=holder)
        )
        if won:
            return WebhookMessage.objects.select_related("endpoint", "endpoint__owner").get(pk=pk)
    return None


@sensitive_variables()  # the signing headers
def deliver(message: WebhookMessage, *, holder: str) -> str:
    """One attempt: POST, record it, then delivered, a retry scheduled, or given up."""
    endpoint = message.endpoint
    body = json.dumps(message.payload(), separators=(",", ":"))
    now = timezone.now()
    # Written before the request: if the worker dies now, the log shows an attempt without
    # an answer, and the message goes out again once the lease runs out.
    attempt = WebhookAttempt.objects.create(message=message, at=now, error=INTERRUPTED)
    started = time.monotonic()
    try:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            **signature_headers(endpoint, message, body, now),
        }
    except InvalidToken:
        attempt.error = NOT_SIGNED
    else:
        try:
            answer = outbound.send(
                "POST",
                endpoint.url,
                body=body.encode(),
                headers=headers,
                max_bytes=RESPONSE_CAP,
                timeout=settings.WEBHOOK_TIMEOUT,
            )
        except outbound.RefusedAddress as failure:
            attempt.error = str(failure)[:300]
        else:
            attempt.status_code, attempt.error = answer.status, ""
            attempt.response_excerpt = answer.body[:RESPONSE_EXCERPT].decode("utf-8", "replace")
    attempt.latency_ms = int((time.monotonic() - started) * 1000)
    return _record(message, attempt, holder=holder)


def _record(message: WebhookMessage, attempt: WebhookAttempt, *, holder: str) -> str:
    """The attempt's outcome, recorded only while `holder` still holds the message."""
    now = timezone.now()
    gone = attempt.status_code == 410
    window = timedelta(hours=settings.WEBHOOK_RETRY_HOURS)
    held = WebhookMessage.objects.filter(pk=message.pk, locked_by=holder)
    with transaction.atomic():
        attempt.save()
        if attempt.succeeded:
            change: dict[str, Any] = {
                "status": WebhookMessage.Status.DELIVERED,
                "delivered_at": now,
            }
        elif gone or now - message.retry_from >= window:
            change = {"status": WebhookMessage.Status.FAILED}
        else:
            change = {"next_attempt_at": now + timedelta(seconds=backoff(message.failures + 1))}
            change["failures"] = F("failures") + 1
        if not held.update(attempts=F("attempts") + 1, locked_until=None, locked_by="", **change):
            return WebhookMessage.Status.PENDING  # the lease ran out; its new holder decides
        paused = gone and _pause_gone(message.endpoint, now)
    status = change.get("status", WebhookMessage.Status.PENDING)
    if paused:
        notifications.webhook_paused(message.endpoint)
    elif status == WebhookMessage.Status.FAILED:
        _tell_owner_of_failure(message, now)
    return str(status)


def _give_back(message: WebhookMessage, *, holder: str) -> str:
    """After the portal's own failure: the attempt counts, the message is retried later."""
    later = timezone.now() + timedelta(seconds=backoff(message.failures + 1))
    WebhookMessage.objects.filter(pk=message.pk, locked_by=holder).update(
        attempts=F("attempts") + 1,
        failures=F("failures") + 1,
        locked_until=None,
        locked_by="",
        next_attempt_at=later,
    )
    return WebhookMessage.Status.PENDING


def backoff(attempts: int) -> float:
    """Seconds before the next attempt: doubling from WEBHOOK_BACKOFF_SECONDS up to an hour,
    with jitter (between half and all of it), so that receivers coming back are not stormed."""
    ceiling = min(settings.WEBHOOK_BACKOFF_SECONDS * 2 ** (attempts - 1), BACKOFF_CAP)
    return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not a secret


def _pause_gone(endpoint: WebhookEndpoint, now: datetime) -> bool:
    """Pause an endpoint that answered 410 Gone (audited); False if it was paused already."""
    endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
    if not endpoint.active:
        return False
    endpoint.active = False
    endpoint.disabled_reason = f"It answered 410 Gone on {now:%Y-%m-%d %H:%M} UTC."
    endpoint.save(update_fields=["active", "disabled_reason"])
    AuditEntry.record(
        endpoint.owner,
        AuditEntry.Action.WEBHOOK_CHANGED,
        actor=None,
        reason=f"{endpoint.url}: paused, {endpoint.disabled_reason}",
        team=endpoint.team,
    )
    return True


def _tell_owner_of_failure(message: WebhookMessage, now: datetime) -> None:
    """Mail the owner that a message was given up on: at most once a day per endpoint."""
    day_ago = now - timedelta(days=1)
    marked = (
        WebhookEndpoint.objects.filter(pk=message.endpoint_id)
        .filter(Q(failure_mailed_at__isnull=True) | Q(failure_mailed_at__lt=day_ago))
        .update(failure_mailed_at=now)
    )
    if marked:
        notifications.webhook_failed(message)


def work(*, stop: Callable[[], bool], idle: Callable[[float], None] | None = None) -> Run:
    """The worker: deliver what is due until `stop()`, looking again every poll interval,
    or at once when a message is written (PostgreSQL's LISTEN/NOTIFY; SQLite polls). A lost
    database connection is opened again on the next round."""
    wait = idle or _waiter()
    total = Run()
    noted = 0.0
    start_run("webhooks")
    while not stop():
        try:
            run = deliver_due()
            if time.monotonic() - noted > NOTE_ALIVE_SECONDS:
                job_runs.succeeded("webhooks")  # the metrics' job lag: the worker is going round
                noted = time.monotonic()
        except DatabaseError:
            log.exception("The webhook worker lost the database; trying again")
            connection.close()
            time.sleep(settings.WEBHOOK_POLL_SECONDS)
            wait = idle or _waiter()
            continue
        total.delivered += run.delivered
        total.retrying += run.retrying
        total.failed += run.failed
        if not (run.delivered or run.retrying or run.failed):
            try:
                wait(settings.WEBHOOK_POLL_SECONDS)
            except (DatabaseError, OSError, psycopg.Error):
                connection.close()
                wait = idle or _waiter()
    return total


def _waiter() -> Callable[[float], None]:
    """Sleep for the poll interval, or on PostgreSQL until a NOTIFY, whichever comes first."""
    if connection.vendor != "postgresql":
        return time.sleep
    try:
        connection.ensure_connection()
        listener = connection.connection
        listener.execute(f"LISTEN {WAKE_CHANNEL}")
    except (DatabaseError, psycopg.Error):
        log.exception("Cannot LISTEN for webhook messages; polling")
        return time.sleep

    def wait(seconds: float) -> None:
        for _ in listener.notifies(timeout=seconds, stop_after=1):
            pass

    return wait
