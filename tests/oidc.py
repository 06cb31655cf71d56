"""Signing in to the portal's command-line client without a browser, for the API's tests.

The real authorization-code flow with PKCE against Keycloak's real sign-in page: its form is
fetched and posted as a browser would, and the code taken from the redirect to the loopback
address (nobody listens there: the test reads the redirect instead of following it).
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
import secrets
import urllib.parse
from typing import Any

import requests
from django.conf import settings

REDIRECT = "http://127.0.0.1:1/callback"


def _oidc(path: str) -> str:
    return (
        f"{settings.KEYCLOAK_URL}/realms/{settings.KEYCLOAK_REALM}/protocol/openid-connect/{path}"
    )


def cli_tokens(email: str, password: str) -> dict[str, Any]:
    """A token set of the CLI's client for this Keycloak user (they sign in with a password)."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    session = requests.Session()
    page = session.get(
        _oidc("auth"),
        params={
            "client_id": settings.CLI_CLIENT_ID,
            "response_type": "code",
            "scope": "openid",
            "redirect_uri": REDIRECT,
            "state": "s",
            "code_challenge": challenge.decode(),
            "code_challenge_method": "S256",
        },
        timeout=10,
    )
    for cookie in session.cookies:
        # Keycloak marks its cookies Secure; browsers send them to http://127.0.0.1 anyway
        # (a loopback origin counts as secure), and so must this.
        cookie.secure = False
    action = re.search(r'<form[^>]+id="kc-form-login"[^>]+action="([^"]+)"', page.text)
    assert action is not None, page.text[:2000]
    answer = session.post(
        html.unescape(action.group(1)),
        data={"username": email, "password": password, "credentialId": ""},
        allow_redirects=False,
        timeout=10,
    )
    location = answer.headers.get("Location", "")
    assert location.startswith(REDIRECT), (answer.status_code, answer.text[:2000])
    code = urllib.parse.parse_qs(urllib.parse.urlsplit(location).query)["code"][0]
    tokens = requests.post(
        _oidc("token"),
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "client_id": settings.CLI_CLIENT_ID,
            "code_verifier": verifier,
        },
        timeout=10,
    )
    assert tokens.status_code == 200, tokens.text
    return tokens.json()  # type: ignore[no-any-return]
