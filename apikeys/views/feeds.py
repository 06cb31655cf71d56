"""GET /feeds/revocations: an API's revocation feed (apikeys/credentials/revocations.py), for
its resource servers in other processes, with the API's feed token."""

from __future__ import annotations

from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from apikeys.credentials.challenge import TokenError, error_response
from apikeys.credentials.revocations import FEED_READS, api_of, document


@never_cache
@login_not_required
@require_GET
def feed(request: HttpRequest) -> JsonResponse:
    """GET /feeds/revocations with `Authorization: Bearer rfeed_…`: that API's feed only."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    api = api_of(token.strip()) if scheme.lower() == "bearer" else None
    if api is None:
        return error_response(
            TokenError(
                "Send the API's feed token: Authorization: Bearer rfeed_… (an administrator "
                "makes one with manage.py revocation_feed_token <api>)."
            ),
            "revocation feed",
        )
    FEED_READS.labels(api=api.slug).inc()
    return JsonResponse(document(api))
