"""The sample API the portal serves itself, guarded like any resource server written in
Django would be (apikeys/credentials/bearer.py): GET /api/v1/whoami/ for any of its keys,
GET and POST /api/v1/sample/orders for keys with the permissions orders:read and orders:write.

A key that requires DPoP sends its token with a fresh proof for each request (RFC 9449), made
for the method and the URL without its query, and the token's hash:

    curl -H "Authorization: DPoP $TOKEN" -H "DPoP: $PROOF" https://portal.example/api/v1/whoami/

(`requests-oauth2client`'s DPoPToken, used as a `requests` auth, makes them). Behind a proxy
the proof's `htu` is compared with `request.build_absolute_uri(request.path)`: the proxy must
pass the public host and scheme on (Host, X-Forwarded-Proto).
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apikeys.credentials.bearer import bearer_token_required
from apikeys.http import TokenRequest, problem
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
            "token_type": request.token.get("typ"),  # "DPoP" for a token bound to a key
        }
    )


# The sample's orders: fixed, and nothing a POST sends is kept.
SAMPLE_ORDERS = (
    {"id": "ord-1001", "item": "widget", "quantity": 3, "status": "shipped"},
    {"id": "ord-1002", "item": "gadget", "quantity": 1, "status": "open"},
)
MAX_QUANTITY = 1000


@login_not_required  # each method's view below checks the bearer token
@csrf_exempt
@require_http_methods(["GET", "POST"])
def orders(request: HttpRequest) -> HttpResponse:
    """/api/v1/sample/orders: GET lists the orders, POST places one."""
    return place_order(request) if request.method == "POST" else list_orders(request)


@never_cache
@require_GET
@bearer_token_required(audience=settings.WHOAMI_AUDIENCE, strict=True, permissions="orders:read")
def list_orders(request: TokenRequest) -> JsonResponse:
    return JsonResponse({"client_id": request.client_id, "orders": list(SAMPLE_ORDERS)})


@never_cache
@require_POST
@bearer_token_required(audience=settings.WHOAMI_AUDIENCE, strict=True, permissions="orders:write")
def place_order(request: TokenRequest) -> JsonResponse:
    """Answer with the order as it would be placed; nothing is stored."""
    try:
        body = json.loads(request.body)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested too deep
        body = None
    errors = _order_errors(body)
    if errors:
        return problem(400, "The order is not valid.", errors=errors)
    order = {
        "id": f"ord-{uuid.uuid4().hex[:12]}",
        "item": body["item"],
        "quantity": body["quantity"],
        "status": "open",
    }
    return JsonResponse({"client_id": request.client_id, "order": order}, status=201)


def _order_errors(body: Any) -> dict[str, list[str]]:
    """What is wrong with an order's JSON, by field; nothing if it may be placed."""
    if not isinstance(body, dict):
        return {"body": ['Send a JSON object: {"item": "widget", "quantity": 2}.']}
    errors: dict[str, list[str]] = {}
    item, quantity = body.get("item"), body.get("quantity")
    if not isinstance(item, str) or not 0 < len(item.strip()) <= 100:
        errors["item"] = ["Name the item: a string of 1 to 100 characters."]
    # A JSON true is an int to Python, and no quantity.
    if type(quantity) is not int or not 1 <= quantity <= MAX_QUANTITY:
        errors["quantity"] = [f"Give the quantity: a whole number from 1 to {MAX_QUANTITY}."]
    return errors


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
