"""Exports for spreadsheets and archives: the audit trail as CSV."""

from __future__ import annotations

import csv
import itertools

from django.db.models import QuerySet
from django.http import StreamingHttpResponse

from apikeys.models import AuditEntry, User


class _Echo:
    """A file-like object for csv.writer that hands each row back instead of keeping it."""

    def write(self, value: str) -> str:
        return value


def audit_csv(
    entries: QuerySet[AuditEntry], filename: str, *, viewer: User | None = None
) -> StreamingHttpResponse:
    """Audit entries as CSV, streamed; as `viewer` (a key's owner) may see them, if given.

    Every text cell is defused: an actor's email is chosen by its owner, and Keycloak accepts
    addresses that start with "=".
    """
    writer = csv.writer(_Echo())
    header = [
        *("time (UTC)", "actor", "action", "client id", "api", "ip address", "reason"),
        *("key name now", "via"),  # added later: new columns go last, so old readers still work
    ]
    rows = (
        [
            entry.at.isoformat(),
            *map(
                csv_safe,
                [
                    entry.actor_as_seen_by(viewer),
                    entry.action,
                    entry.client_id,
                    entry.api.slug if entry.api else "",
                    entry.address_as_seen_by(viewer),
                    entry.reason,
                    entry.key_name_as_seen_by(viewer),
                ],
            ),
            entry.via,
        ]
        for entry in entries.select_related("api", "key").iterator(chunk_size=2000)
    )
    response = StreamingHttpResponse(
        (writer.writerow(row) for row in itertools.chain([header], rows)),
        content_type="text/csv; charset=utf-8",
    )
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def csv_safe(text: str) -> str:
    """Defuse spreadsheet formulas (CSV injection) in free text that people typed."""
    return f"'{text}" if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
