"""POST /keycloak/events: where Keycloak's event listener (keycloak-extension/) pushes events.

The body is `{"events": [...]}`, signed as a Standard Webhooks message with the shared
KEYCLOAK_EVENTS_SECRET; the `standardwebhooks` library checks the signature and that its
timestamp is within five minutes (a replay of an older message is refused), and each event's
id is applied once (apikeys/operations/keycloak_events.py). Answers: 204 applied; 400 not a batch of
events; 401 a signature that does not verify; 404 push not configured; 503 some account
change could not be applied yet (Keycloak did not answer): the listener sends it again.
"""

from __future__ import annotations

import logging
from typing import Any, TypeGuard

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db import IntegrityError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from apikeys.observability import KEYCLOAK_EVENTS
from apikeys.operations import keycloak_events

log = logging.getLogger(__name__)

MAX_EVENTS = 1000


@csrf_exempt
@login_not_required
@require_POST
def keycloak_events_received(request: HttpRequest) -> HttpResponse:
    if not settings.KEYCLOAK_EVENTS_SECRET:
        return _refusal(404, "This portal takes no pushed events (KEYCLOAK_EVENTS_SECRET unset).")
    try:
        request.body.decode()  # the library would fail on a body that is not UTF-8 (a 500)
        payload = Webhook(settings.KEYCLOAK_EVENTS_SECRET).verify(
            request.body, {name.lower(): value for name, value in request.headers.items()}
        )
    except (WebhookVerificationError, ValueError) as error:  # ValueError: malformed headers
        log.warning("refused pushed Keycloak events: %s", error)
        KEYCLOAK_EVENTS.labels(outcome="refused").inc()
        return _refusal(401, f"The signature does not verify: {error}.")
    events = payload.get("events") if isinstance(payload, dict) else None
    if not _well_formed(events):
        KEYCLOAK_EVENTS.labels(outcome="malformed").inc()
        return _refusal(
            400,
            f'Send {{"events": [...]}}: at most {MAX_EVENTS} objects, each with a string "id" '
            'and an integer "time".',
        )
    try:
        applied = keycloak_events.apply_pushed(events)
    except IntegrityError:  # the same events delivered twice at once: this copy waits
        return _refusal(503, "These events are being applied by another request; send again.")
    KEYCLOAK_EVENTS.labels(outcome="applied").inc(applied.received - applied.duplicates)
    KEYCLOAK_EVENTS.labels(outcome="duplicate").inc(applied.duplicates)
    if applied.failures:
        for failure in applied.failures:
            log.warning("pushed event not applied yet: %s", failure)
        return _refusal(503, "Some account changes could not be applied yet; send them again.")
    return HttpResponse(status=204)


def _well_formed(events: Any) -> TypeGuard[list[keycloak_events.Event]]:
    return (
        isinstance(events, list)
        and len(events) <= MAX_EVENTS
        and all(
            isinstance(e, dict)
            and isinstance(e.get("id"), str)
            and 0 < len(e["id"]) <= 64
            and isinstance(e.get("time"), int)
            for e in events
        )
    )


def _refusal(status: int, detail: str) -> JsonResponse:
    return JsonResponse({"error": detail}, status=status)
