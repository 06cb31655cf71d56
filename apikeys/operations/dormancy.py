"""The dormant-key policy: warn the owner of a key unused for a while, then suspend it.

An active key with no token requested for its API's warning days (DORMANT_KEY_DAYS unless
the API sets its own) is announced once per quiet spell: the owner is mailed and the
key.unused webhook event sent, and the warning audited. Once it has been quiet for the
suspension days (DORMANT_SUSPEND_DAYS, 0 for never), and its owner was warned at least the
policy's notice period (suspension days minus warning days) before, it is suspended,
audited and mailed like any suspension; its owner reinstates it in one click
(`reinstate_by_owner`), which starts a new quiet spell. Nobody is suspended while last-used
times cannot be trusted (no push, and the polling job has not completed for two days).

A quiet spell starts at the key's last use, or its creation if never used, or its last
reinstatement, whichever is latest.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from apikeys.keycloak.client import KeycloakFailure
from apikeys.models import (
    Api,
    ApiKey,
    AuditEntry,
    JobState,
    UnusedNotice,
    User,
    WebhookMessage,
    WrongState,
)
from apikeys.operations import lifecycle, notifications

log = logging.getLogger(__name__)

# The reason a dormant key is suspended with: the owner may reinstate exactly those.
SUSPENDED_REASON = "Unused for {days} days: suspended by the dormant-key policy."
OWNER_REINSTATED = "Reinstated by its owner after a dormant-key suspension."


def is_dormant_suspension(key: ApiKey) -> bool:
    return (
        key.status == ApiKey.Status.SUSPENDED
        and key.status_reason.endswith(SUSPENDED_REASON.split(": ", 1)[1])
        and key.secret_exposed_at is None
    )


@dataclass
class DormancyRun:
    warned: list[ApiKey] = field(default_factory=list)
    suspended: list[ApiKey] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def run(now: datetime | None = None) -> DormancyRun:
    """Warn and suspend this deployment's dormant active keys; safe to run twice."""
    now = now or timezone.now()
    result = DormancyRun()
    overrides = Api.objects.exclude(dormant_warn_days=None).values_list("dormant_warn_days")
    shortest = min([settings.DORMANT_KEY_DAYS, *(days for (days,) in overrides if days)])
    cutoff = now - timedelta(days=shortest)
    candidates = (
        ApiKey.objects.allowing("suspend")
        .filter(status=ApiKey.Status.ACTIVE, created_at__lt=cutoff)
        .filter(Q(last_used_at__isnull=True) | Q(last_used_at__lt=cutoff))
        .select_related("owner", "api")
    )
    trusted = _last_use_is_known(now)
    for key in candidates:
        warn_days, suspend_days = key.api.dormant_policy
        since = key.quiet_since
        days = (now - since).days
        if days < warn_days:
            continue
        notice = key.unused_notices.filter(since=since, owner_warned=True).first()
        if notice is None:
            if _warn(key, since, days, now):
                result.warned.append(key)
            continue
        # The owner has the policy's whole notice period from their warning, however late
        # it came (the job did not run, the policy changed).
        due = notice.sent_at + timedelta(days=max(suspend_days - warn_days, 1))
        if suspend_days and days >= suspend_days and now >= due and trusted:
            _suspend(result, key, days)
    return result


def _last_use_is_known(now: datetime) -> bool:
    """Whether last-used times can be trusted: Keycloak pushes events, or the polling job
    completed in the last two days. Otherwise nobody is suspended for seeming unused."""
    if settings.KEYCLOAK_PUSH_EVENTS:
        return True
    job = JobState.objects.filter(name="last_used").first()
    last = job.last_success_at if job else None
    return last is not None and now - last < timedelta(days=2)


def _warn(key: ApiKey, since: datetime, days: int, now: datetime) -> bool:
    """Announce the quiet spell once: the notice, the webhook event, the audit entry, then
    the mail. A notice of the webhook alone (made before this policy) gets its mail now."""
    warn_days, suspend_days = key.api.dormant_policy
    left = max(suspend_days - days, suspend_days - warn_days, 1) if suspend_days else None
    try:
        with transaction.atomic():
            notice, made = UnusedNotice.objects.get_or_create(
                key=key, since=since, defaults={"sent_at": now}
            )
            if notice.owner_warned:
                return False  # another run warned meanwhile
            if made:
                WebhookMessage.objects.emit(
                    key, "key.unused", unused_since=since.isoformat(), days_unused=days
                )
            UnusedNotice.objects.filter(pk=notice.pk).update(owner_warned=True, sent_at=now)
            reason = f"Unused for {days} days." + (
                f" It will be suspended in {left} days if it stays unused." if left else ""
            )
            AuditEntry.record(key, AuditEntry.Action.DORMANT_WARNED, actor=None, reason=reason)
    except IntegrityError:
        return False  # another run made the notice at the same moment
    notifications.key_dormant(key, days, left)
    return True


def _suspend(result: DormancyRun, key: ApiKey, days: int) -> None:
    try:
        key = lifecycle.suspend_key(key, actor=None, reason=SUSPENDED_REASON.format(days=days))
    except WrongState:
        return  # someone acted on the key meanwhile
    except (KeycloakFailure, DatabaseError) as error:
        # The decision is recorded first: the key is refused by strict APIs already, and
        # the next run (or reconcile) completes the suspension in Keycloak.
        log.warning("%s: %s", key.client_id, error)
        result.failures.append(f"{key.client_id}: {error}")
        return
    result.suspended.append(key)


def reinstate_by_owner(key: ApiKey, *, owner: User, ip_address: str | None = None) -> ApiKey:
    """The owner's one click: a key the dormant-key policy suspended works again. The door
    checked that `owner` may change the key (its owner, or a developer of its team)."""
    mine = key.owner_id == owner.pk or key.team_id is not None
    if not mine or not is_dormant_suspension(key):
        raise WrongState(
            "Only a key suspended for being unused can be reinstated by its owner; ask an "
            "administrator about the others."
        )
    # Checked again under the key's lock: an admin may have suspended it anew meanwhile.
    return lifecycle.reinstate_key(
        key,
        actor=owner,
        ip_address=ip_address,
        reason=OWNER_REINSTATED,
        allowed=is_dormant_suspension,
    )
