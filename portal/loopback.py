"""The dev and test profiles answer loopback clients only: their secrets are published."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, HttpResponseForbidden


def is_loopback(host: str | None) -> bool:
    """True for this machine's own names and addresses."""
    if host in ("localhost", "testserver"):  # Django's test client calls itself testserver
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


class LoopbackOnlyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not is_loopback(request.META.get("REMOTE_ADDR")):
            return HttpResponseForbidden(
                "This portal runs in a development profile and answers this machine only."
            )
        return self.get_response(request)
