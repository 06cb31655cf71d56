"""Limits on how fast one person, or one address, can act on keys.

Each key action (create, finish, rotate, revoke) counts against two rates, per signed-in user
and per client address (`RATE_LIMITS`); past either, the answer is 429 with a message and a
`Retry-After`, and nothing is done. Counting is django-ratelimit's, in the cache named
"ratelimit": a shared Redis in production (RATELIMIT_CACHE_URL), process memory in the dev
and test profiles, which serve from one process. A daily cap on keys made per user is a
rule on the records instead (`lifecycle._reserve`), exact whatever the cache.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django_ratelimit.core import is_ratelimited

from apikeys.client_address import client_ip

View = Callable[..., HttpResponse]


def _by_address(group: str, request: HttpRequest) -> str:
    """The client's address; an IPv6 one by its /64, which one person commonly holds whole."""
    address = client_ip(request)
    if address is None:
        return "unknown"
    parsed = ipaddress.ip_address(address)
    if parsed.version == 6 and parsed.ipv4_mapped is None:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return address


def _by_user(group: str, request: HttpRequest) -> str:
    return str(request.user.pk)


def over_limit(request: HttpRequest, group: str, *, method: str = "POST") -> bool:
    """Count this request against the group's rates; True if it goes past one of them."""
    rates = settings.RATE_LIMITS[group]
    keys: list[tuple[Callable[[str, HttpRequest], str], str]] = [(_by_address, rates["address"])]
    if request.user.is_authenticated and "user" in rates:
        keys.append((_by_user, rates["user"]))
    limited = False
    for key, rate in keys:  # every rate counts the request, so all of them are kept up to date
        limited |= is_ratelimited(
            request, group=group, key=key, rate=rate, method=[method], increment=True
        )
    return limited


def rate_limited(group: str) -> Callable[[View], View]:
    """Refuse a POST with 429 once the user or their address goes past the group's rates."""

    def decorate(view: View) -> View:
        @wraps(view)
        def limited(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method == "POST" and over_limit(request, group):
                return too_many_requests(request)
            return view(request, *args, **kwargs)

        return limited

    return decorate


def too_many_requests(request: HttpRequest, message: str | None = None) -> HttpResponse:
    """429: what happened, and when to try again (a page, or the key list's panel)."""
    context = {"message": message or "Too many requests in a short time."}
    name = "too_many.html#panel" if getattr(request, "htmx", False) else "too_many.html"
    response = render(request, name, context, status=429)
    response["Retry-After"] = "60"
    return response
