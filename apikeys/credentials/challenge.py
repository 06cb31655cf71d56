"""Why a partner's token was refused, in RFC 6750 terms, and the answer that says so.

Shared by the token validator (apikeys/credentials/bearer.py), the revocation feed's door
(apikeys/views/feeds.py) and the JSON API's authentication (apikeys/api/auth.py).
"""

from __future__ import annotations

from django.http import JsonResponse


class TokenError(Exception):
    """Why a request's token was not accepted, in RFC 6750 terms."""

    status = 401
    error: str | None = "invalid_token"

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


class MissingToken(TokenError):
    # RFC 6750 §3.1: a request with no authentication gets no error code.
    error = None


class MalformedRequest(TokenError):
    status = 400
    error = "invalid_request"


class InsufficientScope(TokenError):
    """A valid token that lacks a permission the call needs (RFC 6750 §3.1)."""

    status = 403
    error = "insufficient_scope"

    def __init__(self, description: str, *, scope: str) -> None:
        super().__init__(description)
        self.scope = scope  # every permission the call needs, space-separated


class StandingUnknown(TokenError):
    """The API's revocation list is too old to trust: refuse every token until it is read."""

    status = 503
    error = "temporarily_unavailable"


def challenge(error: TokenError, audience: str) -> str:
    """RFC 6750 §3: the WWW-Authenticate value that says why `error` refused the token."""
    value = f'Bearer realm="{audience}"'
    if error.error:
        description = error.description.replace('"', "'")
        value += f', error="{error.error}", error_description="{description}"'
    if isinstance(error, InsufficientScope):
        value += f', scope="{error.scope}"'
    return value


def error_response(error: TokenError, audience: str) -> JsonResponse:
    """The challenge, and the same in a JSON body (with the needed `scope` for a 403)."""
    headers = {"WWW-Authenticate": challenge(error, audience)}
    body = {"error": error.error or "unauthorized", "error_description": error.description}
    if isinstance(error, InsufficientScope):
        body["scope"] = error.scope
    response = JsonResponse(body, status=error.status, headers=headers)
    response["Cache-Control"] = "no-store"
    return response
