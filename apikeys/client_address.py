"""The address a request came from, for the audit trail."""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest


def client_ip(request: HttpRequest) -> str | None:
    """The client's address, as the nearest trusted reverse proxy saw it.

    Behind TRUSTED_PROXIES reverse proxies, each proxy appends the address it saw to
    X-Forwarded-For; the entry the nearest trusted proxy added is the client's. Entries to
    its left can be forged by the client, so they are never used.
    """
    if settings.TRUSTED_PROXIES:
        forwarded = [a.strip() for a in request.headers.get("X-Forwarded-For", "").split(",")]
        nearest = (
            forwarded[-settings.TRUSTED_PROXIES]
            if len(forwarded) >= settings.TRUSTED_PROXIES
            else ""
        )
        if address := _valid(nearest):
            return address
    return _valid(request.META.get("REMOTE_ADDR", ""))


def _valid(candidate: str) -> str | None:
    """The address in its canonical form, or None if it is not one (it goes into an audit
    entry's address column, which refuses anything else, after the Keycloak change)."""
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return None
