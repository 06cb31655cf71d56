"""The format of the client secrets the portal issues: prefix, random body, checksum.

`kcak_` + 32 base62 characters from the OS's CSPRNG (190 bits) + 6 base62 characters of the
body's CRC32, in the manner of GitHub's tokens. The prefix lets secret scanners find leaked
keys with few false positives; the checksum tells a real secret from a mistyped or made-up
one without asking Keycloak. The secret only ever exists in Keycloak and in the one response
that reveals it.
"""

from __future__ import annotations

import re
import secrets
import string
import zlib

from django.views.decorators.debug import sensitive_variables

PREFIX = "kcak_"
ALPHABET = string.digits + string.ascii_uppercase + string.ascii_lowercase
BODY_LENGTH = 32
CHECKSUM_LENGTH = 6  # 62**6 > 2**32, so any CRC32 fits
PATTERN = re.compile(rf"\b{PREFIX}[0-9A-Za-z]{{{BODY_LENGTH + CHECKSUM_LENGTH}}}\b")


# The other tokens the portal shows once, in the same format with their own prefixes: a
# registration token (software registers keys with it: RFC 7591's initial access token), and
# a registered key's registration access token (RFC 7592).
REGISTRATION_PREFIX = "kcrt_"
REGISTRATION_ACCESS_PREFIX = "kcra_"


@sensitive_variables()
def new_secret(prefix: str = PREFIX) -> str:
    body = "".join(secrets.choice(ALPHABET) for _ in range(BODY_LENGTH))
    return f"{prefix}{body}{_checksum(body)}"


@sensitive_variables()
def is_well_formed(candidate: str, prefix: str = PREFIX) -> bool:
    """True if `candidate` has the prefix, length, alphabet and a correct checksum."""
    if len(candidate) != len(prefix) + BODY_LENGTH + CHECKSUM_LENGTH:
        return False
    if not candidate.startswith(prefix) or not candidate[len(prefix) :].isalnum():
        return False
    if not candidate.isascii():
        return False
    body = candidate[len(prefix) : len(prefix) + BODY_LENGTH]
    return candidate.endswith(_checksum(body))


def _checksum(body: str) -> str:
    value = zlib.crc32(body.encode("ascii"))
    digits = []
    for _ in range(CHECKSUM_LENGTH):
        value, remainder = divmod(value, len(ALPHABET))
        digits.append(ALPHABET[remainder])
    return "".join(reversed(digits))
