"""Why a partner's token was refused, in RFC 6750 terms, and the answer that says so.

Shared by the token validator (apikeys/credentials/bearer.py), the DPoP proof checker
(apikeys/credentials/dpop.py), the revocation feed's door (apikeys/views/feeds.py) and the
JSON API's authentication (apikeys/api/auth.py). A request that presented its token with the
DPoP scheme, or a refusal about DPoP itself, is answered with a DPoP challenge (RFC 9449 §7.1),
which names the proof algorithms the API accepts; every other with a Bearer one.
"""

from __future__ import annotations

from django.http import JsonResponse

# The signature algorithms a DPoP proof may use (apikeys/credentials/dpop.py): asymmetric only,
# never "none" or an HMAC, whose key would be a secret shared with the API.
DPOP_ALGORITHMS = (
    "ES256",
    "ES384",
    "ES512",
    "PS256",
    "PS384",
    "PS512",
    "RS256",
    "RS384",
    "RS512",
    "EdDSA",
)


class TokenError(Exception):
    """Why a request's token was not accepted, in RFC 6750 terms."""

    status = 401
    error: str | None = "invalid_token"
    dpop = False  # whether the refusal is about DPoP, whatever scheme the request used

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


class InvalidProof(TokenError):
    """A DPoP proof that is missing, or not valid for this request and token (RFC 9449 §7.1)."""

    error = "invalid_dpop_proof"
    dpop = True


class BoundTokenAsBearer(TokenError):
    """A token bound to a key (DPoP) presented as a bearer token: refused, whoever holds it."""

    dpop = True


class StandingUnknown(TokenError):
    """The API's revocation list is too old to trust: refuse every token until it is read."""

    status = 503
    error = "temporarily_unavailable"


class ProofsUncheckable(TokenError):
    """Used DPoP proofs cannot be remembered right now (the shared cache is down, or the
    process's memory of them is full): refuse rather than let a proof be replayed."""

    status = 503
    error = "temporarily_unavailable"
    dpop = True


def challenge(error: TokenError, audience: str, *, dpop: bool = False) -> str:
    """RFC 6750 §3 (RFC 9449 §7.1 for `dpop`, or a refusal about DPoP): the WWW-Authenticate
    value that says why `error` refused the token."""
    dpop = dpop or error.dpop
    value = f'{"DPoP" if dpop else "Bearer"} realm="{audience}"'
    if error.error:
        description = error.description.replace('"', "'")
        value += f', error="{error.error}", error_description="{description}"'
    if isinstance(error, InsufficientScope):
        value += f', scope="{error.scope}"'
    if dpop:
        value += f', algs="{" ".join(DPOP_ALGORITHMS)}"'
    return value


def error_response(error: TokenError, audience: str, *, dpop: bool = False) -> JsonResponse:
    """The challenge, and the same in a JSON body (with the needed `scope` for a 403).

    `dpop`: the request presented its token with the DPoP scheme.
    """
    headers = {"WWW-Authenticate": challenge(error, audience, dpop=dpop)}
    body = {"error": error.error or "unauthorized", "error_description": error.description}
    if isinstance(error, InsufficientScope):
        body["scope"] = error.scope
    response = JsonResponse(body, status=error.status, headers=headers)
    response["Cache-Control"] = "no-store"
    return response
