"""Errors of the API as RFC 9457 problem documents (apikeys/http.py), each with a `detail`
fit for a person: raise `Problem`; every route may answer those of `FAILURES`."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django import forms
from django.http import HttpRequest, HttpResponse
from ninja import Schema

from apikeys.http import problem
from apikeys.limits import over_limit


class ProblemDocument(Schema):
    """An RFC 9457 problem document; `errors` names the fields at fault, if any."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    errors: dict[str, list[str]] | None = None
    key_id: UUID | None = None  # an earlier request with this Idempotency-Key made this key


FAILURES: dict[int | str, Any] = dict.fromkeys(
    (400, 401, 403, 404, 409, 415, 422, 429, 502, 503), ProblemDocument
)


class Problem(Exception):
    """Raise to answer with a problem document."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        errors: dict[str, list[str]] | None = None,
        key_id: UUID | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = errors
        self.key_id = key_id
        self.headers = headers or {}


def problem_response(request: HttpRequest, error: Problem) -> HttpResponse:
    return problem(
        error.status, error.detail, errors=error.errors, key_id=error.key_id, headers=error.headers
    )


def form_errors(form: forms.BaseForm) -> dict[str, list[str]]:
    """A form's errors, by field, as a problem's `errors`."""
    return {field: [str(e) for e in errors] for field, errors in form.errors.items()}


def refuse_over_limit(request: HttpRequest, scope: str, detail: str) -> None:
    """429 once the caller is over the rate of `scope` (apikeys/limits.py)."""
    if over_limit(request, scope):
        raise Problem(429, detail, headers={"Retry-After": "60"})
