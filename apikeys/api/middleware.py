"""Requests to the JSON API: audit entries they cause say so, and no answer is cached; and
requests to the admin area (pages or API): their audit entries are an administrator's."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from apikeys.models import AUDIT_AS_ADMIN, AUDIT_VIA

PREFIX = "/api/v1/"
ADMIN_AREAS = ("/manage/", "/api/v1/admin/")
NOT_THE_API = ("/api/v1/whoami/",)  # the sample API lives beside it


class ApiRequestMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        admin = AUDIT_AS_ADMIN.set(request.path.startswith(ADMIN_AREAS))
        try:
            return self._answer(request)
        finally:
            AUDIT_AS_ADMIN.reset(admin)

    def _answer(self, request: HttpRequest) -> HttpResponse:
        if not request.path.startswith(PREFIX) or request.path.startswith(NOT_THE_API):
            return self.get_response(request)
        token = AUDIT_VIA.set("api")
        try:
            response = self.get_response(request)
        finally:
            AUDIT_VIA.reset(token)
        response.setdefault("Cache-Control", "no-store")
        return response
