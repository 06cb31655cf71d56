"""Workload identity keys: what a workload's subject may be, as a customer binds a key to it;
and what a trusted issuer may be, as an administrator describes it.

The workload authenticates with a token its platform issued it (a Kubernetes service account's
projected token, a CI job's OIDC token) whose `iss` is a trusted issuer (WorkloadIssuer) and
whose `sub` is the key's subject; Keycloak checks both (federated client authentication).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

# A token's `sub` as platforms write them: system:serviceaccount:billing:invoicer,
# spiffe://example.org/ns/billing/sa/invoicer, repo:acme/billing:ref:refs/heads/main.
_SUBJECT = re.compile(r"[\x21-\x7e]{1,255}")

TAKEN = (
    "That workload already holds a live key: Keycloak tells keys apart by issuer and subject "
    "alone. Revoke the other key first, or give this workload an identity of its own."
)


def check_subject(subject: str) -> str:
    """The subject as given, or ValueError saying what is wrong with it."""
    if not subject:
        raise ValueError("Give the subject your workload's tokens carry (their sub claim).")
    if not _SUBJECT.fullmatch(subject):
        raise ValueError(
            "A subject is 1 to 255 visible ASCII characters, no spaces: the `sub` claim of "
            "the workload's tokens, e.g. system:serviceaccount:billing:invoicer."
        )
    return subject


@dataclass(frozen=True)
class IssuerOrder:
    """An issuer to trust, as an administrator described it."""

    slug: str
    name: str
    issuer: str  # its tokens' `iss`, exactly
    jwks_url: str  # where its public keys are
    allows_reuse: bool = False
    subject_hint: str = ""
    max_token_age: int = 300  # seconds after its `iat` that Keycloak still takes a token
    keys_need_approval: bool = True  # an administrator approves each key bound to it


ISSUER_SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")


def check_issuer_slug(slug: str) -> str:
    """An issuer's short name (its identity provider's alias ends with it), or ValueError."""
    if not ISSUER_SLUG.fullmatch(slug):
        raise ValueError(
            "The short name is 1 to 40 lowercase letters, digits and hyphens, starting with a "
            "letter or digit."
        )
    return slug


def check_issuer_url(url: str, what: str) -> str:
    """An https URL (http only on a loopback address in dev and test, for a local issuer),
    or ValueError saying what is wrong with the issuer's `what` ("issuer", "JWKS URL")."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"The {what} must be an https URL.")
    if parts.username or parts.password or parts.fragment:
        raise ValueError(f"The {what} may not carry a user, a password or a #fragment.")
    local = settings.PROFILE != "production" and _loopback(parts.hostname)
    if parts.scheme == "http" and not local:
        raise ValueError(f"The {what} must use https.")
    return url


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
