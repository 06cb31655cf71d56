"""The tests' authenticator app: TOTP codes (pyotp, RFC 6238) for the secrets Keycloak showed.

Keycloak's enrolment page shows the secret; the tests keep it by email, as a person keeps it
in their phone. Keycloak takes a code once (`otpPolicyCodeReusable` is off) and accepts the
previous, current and next 30-second step: `code` gives the current or the next, never one
step twice, and waits for the next step when both were used.
"""

from __future__ import annotations

import base64
import time
from typing import Any

import pyotp

PERIOD = 30
_secrets: dict[str, str] = {}  # email -> base32 secret
_used: dict[str, set[int]] = {}


def remember(email: str, secret: str) -> None:
    """Keep the secret Keycloak showed: base32 (the manual-entry key, spaces allowed)."""
    _secrets[email] = secret.replace(" ", "").upper()
    _used[email] = set()


def remember_raw(email: str, raw: str) -> None:
    """Keep the secret from the enrolment form's hidden field, which holds it unencoded."""
    remember(email, base64.b32encode(raw.encode()).decode().rstrip("="))


def has_secret(email: str) -> bool:
    return email in _secrets


def handed_over(email: str) -> dict[str, Any]:
    """The secret and the steps used, for another process to type the next codes (the CLI's
    browser in its tests): none it gives is one this process gave."""
    return {"email": email, "secret": _secrets[email], "used": sorted(_used[email])}


def take_over(state: dict[str, Any]) -> None:
    """Type codes for the person `handed_over` describes, from the steps they left off at."""
    _secrets[state["email"]] = state["secret"]
    _used[state["email"]] = set(state["used"])


def code(email: str) -> str:
    """A code Keycloak will take now, never one it took before."""
    totp = pyotp.TOTP(_secrets[email], interval=PERIOD)
    used = _used[email]
    while True:
        now = int(time.time()) // PERIOD
        # Not the step before: typed late in a step, it would be too old when checked.
        step = next((s for s in (now, now + 1) if s not in used), None)
        if step is not None:
            used.add(step)
            return totp.at(step * PERIOD)
        time.sleep(PERIOD - time.time() % PERIOD + 0.1)
