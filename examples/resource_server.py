"""An API of the catalog served by a process of its own, guarded by the portal's token
validator in strict mode: it checks each token's signature, issuer, audience and expiry
locally, and refuses keys no longer in good standing from its revocation feed, which it reads
again every few seconds. No call to the portal or Keycloak is made per request.

It needs none of the portal's database or models, only `apikeys/credentials/`,
`apikeys/http.py` and the portal's Python packages. Configure it with the environment, then run it:

    TOKEN_ISSUER=http://127.0.0.1:8080/realms/portal \\
    OIDC_OP_JWKS_ENDPOINT=http://127.0.0.1:8080/realms/portal/protocol/openid-connect/certs \\
    API_AUDIENCE=sample-api \\
    REVOCATION_FEED_URL=http://127.0.0.1:8000/feeds/revocations \\
    REVOCATION_FEED_TOKEN=rfeed_... \\
    .venv/bin/python examples/resource_server.py 127.0.0.1:8766

(`manage.py revocation_feed_token sample` prints the last two lines.) Each endpoint names the
permissions it needs, which a key's tokens carry in their `scope` claim: GET /orders needs
orders:read and answers with the calling key's client id; POST /orders needs orders:write and
answers 201 with the order it would place. A token without the permission gets a 403
insufficient_scope; try it with curl:

    curl -i -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8766/orders
    curl -i -H "Authorization: Bearer $TOKEN" -d '{"item": "widget"}' http://127.0.0.1:8766/orders

A key that requires DPoP (RFC 9449) sends its token as `Authorization: DPoP` with a new proof
for each request, signed by the key the token is bound to, for the method, the URL without
query, and the token's hash (`requests-oauth2client`'s DPoPToken makes them):

    curl -i -H "Authorization: DPoP $TOKEN" -H "DPoP: $PROOF" http://127.0.0.1:8766/orders

A proof's `htu` is compared with the URL this server sees (`request.build_absolute_uri`): behind
a proxy, the proxy must pass the public host and scheme on, and Django be told to trust them
(USE_X_FORWARDED_HOST, SECURE_PROXY_SSL_HEADER). Used proofs are remembered in this process's
memory for DPOP_PROOF_MAX_AGE_SECONDS + DPOP_PROOF_CLOCK_SKEW_SECONDS: this server is one
process, but an API served by several would accept a proof replayed to another one within that
window, unless its settings name a cache they share (Redis) in DPOP_REPLAY_CACHE and CACHES.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import django
from django.conf import settings

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for apikeys.credentials.bearer

AUDIENCE = os.environ.get("API_AUDIENCE", "sample-api")

settings.configure(
    DEBUG=False,
    SECRET_KEY=os.urandom(32).hex(),
    ROOT_URLCONF=__name__,
    ALLOWED_HOSTS=["127.0.0.1", "localhost", "::1"],
    INSTALLED_APPS=[],
    MIDDLEWARE=[],
    TOKEN_ISSUER=os.environ["TOKEN_ISSUER"],
    OIDC_OP_JWKS_ENDPOINT=os.environ["OIDC_OP_JWKS_ENDPOINT"],
    TOKEN_LEEWAY_SECONDS=10,
    JWKS_REFETCH_SECONDS=10,
    JWKS_MAX_AGE_SECONDS=300,
    KEYCLOAK_TIMEOUT=5,
    REVOCATION_FEED_URL=os.environ["REVOCATION_FEED_URL"],
    REVOCATION_FEED_TOKEN=os.environ["REVOCATION_FEED_TOKEN"],
    REVOCATION_FEED_REFRESH_SECONDS=float(os.environ.get("REVOCATION_FEED_REFRESH_SECONDS", "2")),
    REVOCATION_FEED_MAX_AGE=float(os.environ.get("REVOCATION_FEED_MAX_AGE", "30")),
    DPOP_PROOF_MAX_AGE_SECONDS=int(os.environ.get("DPOP_PROOF_MAX_AGE_SECONDS", "60")),
    DPOP_PROOF_CLOCK_SKEW_SECONDS=int(os.environ.get("DPOP_PROOF_CLOCK_SKEW_SECONDS", "5")),
    DPOP_REPLAY_CACHE="",  # this process's memory
    # No line per request on the console; warnings (a feed that cannot be read) still show.
    LOGGING={
        "version": 1,
        "disable_existing_loggers": False,
        "loggers": {"django.server": {"level": "WARNING"}},
    },
)
django.setup()

from django.core.servers.basehttp import run
from django.core.wsgi import get_wsgi_application
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apikeys.credentials.bearer import bearer_token_required
from apikeys.http import TokenRequest, problem


@require_http_methods(["GET", "POST"])
def orders(request: HttpRequest) -> HttpResponse:
    return place_order(request) if request.method == "POST" else list_orders(request)


@require_GET
@bearer_token_required(audience=AUDIENCE, permissions="orders:read")
def list_orders(request: TokenRequest) -> JsonResponse:
    return JsonResponse({"client_id": request.client_id, "orders": []})


@require_POST
@bearer_token_required(audience=AUDIENCE, permissions="orders:write")
def place_order(request: TokenRequest) -> JsonResponse:
    try:
        order = json.loads(request.body)
    except ValueError:
        order = None
    if not isinstance(order, dict):
        return problem(400, "Send the order as a JSON object.")
    return JsonResponse({"client_id": request.client_id, "order": order}, status=201)


urlpatterns = [path("orders", orders)]

if __name__ == "__main__":
    host, _, port = (sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:8766").rpartition(":")
    print(f"serving {AUDIENCE} on http://{host}:{port}/orders", flush=True)
    run(host, int(port), get_wsgi_application(), threading=True)
