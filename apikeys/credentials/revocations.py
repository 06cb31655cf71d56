"""Revocation feeds: each API's keys no longer in good standing, for its resource servers.

A resource server in strict mode (apikeys/credentials/bearer.py) keeps the set of its API's keys
that are no longer in good standing in memory, reads it again every few seconds, and refuses
their tokens with no call per request. A server of another process reads it from
GET /feeds/revocations with the API's feed token (`manage.py revocation_feed_token`); the
portal's own sample API builds the same document in process.

A key is listed while a token of it may still be unexpired: keys suspended (or being
suspended, revoked or rejected), unfinished or awaiting approval, keys revoked, expired or
rejected less than FEED_WINDOW ago (longer than any access token lives: an API's tokens
live at most an hour), active
keys past their expiry that the expiry job has not ended yet, and the keys of owners
disabled in Keycloak.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.utils import timezone
from prometheus_client import Counter

from apikeys.models import Api, ApiKey

FEED_WINDOW = timedelta(hours=2)
TOKEN_PREFIX = "rfeed_"  # noqa: S105 - the prefix, which secret scanners can match
FEED_READS = Counter(
    "portal_revocation_feed_reads", "Revocation feed documents served, by API.", ["api"]
)

Document = dict[str, Any]


def refused_keys(api: Api, now: datetime) -> dict[str, str]:
    """The API's keys whose tokens must be refused now: client id to why."""
    since = now - FEED_WINDOW
    status = ApiKey.Status
    refused = (
        Q(
            status__in=(
                status.SUSPENDED,
                status.SUSPENDING,
                status.REVOKING,
                status.REJECTING,
                status.UNFINISHED,  # no token of it was ever meant to be used
                status.PENDING,
            )
        )
        | Q(status__in=(status.REVOKED, status.EXPIRED, status.REJECTED), ended_at__gte=since)
        | Q(status=status.ACTIVE, expires_at__lte=now)
        | Q(status=status.ACTIVE, owner__is_active=False, team__isnull=True)  # a team's outlives
    )
    keys = ApiKey.objects.filter(refused, api=api).values_list(
        "client_id", "status", "expires_at", "owner__is_active"
    )
    return {
        client_id: _why(client_id, key_status, expires_at <= now, owner_active)
        for client_id, key_status, expires_at, owner_active in keys
    }


def _why(client_id: str, key_status: str, expired: bool, owner_active: bool) -> str:
    if key_status == ApiKey.Status.ACTIVE:
        if expired:
            return f"The key {client_id} has expired."
        return f"The owner of the key {client_id} is disabled."
    label = ApiKey.Status(key_status).label.lower()
    return f"The key {client_id} is {label}."


def document(api: Api) -> Document:
    """The feed of `api`, as served to its resource servers.

    `other_apis` names the catalog's other audiences: a token that carries one of them was
    issued to another API's key (an audience added to its scope in Keycloak by hand gives
    it no access here).
    """
    now = timezone.now()
    others = Api.objects.exclude(pk=api.pk).values_list("audience", "name")
    return {
        "api": api.slug,
        "audience": api.audience,
        "generated_at": now.isoformat(),
        "refresh_seconds": settings.REVOCATION_FEED_REFRESH_SECONDS,
        "refused": refused_keys(api, now),
        "other_apis": dict(others),
    }


def new_feed_token(api: Api) -> str:
    """Make the API's feed token (the previous one stops working) and return it, once."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    api.feed_token_digest = _digest(token)
    api.save(update_fields=["feed_token_digest"])
    return token


def api_of(token: str) -> Api | None:
    if not token.startswith(TOKEN_PREFIX):
        return None
    return Api.objects.filter(feed_token_digest=_digest(token)).first()


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
