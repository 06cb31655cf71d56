"""Checking DPoP proofs (RFC 9449): that a caller holds the key its access token is bound to.

A key that requires DPoP gets tokens bound to a key pair its application holds: Keycloak
writes the public key's RFC 7638 thumbprint in the token's `cnf.jkt`. With each request the
application sends `Authorization: DPoP <token>` and a `DPoP` header: a JWT it signed for that
one request, with its public key in the JWT's header. `ProofChecker.check` accepts the proof
only if (RFC 9449 §4.3 and §7.1):

- the header holds exactly one compact JWS, of `typ` dpop+jwt, signed with an asymmetric
  algorithm of DPOP_ALGORITHMS (never none, never an HMAC) by its `jwk`, a public key (a
  private member is refused) whose thumbprint is the token's `cnf.jkt`;
- `htm` is the request's method, and `htu` its URL without query and fragment (scheme and
  host compared without case, a default port dropped, percent-encoding decoded);
- `iat` is at most `max_age` seconds old and at most `skew` seconds ahead of this clock;
- `ath` is the base64url SHA-256 of the access token;
- `jti`, a string of at most 128 characters, was not used with this key before.

Used proofs are remembered, by key and `jti`, for `max_age + skew` seconds: as long as a proof
stays acceptable. Where (the DPOP_REPLAY_CACHE setting):
- in this process's memory (`MemoryReplays`; the dev and test profiles, and resource servers of
  their own): bounded and expiring. Each process keeps its own, so a proof replayed to another
  process of the same API within the window is accepted there: the known limit;
- in a Django cache that every process shares (`SharedReplays`; the portal in production uses
  its Redis, the "ratelimit" cache): one round trip per DPoP request, and no such limit.
When a proof cannot be remembered (the memory is full, the cache is down) the request is
refused with a 503 rather than a replay let through.

No nonces (RFC 9449 §9): the API never sends a `DPoP-Nonce`, so a proof's freshness rests on
its `iat`, the client's clock and the replay check. This module needs none of the portal's
models: resource servers of their own import it.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable
from functools import cache
from typing import Any, NamedTuple, Protocol
from urllib.parse import unquote, urlsplit

import orjson
from django.conf import settings
from django.core.cache import caches
from jwt import PyJWK
from jwt.algorithms import Algorithm
from jwt.exceptions import PyJWTError

from apikeys.credentials import base64url
from apikeys.credentials.challenge import DPOP_ALGORITHMS, InvalidProof, ProofsUncheckable

log = logging.getLogger(__name__)

PROOF_TYPE = "dpop+jwt"
MAX_JTI_LENGTH = 128
# Proofs one process remembers at once (bench/dpop.py measures the memory per proof). Past
# it, DPoP requests are refused until the oldest are forgotten, at most `max_age + skew` later.
REPLAY_CAPACITY = 100_000
_MAX_PROOF_LENGTH = 8192  # an RSA 4096 key and signature fit in half of it
_KEYS_REMEMBERED = 1024
_COMPACT_JWS = re.compile(rb"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
# RFC 7638 §3.2: the members a thumbprint covers, in the order it writes them.
_THUMBPRINT_MEMBERS = {
    "EC": ("crv", "kty", "x", "y"),
    "RSA": ("e", "kty", "n"),
    "OKP": ("crv", "kty", "x"),
}
_DEFAULT_PORTS = {"http": 80, "https": 443}


class _ProofKey(NamedTuple):
    algorithm: Algorithm
    key: Any
    jkt: str


class Replays(Protocol):
    def first_use(self, key: bytes) -> bool:
        """True the first time `key` is given within the window, False for a replay."""


class ProofChecker:
    """Checks DPoP proofs against the request they came with and its bound token; thread-safe."""

    def __init__(
        self,
        *,
        max_age: float,
        skew: float,
        replays: Replays | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.max_age = max_age
        self.skew = skew
        self.replays = replays if replays is not None else MemoryReplays(keep=max_age + skew)
        self.clock = clock
        # Each key pair's proofs share one header: its key is read and hashed once.
        self._keys: dict[bytes, _ProofKey] = {}

    def check(
        self, proof: str | None, *, method: str, url: str, access_token: str, jkt: str
    ) -> None:
        """Accept `proof` for a request of `method` to `url` (its absolute URL: scheme, host,
        path) carrying `access_token`, bound to the key `jkt`; otherwise InvalidProof says why."""
        raw = _one_proof(proof)
        first, last = raw.find(b"."), raw.rfind(b".")
        key = self._key_for(raw[:first])
        if key.jkt != jkt:
            raise InvalidProof("The proof is signed by another key than the token is bound to.")
        if not key.algorithm.verify(raw[:last], key.key, _b64decode(raw[last + 1 :])):
            raise InvalidProof("The proof's signature is not valid.")
        claims = _json_object(_b64decode(raw[first + 1 : last]), "payload")
        jti = self._check_claims(claims, method=method, url=url, access_token=access_token)
        # Last: only a proof valid in every other way is remembered.
        replay_key = hashlib.blake2b(f"{jkt} {jti}".encode(), digest_size=16).digest()
        if not self.replays.first_use(replay_key):
            raise InvalidProof("The proof was used before: make a new one for each request.")

    def _check_claims(
        self, claims: dict[str, Any], *, method: str, url: str, access_token: str
    ) -> str:
        jti = claims.get("jti")
        if not isinstance(jti, str) or not 0 < len(jti) <= MAX_JTI_LENGTH:
            raise InvalidProof(
                f"The proof needs a jti: a unique string of at most {MAX_JTI_LENGTH} characters."
            )
        if claims.get("htm") != method:
            raise InvalidProof(f"The proof was made for another method (htm), not {method}.")
        htu, wanted = claims.get("htu"), normalised_url(url)
        if wanted is None or not isinstance(htu, str) or normalised_url(htu) != wanted:
            raise InvalidProof(f"The proof was made for another URL (htu), not {wanted or url}.")
        issued = claims.get("iat")
        if not isinstance(issued, int | float) or isinstance(issued, bool):
            raise InvalidProof("The proof needs the time it was made (iat), in epoch seconds.")
        now = self.clock()
        if not now - self.max_age <= issued:  # written so that a NaN fails too
            raise InvalidProof(
                f"The proof is more than {self.max_age:g} seconds old (iat): "
                "make a new one for each request."
            )
        if not issued <= now + self.skew:
            raise InvalidProof("The proof was made in the future (iat): check the client's clock.")
        ath = claims.get("ath")
        if ath is None:
            raise InvalidProof("The proof needs the token's hash (ath): base64url(SHA-256(token)).")
        if ath != access_token_hash(access_token):
            raise InvalidProof("The proof was made for another token (ath).")
        return jti

    def _key_for(self, header_part: bytes) -> _ProofKey:
        known = self._keys.get(header_part)
        if known is not None:
            return known
        key = proof_key(_json_object(_b64decode(header_part), "header"))
        if len(self._keys) >= _KEYS_REMEMBERED:
            # Forget the oldest (dicts keep insertion order), unless another thread just did.
            with contextlib.suppress(KeyError, StopIteration, RuntimeError):
                del self._keys[next(iter(self._keys))]
        self._keys[header_part] = key
        return key


def proof_key(header: dict[str, Any]) -> _ProofKey:
    """The verifying key a proof's header names, checked; and its thumbprint."""
    if header.get("typ") != PROOF_TYPE:
        raise InvalidProof(f"The proof's typ must be {PROOF_TYPE}.")
    algorithm = header.get("alg")
    if not isinstance(algorithm, str) or algorithm not in DPOP_ALGORITHMS:
        raise InvalidProof(f"The proof must be signed with one of {' '.join(DPOP_ALGORITHMS)}.")
    if "crit" in header:
        raise InvalidProof("The proof has critical header parameters this API does not know.")
    jwk = header.get("jwk")
    if not isinstance(jwk, dict):
        raise InvalidProof("The proof's header must carry its public key (jwk).")
    if _PRIVATE_MEMBERS & jwk.keys():
        raise InvalidProof(
            "The proof's jwk holds a private key: send the public key only, "
            "and make a new key pair, since this one is no longer private."
        )
    try:
        parsed = PyJWK(jwk, algorithm=algorithm)
        # Checks an EC key's curve against the algorithm (ES256 needs P-256).
        key = parsed.Algorithm.prepare_key(parsed.key)
    except (PyJWTError, TypeError, ValueError, AttributeError):
        raise InvalidProof(f"The proof's jwk is not a public key for {algorithm}.") from None
    if parsed.Algorithm.check_key_length(key):
        raise InvalidProof("The proof's key is too short: use at least 2048 bits for RSA.")
    return _ProofKey(parsed.Algorithm, key, thumbprint(jwk))


def thumbprint(jwk: dict[str, Any]) -> str:
    """The RFC 7638 SHA-256 thumbprint of a public JWK, as a token's `cnf.jkt` names it."""
    members = _THUMBPRINT_MEMBERS.get(str(jwk.get("kty")), ())
    if not members or not all(isinstance(jwk.get(name), str) for name in members):
        raise InvalidProof("The proof's jwk lacks the members of its key type.")
    canonical = json.dumps({name: jwk[name] for name in members}, separators=(",", ":"))
    return _b64encode(hashlib.sha256(canonical.encode()).digest())


def access_token_hash(access_token: str) -> str:
    """A proof's `ath` for a token: base64url of its SHA-256, without padding."""
    return _b64encode(hashlib.sha256(access_token.encode()).digest())


def normalised_url(url: str) -> str | None:
    """`url` as a proof's `htu` is compared (RFC 9449 §4.3): no query or fragment, scheme and
    host in lower case, no default port, an empty path as "/" (RFC 3986 §6.2.2-3), and the path
    decoded as Django gives it in `request.path`. None: not an http(s) URL."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), parts.hostname
    if scheme not in _DEFAULT_PORTS or not host or "@" in parts.netloc:
        return None
    if ":" in host:
        host = f"[{host}]"
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        host = f"{host}:{port}"
    return f"{scheme}://{host}{unquote(parts.path) or '/'}"


class MemoryReplays:
    """Used proofs in this process's memory, each kept at least `keep` seconds, at most
    `capacity` at once: two sets, the current one and the one before, the older dropped each
    time the current one is `keep` seconds old (so a proof is kept less than twice `keep`)."""

    def __init__(
        self,
        *,
        keep: float,
        capacity: int = REPLAY_CAPACITY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.keep = keep
        self.capacity = capacity
        self.clock = clock
        self._current: set[bytes] = set()
        self._previous: set[bytes] = set()
        self._started = clock()
        self._lock = threading.Lock()

    def first_use(self, key: bytes) -> bool:
        with self._lock:
            now = self.clock()
            if now - self._started >= self.keep:
                # The previous set's proofs are all older than `keep`; the current one's too
                # if it has not been swapped for as long.
                recent = now - self._started < 2 * self.keep
                self._previous, self._current = (self._current if recent else set()), set()
                self._started = now
            if key in self._current or key in self._previous:
                return False
            if len(self._current) + len(self._previous) >= self.capacity:
                raise ProofsUncheckable(
                    "The API received more DPoP proofs than it can remember for now; "
                    "try again in a minute."
                )
            self._current.add(key)
            return True

    def __len__(self) -> int:
        return len(self._current) + len(self._previous)


class SharedReplays:
    """Used proofs in a Django cache every process of the API shares (Redis: one SET NX)."""

    def __init__(self, alias: str, *, keep: float) -> None:
        self.alias = alias
        self.timeout = math.ceil(keep)

    def first_use(self, key: bytes) -> bool:
        try:
            return bool(caches[self.alias].add(f"dpop:{key.hex()}", 1, timeout=self.timeout))
        except Exception as error:  # the cache is unreachable: fail closed
            log.warning("DPoP replay cache %r failed: %s", self.alias, error)
            raise ProofsUncheckable(
                "The API cannot check DPoP proofs for replays right now; try again in a minute."
            ) from None


@cache
def proof_checker() -> ProofChecker:
    """The process's checker for the APIs it guards (settings DPOP_*; a resource server of
    its own configured before DPoP existed gets the defaults: one minute, each process's
    own memory)."""
    max_age = getattr(settings, "DPOP_PROOF_MAX_AGE_SECONDS", 60)
    skew = getattr(settings, "DPOP_PROOF_CLOCK_SKEW_SECONDS", 5)
    alias = getattr(settings, "DPOP_REPLAY_CACHE", "")
    replays = SharedReplays(alias, keep=max_age + skew) if alias else None
    return ProofChecker(max_age=max_age, skew=skew, replays=replays)


def _one_proof(proof: str | None) -> bytes:
    if not proof:
        raise InvalidProof(
            "Send a DPoP proof with the token: a DPoP header holding a JWT signed, "
            "for this request, by the key the token is bound to."
        )
    try:
        raw = proof.encode("ascii")
    except UnicodeEncodeError:
        raw = b""
    # A comma: several DPoP headers, which the server joined into one.
    if b"," in raw:
        raise InvalidProof("The DPoP header must hold exactly one proof: one signed JWT.")
    if len(raw) > _MAX_PROOF_LENGTH:
        raise InvalidProof(f"The proof is longer than {_MAX_PROOF_LENGTH} bytes.")
    if not _COMPACT_JWS.fullmatch(raw):
        raise InvalidProof(
            "The proof must be a signed JWT: three parts in base64url (no '+', '/' or "
            "padding) joined by dots."
        )
    return raw


def _b64decode(part: bytes) -> bytes:
    try:
        return base64url.decode(part)
    except ValueError:
        raise InvalidProof("The proof is not valid base64url.") from None


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _json_object(raw: bytes, part: str) -> dict[str, Any]:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidProof(f"The proof's {part} is not JSON.") from None
    if not isinstance(value, dict):
        raise InvalidProof(f"The proof's {part} is not a JSON object.")
    return value
