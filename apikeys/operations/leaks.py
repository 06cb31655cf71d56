"""Secrets found exposed: reports from secret scanners, and what the portal does about them.

The portal's secrets are made to be found (`kcak_` prefix, a checksum: secret_format.py).
A scanner that finds one, GitHub's secret scanning partner program or anything speaking its
format, POSTs a JSON list of what it found, signed with ECDSA (P-256, SHA-256) over the raw
body: `Github-Public-Key-Identifier` names its key, `Github-Public-Key-Signature` carries the
base64 DER signature. Trusted keys come from SECRET_SCANNING_KEYS, in the format GitHub
publishes them. The answer gives a verdict per token, by its SHA-256 (never the token):
`true_positive` for one of the portal's secrets, `false_positive` for anything else.

What a found secret does, by which of its key's secrets it is (`fingerprints.identify`):

- the current one: the key is suspended at once (or revoked, if an administrator chose so
  under Leaked secrets), the owner mailed where it was found and how to rotate, and the key
  marked exposed: nobody can approve or reinstate it until its secret is rotated;
- the previous one, still in a rotation's grace period: the grace ends now;
- a retired one: nothing to stop; the owner is told, so they remove it from where it is.

Every match is kept as a LeakReport, for the owner's key page and the administrators.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from apikeys.credentials import fingerprints
from apikeys.credentials.secret_format import (
    REGISTRATION_ACCESS_PREFIX,
    REGISTRATION_PREFIX,
    is_well_formed,
)
from apikeys.keycloak.client import KeycloakFailure
from apikeys.models import (
    ApiKey,
    AuditEntry,
    LeakReport,
    Membership,
    PortalSetting,
    User,
    WrongState,
)
from apikeys.operations import lifecycle, notifications, registration_tokens

log = logging.getLogger(__name__)

MAX_TOKENS = 1000
KEYS_MAX_AGE = 3600  # seconds before the trusted keys are read again
KEYS_MIN_INTERVAL = 60  # at most this often when a report names a key not yet known


class BadReport(ValueError):
    """Not a report in the expected format (the message says what is wrong)."""


class BadSignature(ValueError):
    """The report is not signed by a trusted key."""


@dataclass(frozen=True)
class Found:
    token: str
    type: str
    url: str
    source: str


def verify(body: bytes, key_id: str, signature: str) -> None:
    """Raise BadSignature unless `signature` is a trusted key's ECDSA signature of `body`."""
    if not key_id or not signature:
        raise BadSignature("The report carries no signature.")
    key = _trusted_key(key_id)
    if key is None:
        raise BadSignature("The report is signed with a key the portal does not trust.")
    try:
        key.verify(base64.b64decode(signature, validate=True), body, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, binascii.Error, ValueError):
        raise BadSignature("The report's signature does not match it.") from None


@sensitive_variables()  # the reported tokens
def parse(body: bytes) -> list[Found]:
    """The found tokens of a report. Items that are not objects are answered as unknown."""
    try:
        items = json.loads(body)
    except (ValueError, RecursionError):
        raise BadReport("The report is not JSON.") from None
    if not isinstance(items, list):
        raise BadReport("The report must be a JSON list of found tokens.")
    if len(items) > MAX_TOKENS:
        raise BadReport(f"A report holds at most {MAX_TOKENS} tokens.")
    return [_found(item if isinstance(item, dict) else {}) for item in items]


def _found(item: dict[str, Any]) -> Found:
    """One reported token; whatever is missing or not text is empty (answered as unknown)."""
    return Found(
        token=_text(item.get("token")),
        type=_text(item.get("type"))[:100],
        url=_text(item.get("url"))[:2000],
        source=_text(item.get("source"))[:100],
    )


@sensitive_variables()  # the reported tokens
def handle(found: list[Found], *, reporter: str) -> list[dict[str, str]]:
    """Act on each found token; the verdicts, in the format GitHub expects back."""
    return [
        {
            "token_hash": hashlib.sha256(item.token.encode()).hexdigest(),
            "token_type": item.type,
            "label": "true_positive" if _each(item, reporter) else "false_positive",
        }
        for item in found
    ]


@sensitive_variables()  # the reported token
def _each(found: Found, reporter: str) -> bool:
    """One token: whatever its key's state, the report's other tokens are still acted on."""
    try:
        return act_on(found, reporter=reporter)
    except WrongState as refusal:  # a key acted on meanwhile: it is one of ours, left as it is
        log.warning("A reported secret's key could not be acted on: %s", refusal)
        return True


@sensitive_variables()  # the reported token
def act_on(found: Found, *, reporter: str) -> bool:
    """Do what a found token calls for; True if it is one of the portal's secrets.

    What the token is, and what that calls for, is recorded in one transaction under the
    key's lock (a rotation at the same moment comes before or after, never between), and
    audited; Keycloak is told after, so a failure there leaves the decision standing for
    reconcile to carry out.
    """
    if is_well_formed(found.token, REGISTRATION_PREFIX):
        return _registration_token_found(found, reporter)
    if is_well_formed(found.token, REGISTRATION_ACCESS_PREFIX):
        return _registration_access_token_found(found, reporter)
    if not is_well_formed(found.token):
        return False
    seen = fingerprints.identify(found.token, now=timezone.now())
    if seen is None:
        return False
    where = f" at {found.url}" if found.url else ""
    reason = f"{lifecycle.EXPOSED}{where} (reported by {reporter})."
    stop = (
        "revoke" if PortalSetting.get(PortalSetting.LEAKED_SECRET_ACTION) == "revoke" else "suspend"
    )
    with transaction.atomic():
        key = ApiKey.objects.locked(seen.key.pk)
        match = fingerprints.identify(found.token, now=timezone.now())  # again, under the lock
        if match is None:
            return False
        AuditEntry.record(
            key,
            AuditEntry.Action.LEAK_REPORTED,
            actor=None,
            reason=f"{match.verdict.label}. {reason}",
        )
        decided = previous = False
        if match.verdict == LeakReport.Verdict.CURRENT:
            key.secret_exposed_at = timezone.now()
            key.save(update_fields=["secret_exposed_at"])
            if decided := key.allows(stop):
                key = lifecycle.decide(key, action=stop, actor=None, ip_address=None, reason=reason)
        elif match.verdict == LeakReport.Verdict.PREVIOUS and key.allows("end_grace"):
            try:
                key = lifecycle.record_grace_end(key, actor=None, reason=reason)
                previous = True
            except WrongState:  # its grace ended meanwhile: nothing left to stop
                pass
    action = _carry_out(key, decided=decided, previous=previous, verdict=match.verdict)
    report = LeakReport.objects.create(
        key=key,
        verdict=match.verdict,
        reporter=reporter[:100],
        url=found.url,
        source=found.source,
        action=action[:200],
    )
    key.refresh_from_db()  # as the action left it
    notifications.secret_exposed(key, report)
    log.warning("Exposed secret of %s reported (%s): %s", key.client_id, match.verdict, action)
    return True


@sensitive_variables()  # the reported token
def _registration_token_found(found: Found, reporter: str) -> bool:
    """A registration token found exposed registers nothing more (revoked at once, whatever
    the leak policy: it makes keys, it is not one)."""
    token = registration_tokens.token_for(found.token)
    if token is None:
        return False
    where = f" at {found.url}" if found.url else ""
    registration_tokens.revoke_token(
        token, actor=None, reason=f"Found exposed{where} (reported by {reporter})."
    )
    log.warning("Exposed registration token %s reported: revoked", token.pk)
    return True


@sensitive_variables()  # the reported token
def _registration_access_token_found(found: Found, reporter: str) -> bool:
    """A registration access token found exposed manages its key no more (its owner still
    does, on the portal's pages)."""
    key = ApiKey.objects.filter(
        registration_access_digest=registration_tokens.digest(found.token)
    ).first()
    if key is None:
        return False
    with transaction.atomic():
        key = ApiKey.objects.locked(key.pk)
        key.registration_access_digest = ""
        key.save(update_fields=["registration_access_digest"])
        where = f" at {found.url}" if found.url else ""
        AuditEntry.record(
            key,
            AuditEntry.Action.LEAK_REPORTED,
            actor=None,
            reason=f"Its registration access token was found exposed{where} (reported by "
            f"{reporter}): software can no longer manage the key through it.",
        )
    return True


def _carry_out(key: ApiKey, *, decided: bool, previous: bool, verdict: str) -> str:
    """Tell Keycloak what was recorded; what was done, for the report and the owner."""
    try:
        if decided:
            key = lifecycle.carry_out(key, notify=False)
            return f"Key {key.get_status_display().lower()}."
        if previous:
            lifecycle.stop_previous_secret(key)
            return "The previous secret was stopped: its grace period ended now."
    except KeycloakFailure as failure:
        return f"Recorded; Keycloak not told yet, reconcile will ({failure.for_people})"
    if verdict == LeakReport.Verdict.CURRENT:
        return f"Marked exposed; the key was {key.get_status_display().lower()} already."
    return "Nothing to stop: the key no longer uses that secret."


@dataclass(frozen=True)
class CheckAnswer:
    """What "check a secret" tells a person: `match` only if they may see its key."""

    well_formed: bool
    match: fingerprints.Match | None


@sensitive_variables()  # the secret being checked
def check(secret: str, *, viewer: User, as_admin: bool) -> CheckAnswer:
    """Whether `secret` is one of the portal's, and which key's (the viewer's, or any for an
    administrator acting as one: at level 2). Nothing is stored or logged; others' keys stay
    unnamed."""
    if not is_well_formed(secret):
        return CheckAnswer(well_formed=False, match=None)
    match = fingerprints.identify(secret, now=timezone.now())
    if match is not None and not ((as_admin and viewer.is_staff) or _reaches(viewer, match.key)):
        match = None
    return CheckAnswer(well_formed=True, match=match)


def _reaches(viewer: User, key: ApiKey) -> bool:
    """The viewer's own personal key, or a key of a team they are in now."""
    if key.team_id is None:
        return key.owner_id == viewer.pk
    return Membership.objects.filter(team_id=key.team_id, user=viewer).exists()


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


# The trusted keys, read again after KEYS_MAX_AGE, or sooner for an unknown key id.
_keys: dict[str, ec.EllipticCurvePublicKey] = {}
_keys_read_at = 0.0
_keys_lock = threading.Lock()


def _trusted_key(key_id: str) -> ec.EllipticCurvePublicKey | None:
    global _keys, _keys_read_at
    with _keys_lock:
        age = time.monotonic() - _keys_read_at
        if age > KEYS_MAX_AGE or (key_id not in _keys and age > KEYS_MIN_INTERVAL):
            _keys_read_at = time.monotonic()  # a failure waits its turn too: no hammering
            try:
                _keys = _read_trusted_keys()
            except (OSError, ValueError, KeyError, requests.RequestException) as error:
                log.error("Could not read SECRET_SCANNING_KEYS (keeping the last): %s", error)
        return _keys.get(key_id)


def forget_trusted_keys() -> None:
    """Read the trusted keys again on the next report (after a settings change)."""
    global _keys_read_at
    with _keys_lock:
        _keys.clear()
        _keys_read_at = 0.0


def _read_trusted_keys() -> dict[str, ec.EllipticCurvePublicKey]:
    source = settings.SECRET_SCANNING_KEYS
    if source.startswith(("https://", "http://")):
        response = requests.get(source, timeout=5)
        response.raise_for_status()
        document = response.json()
    else:
        document = json.loads(Path(source).read_text())
    keys = {}
    for entry in document.get("public_keys", []):
        key = load_pem_public_key(entry["key"].encode())
        if isinstance(key, ec.EllipticCurvePublicKey):
            keys[entry["key_identifier"]] = key
    return keys
