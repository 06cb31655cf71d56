"""The portal's emails: requests to admins, decisions and reminders to owners.

Who hears about a key is decided once (`told_of`): a personal key's owner; a team key's
owners and the member who made it (while they are in the team).

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

from apikeys.models import (
    ApiKey,
    Invitation,
    LeakReport,
    Membership,
    PermissionRequest,
    Team,
    User,
    WebhookEndpoint,
    WebhookMessage,
)

log = logging.getLogger(__name__)


def admin_recipients() -> list[str]:
    """Portal admins (as of their last sign-in) and APPROVAL_NOTIFY_EMAILS."""
    admins = User.objects.filter(is_staff=True, is_active=True).exclude(email="")
    emails = [*admins.values_list("email", flat=True), *settings.APPROVAL_NOTIFY_EMAILS]
    return sorted(set(emails))


def told_of(key: ApiKey) -> list[str]:
    """Who is mailed about a key: its owner (if active); for a team key, the team's owners and
    the member who made it, while they are in the team."""
    if key.team is None:
        return [key.owner.email] if key.owner.is_active else []
    people = set(key.team.owners().values_list("email", flat=True))
    if key.owner.is_active and Membership.objects.filter(team=key.team, user=key.owner).exists():
        people.add(key.owner.email)
    return sorted(people)


def endpoint_people(endpoint: WebhookEndpoint) -> list[str]:
    """Who is mailed about a webhook endpoint: its owner, or its team's owners."""
    if endpoint.team is not None:
        return sorted(endpoint.team.owners().values_list("email", flat=True))
    return [endpoint.owner.email]


def request_arrived(key: ApiKey) -> None:
    team = f" for the team {key.team.name}" if key.team is not None else ""
    _send(
        f"Key request for {key.api.name}: “{key.name}” from {key.owner.email}{team}",
        "emails/request_arrived.txt",
        {"key": key, "queue_url": _url(reverse("manage_approvals"))},
        admin_recipients(),
    )


def permissions_requested(request: PermissionRequest) -> None:
    key = request.key
    _send(
        f"Permissions requested for “{key.name}” ({key.api.name}): {', '.join(request.names)}",
        "emails/permissions_requested.txt",
        {"request": request, "key": key, "queue_url": _url(reverse("manage_approvals"))},
        admin_recipients(),
    )


def permissions_decided(request: PermissionRequest, key: ApiKey) -> None:
    """Tell whoever asked (and the key's people) what was decided about more permissions."""
    given = "given" if request.approved else "refused"
    _send(
        f"Permissions {given} for your API key “{key.name}”: {', '.join(request.names)}",
        "emails/permissions_decided.txt",
        {"request": request, "key": key, "given": given, "key_url": key_url(key)},
        sorted(set(told_of(key)) | _asker(request, key)),
    )


def _asker(request: PermissionRequest, key: ApiKey) -> set[str]:
    """Who asked, while they are active and still reach the key."""
    asker = request.requested_by
    reaches = key.team is None or Membership.objects.filter(team=key.team, user=asker).exists()
    return {asker.email} if asker.is_active and reaches and asker.email else set()


def decision(key: ApiKey, action: str, reason: str = "") -> None:
    """Tell the owner what was decided about their key, and why (not if they are gone)."""
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
        told_of(key),
    )


def secret_exposed(key: ApiKey, report: LeakReport) -> None:
    """Tell the owner where their secret was found, what the portal did, and how to rotate."""
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
        told_of(key),
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
        endpoint_people(endpoint),
    )


def webhook_paused(endpoint: WebhookEndpoint) -> None:
    _send(
        "A webhook endpoint was paused",
        "emails/webhook_paused.txt",
        {"endpoint": endpoint, "endpoint_url": _url(reverse("webhook_detail", args=[endpoint.pk]))},
        endpoint_people(endpoint),
    )


def key_recovered(key: ApiKey) -> bool:
    """Tell the owner a key of theirs was rebuilt from Keycloak, and ask them to name it."""
    return _send(
        f"Your API key for {key.api.name} was recovered: please name it",
        "emails/key_recovered.txt",
        {"key": key, "rename_url": _url(reverse("rename_key", args=[key.pk]))},
        told_of(key),
    )


def key_dormant(key: ApiKey, days: int, days_left: int | None) -> bool:
    """Warn the owner that a key has not been used for `days` days (the dormant-key policy)."""
    return _send(
        f"Your API key “{key.name}” has not been used for {days} days",
        "emails/key_dormant.txt",
        {"key": key, "days": days, "days_left": days_left, "key_url": key_url(key)},
        told_of(key),
    )


def expiry_reminder(key: ApiKey, days: int) -> bool:
    return _send(
        f"Your API key “{key.name}” expires in {days} day{'s' if days != 1 else ''}",
        "emails/expiry_reminder.txt",
        {"key": key, "days": days, "key_url": key_url(key)},
        told_of(key),
    )


def approval_digest(pending: Sequence[ApiKey]) -> bool:
    return _send(
        f"{len(pending)} key request{'s' if len(pending) != 1 else ''} waiting for approval",
        "emails/approval_digest.txt",
        {"pending": pending, "queue_url": _url(reverse("manage_approvals"))},
        admin_recipients(),
    )


def invitation(invite: Invitation, token: str) -> bool:
    """The invitation to join a team, with its single-use link (the token is in it only)."""
    return _send(
        f"You are invited to the team {invite.team.name} on the API key portal",
        "emails/invitation.txt",
        {
            "invite": invite,
            "accept_url": _url(reverse("invitation", args=[token])),
            "days": settings.TEAM_INVITATION_DAYS,
        },
        [invite.email],
    )


def team_ownerless(team: Team) -> bool:
    """Ask the administrators to appoint an owner of a team that lost its last one."""
    return _send(
        f"The team {team.name} has no owner",
        "emails/team_ownerless.txt",
        {"team": team, "team_url": _url(reverse("manage_team", args=[team.pk]))},
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
