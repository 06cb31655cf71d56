"""Signing in through Keycloak, and the token set kept on this device.

`login` runs the authorization-code flow with PKCE (S256) in the user's browser, with a
callback server on 127.0.0.1 on a port the system picks (RFC 8252: Keycloak ignores the
port of a loopback redirect). `login_device` runs the device authorization grant, for
machines without a browser. The tokens are kept in the user's config directory, readable by
the user only (0600), refreshed when the access token has expired, and revoked at Keycloak
on `logout`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import sys
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

from apikeys_cli.errors import Failure, NotSignedIn
from apikeys_cli.http import get_json, post_form, require_safe_url

LOGIN_TIMEOUT = 300  # seconds to wait for the browser


def credentials_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "apikeys" / "credentials.json"


def load() -> dict[str, Any]:
    try:
        data = json.loads(credentials_file().read_text())
    except FileNotFoundError:
        raise NotSignedIn("Not signed in: run `apikeys login` first.") from None
    except ValueError:
        raise NotSignedIn("The saved sign-in is unreadable: run `apikeys login` again.") from None
    if not isinstance(data, dict) or "refresh_token" not in data:
        raise NotSignedIn("Not signed in: run `apikeys login` first.")
    return data


def save(data: dict[str, Any]) -> None:
    """Write the token set where only this user can read it (0600, created so)."""
    path = credentials_file()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_suffix(".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        json.dump(data, file)
    os.chmod(temporary, 0o600)
    os.replace(temporary, path)


def forget() -> None:
    credentials_file().unlink(missing_ok=True)


def access_token(data: dict[str, Any]) -> str:
    """A current access token: refreshed with the refresh token if it has expired."""
    if time.time() < data.get("expires_at", 0) - 30:
        return str(data["access_token"])
    try:
        tokens = post_form(
            data["token_endpoint"],
            {
                "grant_type": "refresh_token",
                "refresh_token": data["refresh_token"],
                "client_id": data["client_id"],
            },
        )
    except Failure as failure:
        if failure.status == 400:  # Keycloak ended the session
            raise NotSignedIn("Your sign-in has expired: run `apikeys login` again.") from None
        raise
    data.update(_token_fields(tokens))
    save(data)
    return str(data["access_token"])


def login(
    portal: str, *, open_browser: bool, step_up: dict[str, str] | None = None
) -> dict[str, Any]:
    """The authorization-code flow with PKCE, answered on a loopback port of the OS's choice;
    `step_up` adds what an RFC 9470 challenge asked for (`acr_values`, `max_age`)."""
    config = _config(portal)
    verifier, challenge = _pkce()
    state = secrets.token_urlsafe(24)
    catcher = _Callback(state)
    redirect_uri = f"http://127.0.0.1:{catcher.port}/callback"
    query = {
        "client_id": config["client_id"],
        "response_type": "code",
        "scope": config["scope"],
        "redirect_uri": redirect_uri,
        "state": state,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **{name: value for name, value in (step_up or {}).items() if value},
    }
    url = f"{config['authorization_endpoint']}?{urllib.parse.urlencode(query)}"
    _send_to_sign_in(url, open_browser)
    code = catcher.wait(LOGIN_TIMEOUT)
    tokens = post_form(
        config["token_endpoint"],
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "client_id": config["client_id"],
            "code_verifier": verifier,
        },
    )
    return _keep(portal, config, tokens)


def _send_to_sign_in(url: str, open_browser: bool) -> None:
    """Print the address, then open a browser at it if asked, and say whether one opened.
    The answer comes back to this machine's loopback, so the browser must run here too. The
    address comes first: a console browser (or $BROWSER) may hold the terminal until it ends.
    """
    waiting = f"this command waits {LOGIN_TIMEOUT // 60} minutes for the answer"
    elsewhere = "(signing in on another device: `apikeys login --device`)"
    if not open_browser:
        _say(f"Open this address in a browser on this machine {elsewhere}; {waiting}:\n{url}")
        return
    _say(f"Sign in at this address; {waiting}:\n{url}")
    import webbrowser

    if webbrowser.open(url):
        _say("Your browser is open at it.")
    else:
        _say(f"No browser could be started here: open it in a browser on this machine {elsewhere}.")


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def login_device(portal: str) -> dict[str, Any]:
    """The device authorization grant: the user signs in on another device with a code."""
    config = _config(portal)
    verifier, challenge = _pkce()
    grant = post_form(
        config["device_authorization_endpoint"],
        {
            "client_id": config["client_id"],
            "scope": config["scope"],
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        },
    )
    where = grant.get("verification_uri_complete") or grant["verification_uri"]
    print(
        f"On any device, open {where}\nand enter the code {grant['user_code']}",
        file=sys.stderr,
        flush=True,
    )
    interval = int(grant.get("interval", 5))
    deadline = time.monotonic() + int(grant.get("expires_in", 600))
    while time.monotonic() < deadline:
        time.sleep(interval)
        try:
            tokens = post_form(
                config["token_endpoint"],
                {
                    "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
                    "device_code": grant["device_code"],
                    "client_id": config["client_id"],
                    "code_verifier": verifier,
                },
            )
        except Failure as failure:
            error = failure.body.get("error") if isinstance(failure.body, dict) else None
            if error == "authorization_pending":
                continue
            if error == "slow_down":
                interval += 5
                continue
            raise NotSignedIn(f"Signing in did not finish: {error or failure}.") from None
        return _keep(portal, config, tokens)
    raise NotSignedIn("The code expired before anyone signed in with it.")


def logout() -> bool:
    """Revoke the refresh token at Keycloak, then forget the token set. False if none."""
    try:
        data = load()
    except NotSignedIn:
        return False
    try:
        post_form(
            data["revocation_endpoint"],
            {
                "token": data["refresh_token"],
                "token_type_hint": "refresh_token",
                "client_id": data["client_id"],
            },
        )
    finally:
        forget()
    return True


def _config(portal: str) -> dict[str, Any]:
    """How the portal's Keycloak signs the CLI in; every endpoint https (or loopback)."""
    config: dict[str, Any] = get_json(f"{portal}/api/v1/cli")
    for name, value in config.items():
        if name.endswith("_endpoint"):
            require_safe_url(str(value))
    return config


def _keep(portal: str, config: dict[str, Any], tokens: dict[str, Any]) -> dict[str, Any]:
    data = {
        "portal": portal,
        "client_id": config["client_id"],
        "token_endpoint": config["token_endpoint"],
        "revocation_endpoint": config["revocation_endpoint"],
        **_token_fields(tokens),
    }
    save(data)
    return data


def _token_fields(tokens: dict[str, Any]) -> dict[str, Any]:
    return {
        "access_token": tokens["access_token"],
        "refresh_token": tokens["refresh_token"],
        "expires_at": time.time() + int(tokens.get("expires_in", 60)),
    }


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(64)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class _Callback:
    """A one-shot HTTP server on 127.0.0.1 that waits for Keycloak's redirect."""

    def __init__(self, state: str) -> None:
        # Imported here: only login needs it, and every other command starts faster without.
        from http.server import BaseHTTPRequestHandler, HTTPServer

        self.state = state
        self.code: str | None = None
        self.error: str | None = None
        self.done = threading.Event()
        catcher = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parsed = urllib.parse.urlsplit(self.path)
                params = dict(urllib.parse.parse_qsl(parsed.query))
                if parsed.path != "/callback":
                    self.send_error(404)
                    return
                if params.get("state") != catcher.state:
                    # Not this sign-in's answer (another page on this machine?): ignored, and
                    # the real one is still awaited.
                    self.send_error(400, "This is not the answer to this sign-in.")
                    return
                if "error" in params:
                    catcher.error = params.get("error_description") or params["error"]
                else:
                    catcher.code = params.get("code")
                ok = catcher.code is not None
                body = (
                    "Signed in. You can close this tab and go back to the terminal."
                    if ok
                    else f"Signing in failed: {catcher.error}. Go back to the terminal."
                )
                self.send_response(200 if ok else 400)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.end_headers()
                self.wfile.write(body.encode())
                catcher.done.set()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]

    def wait(self, timeout: float) -> str:
        thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        thread.start()
        try:
            if not self.done.wait(timeout):
                raise NotSignedIn("Nobody signed in within five minutes.")
        finally:
            self.server.shutdown()
            self.server.server_close()
        if self.code is None:
            raise NotSignedIn(f"Signing in failed: {self.error}.")
        return self.code
