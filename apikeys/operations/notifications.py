"""The portal's emails: requests to admins, decisions and reminders to owners.

Mail is sent after the change it reports has been committed. A failure to send is logged and
does not undo the change: the audit trail and the pages remain the record.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from django.conf import settings
from django.core.mail import send_mail
from django.template.loader import render_to_string
from django.urls import reverse

from apikeys.models import ApiKey, LeakReport, User, WebhookEndpoint, WebhookMessage

log = logging.getLogger(__name__)


def admin_recipients() -> list[str]:
    """Portal admins (as of their last sign-in) and APPROVAL_NOTIFY_EMAILS."""
    admins = User.objects.filter(is_staff=True, is_active=True).exclude(email="")
    emails = [*admins.values_list("email", flat=True), *settings.APPROVAL_NOTIFY_EMAILS]
    return sorted(set(emails))


def request_arrived(key: ApiKey) -> None:
    _send(
        f"Key request for {key.api.name}: “{key.name}” from {key.owner.email}",
        "emails/request_arrived.txt",
        {"key": key, "queue_url": _url(reverse("manage_approvals"))},
        admin_recipients(),
    )


def decision(key: ApiKey, action: str, reason: str = "") -> None:
    """Tell the owner what was decided about their key, and why (not if they are gone)."""
    if not key.owner.is_active:
        return
    _send(
        f"Your API key “{key.name}” was {action}",
        "emails/decision.txt",
        {
            "key": key,
            "action": action,
            "reason": reason,
            "key_url": key_url(key),
            "reissue_url": _reissue_url(key) if key.client_missing_since else "",
        },
        [key.owner.email],
    )


def secret_exposed(key: ApiKey, report: LeakReport) -> None:
    """Tell the owner where their secret was found, what the portal did, and how to rotate."""
    if not key.owner.is_active:
        return
    _send(
        f"The secret of your API key “{key.name}” was found exposed",
        "emails/secret_exposed.txt",
        {
            "key": key,
            "report": report,
            "key_url": key_url(key),
            "rotate_url": _url(reverse("rotate_key", args=[key.pk])),
            "guide_url": _url(reverse("partner_docs")) + "#leaked-secret",
        },
        [key.owner.email],
    )


def webhook_failed(message: WebhookMessage) -> None:
    """Tell an endpoint's owner a message was given up on after the retries."""
    endpoint = message.endpoint
    _send(
        "A webhook could not be delivered",
        "emails/webhook_failed.txt",
        {
            "endpoint": endpoint,
            "message": message,
            "hours": settings.WEBHOOK_RETRY_HOURS,
            "endpoint_url": _url(reverse("webhook_detail", args=[endpoint.pk])),
        },
        [endpoint.owner.email],
    )


def webhook_paused(endpoint: WebhookEndpoint) -> None:
    _send(
        "A webhook endpoint was paused",
        "emails/webhook_paused.txt",
        {"endpoint": endpoint, "endpoint_url": _url(reverse("webhook_detail", args=[endpoint.pk]))},
        [endpoint.owner.email],
    )


def key_recovered(key: ApiKey) -> bool:
    """Tell the owner a key of theirs was rebuilt from Keycloak, and ask them to name it."""
    return _send(
        f"Your API key for {key.api.name} was recovered: please name it",
        "emails/key_recovered.txt",
        {"key": key, "rename_url": _url(reverse("rename_key", args=[key.pk]))},
        [key.owner.email],
    )


def key_dormant(key: ApiKey, days: int, days_left: int | None) -> bool:
    """Warn the owner that a key has not been used for `days` days (the dormant-key policy)."""
    return _send(
        f"Your API key “{key.name}” has not been used for {days} days",
        "emails/key_dormant.txt",
        {"key": key, "days": days, "days_left": days_left, "key_url": key_url(key)},
        [key.owner.email],
    )


def expiry_reminder(key: ApiKey, days: int) -> bool:
    return _send(
        f"Your API key “{key.name}” expires in {days} day{'s' if days != 1 else ''}",
        "emails/expiry_reminder.txt",
        {"key": key, "days": days, "key_url": key_url(key)},
        [key.owner.email],
    )


def approval_digest(pending: Sequence[ApiKey]) -> bool:
    return _send(
        f"{len(pending)} key request{'s' if len(pending) != 1 else ''} waiting for approval",
        "emails/approval_digest.txt",
        {"pending": pending, "queue_url": _url(reverse("manage_approvals"))},
        admin_recipients(),
    )


def key_url(key: ApiKey) -> str:
    return _url(reverse("key_detail", args=[key.pk]))


def _reissue_url(key: ApiKey) -> str:
    """One click to make a vanished client again: a rotation, or the public keys sent again."""
    return _url(reverse("rotate_key" if key.uses_secret else "key_detail", args=[key.pk]))


def _url(path: str) -> str:
    return f"{settings.PORTAL_URL}{path}"


def _send(subject: str, template: str, context: dict[str, object], to: Iterable[str]) -> bool:
    recipients = [address for address in to if address]
    if not recipients:
        log.warning("No recipients for %r", subject)
        return False
    body = render_to_string(template, context)
    try:
        send_mail(subject, body, None, recipients)
    except OSError as error:  # SMTP errors are OSErrors too
        log.error("Could not send %r to %s: %s", subject, recipients, error)
        return False
    return True
