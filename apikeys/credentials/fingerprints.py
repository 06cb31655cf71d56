"""Keyed fingerprints of the secrets the portal issues, to recognise one found elsewhere.

A fingerprint is HMAC-SHA256 of the secret under SECRET_FINGERPRINT_KEY (a setting, not in
the database). Without that key the table says nothing: the secrets have 190 bits of
randomness, and even a guess cannot be checked against it. Each issued secret gets a row;
a rotation marks the one it replaced. Which secret a found one is, and whether it still
works, is decided here (`identify`).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.views.decorators.debug import sensitive_variables

from apikeys.models import ApiKey, LeakReport, SecretFingerprint


@sensitive_variables("secret")
def fingerprint(secret: str) -> str:
    key = settings.SECRET_FINGERPRINT_KEY.encode()
    return hmac.new(key, secret.encode(), hashlib.sha256).hexdigest()


@sensitive_variables("secret")
def record_issued(key: ApiKey, secret: str, *, now: datetime) -> None:
    """Keep the new secret's fingerprint; the one it replaces is marked replaced now."""
    key.fingerprints.filter(replaced_at__isnull=True).update(replaced_at=now)
    SecretFingerprint.objects.create(key=key, digest=fingerprint(secret), issued_at=now)


@sensitive_variables("secret")
def record_first(key: ApiKey, secret: str, *, now: datetime) -> None:
    """Keep the fingerprint of a new key's first secret (there is none to mark replaced)."""
    SecretFingerprint.objects.create(key=key, digest=fingerprint(secret), issued_at=now)


@sensitive_variables("secret")
def record_replaced(
    key: ApiKey, secret: str, *, issued_at: datetime, replaced_at: datetime
) -> None:
    """Keep the fingerprint of a secret that was already replaced, unless it is kept (a
    record rebuilt after a restore learns of a rotation's previous secret)."""
    digest = fingerprint(secret)
    if not key.fingerprints.filter(digest=digest).exists():
        SecretFingerprint.objects.create(
            key=key, digest=digest, issued_at=issued_at, replaced_at=replaced_at
        )


@dataclass(frozen=True)
class Match:
    key: ApiKey
    verdict: LeakReport.Verdict
    issued_at: datetime

    @property
    def works(self) -> bool:
        """Whether the secret can still get tokens (its key may be suspended for now)."""
        return self.verdict != LeakReport.Verdict.RETIRED and self.key.is_live


@sensitive_variables("secret")
def identify(secret: str, *, now: datetime) -> Match | None:
    """Which key's secret this is, and whether it is its current, previous or a retired one."""
    row = (
        SecretFingerprint.objects.select_related("key", "key__owner", "key__api")
        .filter(digest=fingerprint(secret))
        .first()
    )
    if row is None:
        return None
    key = row.key
    if row.replaced_at is None:
        verdict = LeakReport.Verdict.CURRENT
    elif key.previous_secret_works(now) and row == _last_replaced(key):
        verdict = LeakReport.Verdict.PREVIOUS
    else:
        verdict = LeakReport.Verdict.RETIRED
    return Match(key, verdict, row.issued_at)


def _last_replaced(key: ApiKey) -> SecretFingerprint | None:
    return key.fingerprints.filter(replaced_at__isnull=False).order_by("-replaced_at").first()
