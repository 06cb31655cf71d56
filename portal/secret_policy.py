"""Which configured secrets production refuses: placeholders, dev defaults, short ones."""

from __future__ import annotations

import base64
import binascii

# Words the examples and the dev profile use; a secret made of, or containing, one of them
# was copied rather than generated.
PLACEHOLDERS = ("change-me", "changeme", "change_me", "dev-only", "example", "placeholder")
COMMON = {"admin", "password", "secret", "letmein", "keycloak", "portal", "test", "12345678"}


def weakness(name: str, value: str, *, min_length: int) -> str | None:
    """Why `value` must not be the production value of the setting `name`, or None."""
    lowered = value.lower()
    if lowered in COMMON or any(word in lowered for word in PLACEHOLDERS):
        return f"{name} is a placeholder or a well-known value; set a secret of your own."
    if len(value) < min_length:
        return f"{name} is shorter than {min_length} characters; set a longer secret."
    return None


HOW = 'Generate one with: python -c "import secrets; print(secrets.token_urlsafe(48))"'


# The secret Keycloak's event listener signs with in the dev and test profiles: devstack
# gives it to the Keycloak instances it starts, the portal's settings default to it there.
# It decodes to "dev-only-keycloak-events-secret!", so production refuses it.
DEV_EVENTS_SECRET = "whsec_ZGV2LW9ubHkta2V5Y2xvYWstZXZlbnRzLXNlY3JldCE="  # noqa: S105
EVENTS_KEY_RECIPE = (
    'Generate one with: python -c "import base64, secrets; '
    "print('whsec_' + base64.b64encode(secrets.token_bytes(32)).decode())\""
)


def events_secret_problem(value: str, *, production: bool) -> str | None:
    """Why `value` cannot be the event listener's Standard Webhooks secret, or None."""
    if not value.startswith("whsec_"):
        return f"it must be whsec_ followed by base64. {EVENTS_KEY_RECIPE}"
    try:
        key = base64.b64decode(value.removeprefix("whsec_"), validate=True)
    except binascii.Error:
        return f"the part after whsec_ is not base64. {EVENTS_KEY_RECIPE}"
    if len(key) < 24:
        return f"it must decode to at least 24 bytes. {EVENTS_KEY_RECIPE}"
    if production and weakness("it", key.decode(errors="replace"), min_length=0):
        return f"it is the dev profile's secret or a placeholder. {EVENTS_KEY_RECIPE}"
    return None
