"""Requests to the JSON API: audit entries they cause say so, and no answer is cached."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from apikeys.models import AUDIT_VIA

PREFIX = "/api/v1/"
NOT_THE_API = ("/api/v1/whoami/",)  # the sample API lives beside it


class ApiRequestMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path.startswith(PREFIX) or request.path.startswith(NOT_THE_API):
            return self.get_response(request)
        token = AUDIT_VIA.set("api")
        try:
            response = self.get_response(request)
        finally:
            AUDIT_VIA.reset(token)
        response.setdefault("Cache-Control", "no-store")
        return response
