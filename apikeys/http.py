"""What every door shares: the typed requests its views receive, and problem documents.

- `PageRequest`: a page request of a signed-in person (LoginRequiredMiddleware lets nobody
  else through), with django-htmx's details.
- `ApiRequest`: a JSON API request; `auth` is the person its access token names.
- `TokenRequest`: a request to an API guarded by `bearer_token_required`
  (apikeys/credentials/bearer.py): the token's claims, and in strict mode the key's client id.
- `problem(...)`: an RFC 9457 problem document, how every door answers an error in JSON.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from uuid import UUID

from django.http import HttpRequest, JsonResponse

if TYPE_CHECKING:  # a resource server of its own imports this module, but has no models
    from django_htmx.middleware import HtmxDetails

    from apikeys.models import User


class PageRequest(HttpRequest):
    user: User
    htmx: HtmxDetails


class ApiRequest(HttpRequest):
    auth: User


class TokenRequest(HttpRequest):
    token: dict[str, Any]
    client_id: str


TITLES = {
    400: "Bad request",
    401: "Not signed in",
    403: "Forbidden",
    404: "Not found",
    409: "Conflict",
    415: "Unsupported media type",
    422: "Invalid input",
    429: "Too many requests",
    500: "Server error",
    502: "Keycloak refused",
    503: "Unavailable",
}


def problem(
    status: int,
    detail: str,
    *,
    errors: dict[str, list[str]] | None = None,
    key_id: UUID | None = None,
    headers: dict[str, str] | None = None,
) -> JsonResponse:
    """An `application/problem+json` answer, never cached; a 429 says when to come back."""
    title = TITLES.get(status) or HTTPStatus(status).phrase
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    body["detail"] = detail
    if errors:
        body["errors"] = errors
    if key_id:
        body["key_id"] = str(key_id)
    response = JsonResponse(body, status=status, content_type="application/problem+json")
    for name, value in (headers or {}).items():
        response[name] = value
    if status == 429:
        response.setdefault("Retry-After", "60")
    response["Cache-Control"] = "no-store"
    return response
