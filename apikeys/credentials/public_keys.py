"""The public keys of private_key_jwt keys: read what a customer gives, refuse what is unsafe.

A customer may paste a JWK, a JWKS, one or more PEM public keys or certificates, or give
the URL of their own JWKS. Accepted: RSA of 2048 bits or more, EC on P-256 or P-384, and
Ed25519 (Keycloak 26.7.3 accepts an EdDSA assertion: checked). Anything holding private
key material is refused with a warning that the key has left its owner's hands; that text
is never stored, logged or shown back. Each accepted key becomes a public JWK with a `kid`
(the one given, or its RFC 7638 thumbprint), `use: sig` and the algorithm it signs with.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from django.views.decorators.debug import sensitive_variables
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from jwt.exceptions import InvalidKeyError

from portal import outbound

MAX_TEXT = 20_000
MIN_RSA_BITS = 2048
MAX_RSA_BITS = 8192
CURVES = {"secp256r1": ("P-256", "ES256"), "secp384r1": ("P-384", "ES384")}
RSA_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
# Members of a JWK that only a private (or symmetric) key has.
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
# PEM, PKCS#8, OpenSSH and PGP private keys say so in their armour; PuTTY's files say it too.
PRIVATE_TEXT = re.compile(r"PRIVATE KEY|PuTTY-User-Key-File|PRIVATE-KEY", re.IGNORECASE)
PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----.+?-----END \1-----", re.DOTALL)
KID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")

EXPOSED = (
    "This is a private key. Nobody should ever receive it, us included: the portal did not "
    "keep it, but it has left your hands, so treat it as exposed. Make a new key pair, keep "
    "its private key where only your application can read it, and give us its public key."
)


class Refused(ValueError):
    """Not an acceptable public key; the message says why, for the customer."""


class PrivateKeyMaterial(Refused):
    """The input held a private key: refused, and the customer told it is exposed."""

    def __init__(self, where: str = "") -> None:
        super().__init__(f"{where}{EXPOSED}")


@dataclass(frozen=True)
class AcceptedKey:
    kid: str
    thumbprint: str
    jwk: dict[str, str]
    summary: str


@sensitive_variables()  # may hold a private key pasted by mistake
def parse(text: str) -> list[AcceptedKey]:
    """The public keys in a pasted JWK, JWKS or PEM text; Refused if any is unacceptable."""
    text = text.strip()
    if not text:
        raise Refused("Paste a public key: a PEM public key or certificate, a JWK or a JWKS.")
    if len(text) > MAX_TEXT:
        raise Refused(f"That is more than {MAX_TEXT} characters: paste public keys only.")
    if PRIVATE_TEXT.search(text):
        raise PrivateKeyMaterial()
    if text.startswith(("{", "[")):
        return from_jwks_text(text)
    if "-----BEGIN" in text:
        return _from_pem(text)
    raise Refused(
        "This is not a key we can read. Paste a PEM public key (-----BEGIN PUBLIC KEY-----), "
        "a PEM certificate, a JWK or a JWKS (JSON)."
    )


@sensitive_variables()
def from_jwks_text(text: str, *, where: str = "") -> list[AcceptedKey]:
    """The keys of a JWK or JWKS document (from a paste, or from a partner's JWKS URL)."""
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        raise Refused(f"{where}This is not valid JSON.") from None
    if isinstance(document, list):  # a bare list of JWKs
        document = {"keys": document}
    if not isinstance(document, dict):
        raise Refused(f"{where}Expected a JSON object: a JWK or a JWKS.")
    items = document.get("keys") if "keys" in document else [document]
    if not isinstance(items, list) or not items:
        raise Refused(f"{where}The JWKS has no keys.")
    if any(isinstance(item, dict) and PRIVATE_MEMBERS & item.keys() for item in items):
        raise PrivateKeyMaterial(where)
    keys = [_from_jwk(item, where) for item in items if _signs(item)]
    if not keys:
        raise Refused(f"{where}The JWKS has no signing keys (every key says use: enc).")
    return keys


def from_url(url: str) -> list[AcceptedKey]:
    """The keys a partner's JWKS URL serves now, checked as if pasted."""
    try:
        body = outbound.fetch(url)
    except outbound.RefusedAddress as refusal:
        raise Refused(f"Your JWKS URL cannot be used: {refusal}") from None
    return from_jwks_text(body.decode("utf-8", "replace"), where="Your JWKS URL: ")


def _signs(item: object) -> bool:
    return not (isinstance(item, dict) and item.get("use") == "enc")


def _from_jwk(item: object, where: str) -> AcceptedKey:
    if not isinstance(item, dict):
        raise Refused(f"{where}Each key must be a JSON object (a JWK).")
    kty = item.get("kty")
    if not isinstance(kty, str):
        raise Refused(f"{where}Each key needs a kty: RSA, EC or OKP (Ed25519).")
    loaders: dict[str, Callable[[dict[str, Any]], Any]] = {
        "RSA": RSAAlgorithm.from_jwk,
        "EC": ECAlgorithm.from_jwk,
        "OKP": OKPAlgorithm.from_jwk,
    }
    if kty not in loaders:
        raise Refused(f"{where}Key type {kty!r} is not accepted: use RSA, EC or OKP (Ed25519).")
    try:
        public = loaders[kty](item)
    except (InvalidKeyError, ValueError, KeyError, TypeError, AttributeError):
        raise Refused(f"{where}A {kty} key in it could not be read: check its members.") from None
    kid = item.get("kid")
    if kid is not None and not (isinstance(kid, str) and KID.match(kid)):
        raise Refused(f"{where}A kid must be 1 to 64 letters, digits or . _ : -")
    return _accept(public, kid=kid, alg=item.get("alg"), where=where)


def _from_pem(text: str) -> list[AcceptedKey]:
    blocks = [match.group(0) for match in PEM_BLOCK.finditer(text)]
    if not blocks:
        raise Refused("The PEM text is cut short: include its BEGIN and END lines.")
    keys = []
    for block in blocks:
        certificate = "CERTIFICATE" in block.split("\n", 1)[0]
        try:
            if certificate:
                cert = x509.load_pem_x509_certificate(block.encode())
                public: Any = cert.public_key()
            else:
                public = load_pem_public_key(block.encode())
        except (ValueError, UnsupportedAlgorithm):
            raise Refused("A PEM block could not be read as a public key or certificate.") from None
        if certificate and cert.not_valid_after_utc < datetime.now(UTC):
            raise Refused("That certificate has expired: give a current one.")
        keys.append(_accept(public, kid=None, alg=None, where=""))
    return keys


def _accept(public: Any, *, kid: str | None, alg: object, where: str) -> AcceptedKey:
    """Check the key's kind and size; give its public JWK."""
    if isinstance(public, rsa.RSAPublicKey):
        bits = public.key_size
        if bits < MIN_RSA_BITS:
            raise Refused(
                f"{where}An RSA key of {bits} bits is too weak: use {MIN_RSA_BITS} or more."
            )
        if bits > MAX_RSA_BITS:
            raise Refused(f"{where}RSA keys over {MAX_RSA_BITS} bits are not accepted.")
        jwk = json.loads(RSAAlgorithm.to_jwk(public))
        algorithm = alg if alg in RSA_ALGORITHMS else "RS256"
        summary = f"RSA {bits} bits"
    elif isinstance(public, ec.EllipticCurvePublicKey):
        if public.curve.name not in CURVES:
            raise Refused(f"{where}EC keys must be on P-256 or P-384, not {public.curve.name}.")
        curve, algorithm = CURVES[public.curve.name]
        jwk = json.loads(ECAlgorithm.to_jwk(public))
        summary = f"EC {curve}"
    elif isinstance(public, ed25519.Ed25519PublicKey):
        jwk = json.loads(OKPAlgorithm.to_jwk(public))
        algorithm, summary = "EdDSA", "Ed25519"
    elif isinstance(public, ed448.Ed448PublicKey):
        raise Refused(f"{where}Ed448 keys are not accepted: use Ed25519.")
    else:
        raise Refused(f"{where}Only RSA, EC (P-256, P-384) and Ed25519 keys are accepted.")
    jwk = {name: value for name, value in jwk.items() if name not in ("alg", "use", "kid")}
    thumbprint = _thumbprint(jwk)
    jwk |= {"kid": kid or thumbprint, "use": "sig", "alg": algorithm}
    return AcceptedKey(kid=jwk["kid"], thumbprint=thumbprint, jwk=jwk, summary=summary)


def _thumbprint(jwk: dict[str, str]) -> str:
    """RFC 7638: SHA-256 of the required members, in order, without white space."""
    required = {
        "RSA": ("e", "kty", "n"),
        "EC": ("crv", "kty", "x", "y"),
        "OKP": ("crv", "kty", "x"),
    }
    members = {name: jwk[name] for name in required[jwk["kty"]]}
    digest = hashlib.sha256(json.dumps(members, separators=(",", ":")).encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
