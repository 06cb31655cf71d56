"""Talking HTTP with the standard library: JSON in, JSON out, failures with an exit code."""

from __future__ import annotations

import json
import urllib.parse
from typing import TYPE_CHECKING, Any

from apikeys_cli.errors import (
    Failure,
    NotFound,
    NotSignedIn,
    Refused,
    StepUpNeeded,
    Unavailable,
    Usage,
)

if TYPE_CHECKING:
    import urllib.error

TIMEOUT = 30
USER_AGENT = "apikeys-cli/0.1"


def get_json(url: str, token: str | None = None) -> Any:
    return request("GET", url, token=token)


def post_form(url: str, fields: dict[str, str]) -> Any:
    """A form POST, as OAuth endpoints take them."""
    body = urllib.parse.urlencode(fields).encode()
    return request("POST", url, body=body, content_type="application/x-www-form-urlencoded")


def request(
    method: str,
    url: str,
    *,
    token: str | None = None,
    json_body: Any = None,
    body: bytes | None = None,
    content_type: str | None = None,
    headers: dict[str, str] | None = None,
) -> Any:
    all_headers = {"Accept": "application/json", "User-Agent": USER_AGENT, **(headers or {})}
    if token:
        all_headers["Authorization"] = f"Bearer {token}"
    if json_body is not None:
        body, content_type = json.dumps(json_body).encode(), "application/json"
    if content_type:
        all_headers["Content-Type"] = content_type
    import urllib.error
    import urllib.request

    prepared = urllib.request.Request(url, data=body, method=method, headers=all_headers)  # noqa: S310
    # No redirects followed: urllib would send the bearer token on to wherever one points.
    opener = urllib.request.build_opener(_no_redirect())
    try:
        with opener.open(prepared, timeout=TIMEOUT) as response:
            raw = response.read()
    except urllib.error.HTTPError as error:
        raise _failure(error) from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise Unavailable(f"Cannot reach {urllib.parse.urlsplit(url).netloc}: {reason}") from None
    return json.loads(raw) if raw else None


def require_safe_url(url: str) -> str:
    """https, or http to this machine only (a portal in development): refused otherwise, so
    that no token or sign-in travels in the clear."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https" or (
        parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1")
    ):
        return url
    raise Usage(f"{url} is not https: the CLI talks to a portal over https (or http on loopback).")


def _no_redirect() -> type:
    import urllib.request

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None  # the 3xx is answered as an error, not followed

    return NoRedirect


def _failure(error: urllib.error.HTTPError) -> Failure:
    raw = error.read()
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        body = None
    detail = ""
    if isinstance(body, dict):
        detail = str(body.get("detail") or body.get("error_description") or body.get("error") or "")
    message = detail or f"{error.code} {error.reason}"
    kind: type[Failure]
    challenge = error.headers.get("WWW-Authenticate", "") if error.headers else ""
    if error.code == 401 and "insufficient_user_authentication" in challenge:
        return StepUpNeeded(message, status=401, body=body, challenge=challenge)
    if error.code == 401:
        kind = NotSignedIn
    elif error.code == 404:
        kind = NotFound
    elif error.code >= 500:
        kind = Unavailable
    else:
        kind = Refused
    return kind(message, status=error.code, body=body)
