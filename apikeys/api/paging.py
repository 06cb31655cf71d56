"""Pages of lists, and audit entries as the reader may see them."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from django.db.models import QuerySet
from ninja import Schema
from pydantic import Field

from apikeys.models import AuditEntry, User


class PageQuery(Schema):
    page: int = Field(1, ge=1, le=100_000, description="From 1.")
    per_page: int = Field(50, ge=1, le=200)


def paginate(
    items: QuerySet[Any], query: PageQuery, shape: Callable[[Any], Any] | None = None
) -> dict[str, Any]:
    count = items.count()
    start = (query.page - 1) * query.per_page
    chunk = list(items[start : start + query.per_page])
    return {
        "count": count,
        "page": query.page,
        "pages": max(math.ceil(count / query.per_page), 1),
        "items": [shape(item) for item in chunk] if shape else chunk,
    }


def audit_out(entry: AuditEntry, *, viewer: User | None) -> dict[str, Any]:
    """An audit entry; to a key's owner (`viewer`), administrators are unnamed, unplaced."""
    return {
        "at": entry.at,
        "action": entry.action,
        "action_label": entry.get_action_display(),
        "client_id": entry.client_id,
        "key_name": entry.key_name_as_seen_by(viewer),
        "api": entry.api.slug if entry.api else None,
        "actor": entry.actor_as_seen_by(viewer),
        "ip_address": entry.address_as_seen_by(viewer),
        "reason": entry.reason,
        "via": entry.via,
    }
