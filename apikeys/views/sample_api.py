"""The sample API the portal serves itself (GET /api/v1/whoami/), guarded like any resource
server written in Django would be (apikeys/credentials/bearer.py)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from django.conf import settings
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from apikeys.credentials.bearer import bearer_token_required
from apikeys.http import TokenRequest
from apikeys.models import ApiKey, KeyStanding


@never_cache
@require_GET
@bearer_token_required(audience=settings.WHOAMI_AUDIENCE, strict=True)
def whoami(request: TokenRequest) -> JsonResponse:
    """Who the calling key is, as the token and the portal know it.

    Strict mode checked the key against the API's revocation list (no query); the key's
    name and owner come from the portal's records, remembered for a minute per key.
    """
    key = _key_facts(request.client_id)
    expires = datetime.fromtimestamp(request.token["exp"], tz=UTC)
    return JsonResponse(
        {
            "client_id": request.client_id,
            "key_name": key.name if key else None,
            "owner": key.owner_name if key else None,
            "api": key.api_name if key else None,
            "token_expires_at": expires.isoformat(),
        }
    )


_KEY_FACTS_SECONDS = 60
_key_facts_seen: dict[str, tuple[float, KeyStanding | None]] = {}


def _key_facts(client_id: str) -> KeyStanding | None:
    now = time.monotonic()
    seen = _key_facts_seen.get(client_id)
    if seen is None or now - seen[0] > _KEY_FACTS_SECONDS:
        if len(_key_facts_seen) > 10_000:
            _key_facts_seen.clear()
        seen = _key_facts_seen[client_id] = (now, ApiKey.objects.standing(client_id))
    return seen[1]
