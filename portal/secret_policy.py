"""Which configured secrets production refuses: placeholders, dev defaults, short ones."""

from __future__ import annotations

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
