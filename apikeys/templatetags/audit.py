"""The audit table as the reader may see it: owners never see an administrator's address."""

from __future__ import annotations

from django import template

from apikeys.models import AuditEntry, User

register = template.Library()


@register.filter
def actor_for(entry: AuditEntry, viewer: User | str | None) -> str:
    """Who acted, as `viewer` (a customer; empty for administrators) may see it."""
    return entry.actor_as_seen_by(viewer if isinstance(viewer, User) else None)


@register.filter
def key_name_for(entry: AuditEntry, viewer: User | str | None) -> str:
    return entry.key_name_as_seen_by(viewer if isinstance(viewer, User) else None)


@register.filter
def address_for(entry: AuditEntry, viewer: User | str | None) -> str:
    return entry.address_as_seen_by(viewer if isinstance(viewer, User) else None)


ISSUER_ACTIONS = frozenset({AuditEntry.Action.ISSUER_ADDED, AuditEntry.Action.ISSUER_REMOVED})


@register.filter
def about_issuer(entry: AuditEntry) -> bool:
    """Whether the entry is about a trusted workload issuer (named in its reason)."""
    return entry.action in ISSUER_ACTIONS
