"""What a partner application does with a key: ask Keycloak's token endpoint for a token."""

from __future__ import annotations

import base64
import json
from typing import Any

import requests
from django.conf import settings


def request_token(client_id: str, secret: str, *, scope: str | None = None) -> requests.Response:
    """The client-credentials grant, asking for `scope` if given (RFC 6749 §3.3)."""
    return requests.post(
        settings.TOKEN_ENDPOINT,
        data={"grant_type": "client_credentials"} | ({"scope": scope} if scope else {}),
        auth=(client_id, secret),
        timeout=10,
    )


def claims(access_token: str) -> dict[str, Any]:
    """The token's payload, unverified: the tests read what Keycloak put in it."""
    payload = access_token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))  # type: ignore[no-any-return]
