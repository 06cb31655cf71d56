"""Signing in to the portal's command-line client without a browser, for the API's tests.

The real authorization-code flow with PKCE against Keycloak's real pages: each form is fetched
and posted as a browser would (the password, the one-time password, and the enrolment of an
authenticator app that Keycloak makes administrators do), and the code taken from the redirect
to the loopback address (nobody listens there: the test reads the redirect instead of
following it). `sign_in_at` does the pages alone, for any authorization request: the CLI's
own, in the browser its tests give it (tests/cli_browser.py).
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
import secrets
import urllib.parse
from typing import TYPE_CHECKING, Any

import requests
from django.conf import settings

from tests import second_factor
from tests.tokens import claims

if TYPE_CHECKING:  # tests/cli_browser.py imports this module without Django set up
    from tests.accounts import KeycloakUser

REDIRECT = "http://127.0.0.1:1/callback"
SECOND_FACTOR = "second-factor"


def _oidc(path: str) -> str:
    return (
        f"{settings.KEYCLOAK_URL}/realms/{settings.KEYCLOAK_REALM}/protocol/openid-connect/{path}"
    )


def cli_tokens(email: str, password: str, *, step_up: bool = True) -> dict[str, Any]:
    """A token set of the CLI's client for this Keycloak user, who signs in with a password
    (and enrols or uses their authenticator app when Keycloak asks). With `step_up`, someone
    who has a second factor but did not use it (an administrator who had to enrol at this
    sign-in) steps up to level 2 in the same Keycloak session, as the CLI does."""
    session = requests.Session()
    tokens = _authorize(session, email, password, {})
    stepped = claims(tokens["access_token"]).get("acr") == SECOND_FACTOR
    if step_up and not stepped and second_factor.has_secret(email):
        tokens = _authorize(session, email, password, {"acr_values": SECOND_FACTOR})
    return tokens


def sign_in_tokens(account: KeycloakUser, extra: dict[str, str]) -> dict[str, Any]:
    """A fresh sign-in of the CLI's client with `extra` parameters on the authorization
    request (`acr_values`...), as anyone may add them to the URL."""
    return _authorize(requests.Session(), account.email, account.password, extra)


def _authorize(
    session: requests.Session, email: str, password: str, extra: dict[str, str]
) -> dict[str, Any]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    params = {
        "client_id": settings.CLI_CLIENT_ID,
        "response_type": "code",
        "scope": "openid",
        "redirect_uri": REDIRECT,
        "state": "s",
        "code_challenge": challenge.decode(),
        "code_challenge_method": "S256",
    }
    url = f"{_oidc('auth')}?{urllib.parse.urlencode(params | extra)}"
    location = sign_in_at(session, url, email, password)
    code = urllib.parse.parse_qs(urllib.parse.urlsplit(location).query)["code"][0]
    return _exchange(code, verifier)


def sign_in_at(session: requests.Session, url: str, email: str, password: str) -> str:
    """Follow an authorization request through Keycloak's pages, answering each as the person
    would; the redirect to its `redirect_uri` that ends it, with the code (not followed)."""
    redirect = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["redirect_uri"][0]
    answer = _get(session, url, redirect)
    for _ in range(6):
        location = str(answer.headers.get("Location", ""))
        if location.startswith(redirect):
            return location
        answer = _answer_page(session, answer, email, password, redirect)
    raise AssertionError(f"Keycloak kept asking: {answer.status_code} {answer.text[:2000]}")


def _get(session: requests.Session, url: str, redirect: str) -> Any:
    answer = session.get(url, allow_redirects=False, timeout=10)
    while answer.status_code in (302, 303) and not answer.headers["Location"].startswith(redirect):
        answer = session.get(answer.headers["Location"], allow_redirects=False, timeout=10)
    for cookie in session.cookies:
        # Keycloak marks its cookies Secure; browsers send them to http://127.0.0.1 anyway
        # (a loopback origin counts as secure), and so must this.
        cookie.secure = False
    return answer


def _answer_page(
    session: requests.Session, page: requests.Response, email: str, password: str, redirect: str
) -> Any:
    """Fill in the form Keycloak shows: password, enrolment (TOTP), or one-time password."""
    text = page.text
    form = re.search(r'<form[^>]+action="([^"]+)"', text)
    assert form is not None, (page.status_code, text[:2000])
    if 'name="totpSecret"' in text:  # "Mobile Authenticator Setup"
        raw = re.search(r'name="totpSecret"[^>]*value="([^"]*)"', text)
        assert raw is not None, text[:2000]
        second_factor.remember_raw(email, html.unescape(raw.group(1)))
        data = {"totp": second_factor.code(email), "totpSecret": html.unescape(raw.group(1))}
        data |= {"userLabel": "tests", "mode": "manual"}
    elif 'name="otp"' in text:
        data = {"otp": second_factor.code(email)}
    elif 'name="password"' in text:
        data = {"username": email, "password": password, "credentialId": ""}
    else:
        raise AssertionError(f"an unexpected page from Keycloak: {text[:2000]}")
    answer = session.post(
        html.unescape(form.group(1)), data=data, allow_redirects=False, timeout=10
    )
    if answer.status_code in (302, 303):
        location = answer.headers["Location"]
        return answer if location.startswith(redirect) else _get(session, location, redirect)
    assert answer.status_code == 200, (answer.status_code, answer.text[:2000])
    return answer


def _exchange(code: str, verifier: str) -> dict[str, Any]:
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
