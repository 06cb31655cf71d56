"""Checking the access tokens that partner applications send to APIs (RFC 6750 bearer tokens,
and RFC 9449 DPoP-bound tokens with their proofs).

For resource servers written in Django:

    @bearer_token_required(audience="sample-api", strict=True)
    def whoami(request: TokenRequest): ...  # request.token holds the verified claims

    @bearer_token_required(audience="sample-api", permissions="orders:write")
    def create_order(request: TokenRequest): ...  # a token without orders:write gets a 403

A token is accepted only if it is a compact JWS signed with RS256 (the only algorithm
allowed) by a key in the realm's JWKS, from the realm's issuer, current (`exp`, `nbf`,
with a small leeway), of type Bearer or DPoP, and with the API's audience in `aud`.
`cryptography` checks the signature; PyJWT reads the JWKS. This module splits the token and
checks the claims itself: PyJWT's own `decode` costs about five signature checks per token,
since it vets base64 one character at a time in Python.

No network call is made on the hot path but one every `JWKS_MAX_AGE_SECONDS`. The JWKS is
fetched on first use; again when a token names an unknown `kid` (the realm rotated its
keys), at most once per `JWKS_REFETCH_SECONDS`; and again once it is older than
`JWKS_MAX_AGE_SECONDS`, when keys the realm no longer publishes are dropped, with the
tokens they signed. Verified tokens are remembered, within a bounded cache, until they
expire. A token seen before costs a dictionary lookup and a clock reading.

A token bound to a key (DPoP: a `cnf.jkt` claim, which Keycloak gives the tokens of keys that
require DPoP) is accepted only as `Authorization: DPoP <token>` with a valid proof in a `DPoP`
header (apikeys/credentials/dpop.py), checked before the key's standing and permissions;
presented as a bearer token it is refused, and so is an unbound token presented as DPoP.
Refusals of DPoP requests carry a DPoP challenge (RFC 9449 §7.1). A DPoP request costs one
signature check more, and one call to the shared cache of used proofs where one is configured
(DPOP_REPLAY_CACHE); a plain bearer token pays one attribute read for all this.

A key's permissions are the names in its tokens' `scope` claim (space-separated, RFC 8693
§4.2), split once when the token is verified. A call that needs one the token lacks is refused
with a 403 `insufficient_scope` naming the permissions it needs (RFC 6750 §3.1), after the
token itself and, in strict mode, the key's standing were checked (a revoked key's token is a
401 whatever it carries). `require_permissions` is the same check for other code.

Strict mode, the default, also refuses tokens of the API's keys that are no longer in good
standing (revoked, suspended, expired or being ended, unfinished or pending, of owners
disabled in Keycloak), tokens of clients not named like the portal's keys, and tokens that
carry another catalog API's audience. A client named like a key but unknown to this portal
(made by hand in Keycloak, or another deployment's on a shared realm) is not refused: the
list names what the portal knows. The set of such keys is kept in memory
(`RevocationList`) and read again every REVOCATION_FEED_REFRESH_SECONDS from the API's
revocation feed (apikeys/credentials/revocations.py): over HTTP for a resource server of its own
(REVOCATION_FEED_URL, REVOCATION_FEED_TOKEN), in process for the portal's sample API. No
call is made per request. If the set cannot be read for REVOCATION_FEED_MAX_AGE seconds,
every token is refused with a 503 rather than trusted unchecked.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from functools import cache, wraps
from typing import Any, NamedTuple, cast

import orjson
import requests
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.hashes import SHA256
from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from jwt import PyJWKSet
from jwt.exceptions import PyJWKSetError

from apikeys.credentials import base64url
from apikeys.credentials.challenge import (
    BoundTokenAsBearer,
    InsufficientScope,
    MalformedRequest,
    MissingToken,
    StandingUnknown,
    TokenError,
    error_response,
)
from apikeys.credentials.dpop import proof_checker
from apikeys.http import TokenRequest

log = logging.getLogger(__name__)

Claims = dict[str, Any]
ALGORITHM = "RS256"
# The portal's key clients' prefix (ApiKey.CLIENT_ID_PREFIX), written here so that a resource
# server of its own needs none of the portal's models.
KEY_CLIENT_PREFIX = "apikey-"
# RS256's padding and hash, made once: they are immutable, and making them per token was a
# tenth of the validator's own cost on a first-seen token.
_PKCS1V15, _SHA256 = PKCS1v15(), SHA256()
_MAX_TOKEN_LENGTH = 16_384
_MAX_HEADERS_REMEMBERED = 64
# A scope token as RFC 6749 §3.3 allows it (no space, quote or backslash), so that a permission
# can be written in the challenge's scope="..." as it is.
_PERMISSION = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")


class VerifiedClaims(dict[str, Any]):
    """A verified token's claims, its permissions (the `scope` claim, split once), and the
    thumbprint of the key it is bound to (`cnf.jkt`; None for a bearer token)."""

    __slots__ = ("jkt", "permissions")
    permissions: frozenset[str]
    jkt: str | None


class _Verified(NamedTuple):  # a tuple: the cheapest record to build on the hot path
    claims: VerifiedClaims
    audiences: str | list[str]
    expires: float
    not_before: float
    kid: str
    jkt: str | None


class TokenValidator:
    """Verifies access tokens of one issuer; thread-safe, and cheap for tokens seen before."""

    def __init__(
        self,
        *,
        issuer: str,
        jwks_url: str,
        leeway: float = 10,
        refetch_seconds: float = 30,
        max_age: float = 300,
        remember: int = 4096,
        fetch_timeout: float = 5,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.issuer = issuer
        self.jwks_url = jwks_url
        self.leeway = leeway
        self.refetch_seconds = refetch_seconds
        self.max_age = max_age
        self.remember = remember
        self.fetch_timeout = fetch_timeout
        self.clock = clock
        self.jwks_fetches = 0
        self._keys: dict[str, RSAPublicKey] = {}
        self._keys_by_header: dict[bytes, tuple[str, RSAPublicKey]] = {}
        self._last_refetch = float("-inf")
        self._fetched_at = float("inf")  # until the first fetch, no refresh is due
        self._fetch_lock = threading.Lock()
        self._verified: dict[str, _Verified] = {}

    def validate(self, token: str, audience: str, *, checks_dpop: bool = False) -> VerifiedClaims:
        """The token's claims if it is valid for `audience`; otherwise TokenError says why.

        A token bound to a key (DPoP) is refused unless the caller checks its proof
        (`checks_dpop`, as `bearer_token_required` does): without one, it is a bearer token.
        """
        now = self.clock()
        if now - self._fetched_at > self.max_age:
            self._refresh(now)
        known = self._verified.get(token)
        if known is None:
            known = self._verify(token, now)
            self._remember(token, known)
        claims, audiences, expires, not_before, _, jkt = known  # one unpacking: the hot path
        if now > expires + self.leeway:
            self._verified.pop(token, None)
            raise TokenError("The token has expired.")
        if now < not_before - self.leeway:
            raise TokenError("The token is not valid yet.")
        if audience != audiences and (isinstance(audiences, str) or audience not in audiences):
            raise TokenError(f"The token is not meant for this API (audience {audience}).")
        if jkt is not None and not checks_dpop:
            raise BoundTokenAsBearer(USE_DPOP)
        return claims

    def _verify(self, token: str, now: float) -> _Verified:
        if len(token) > _MAX_TOKEN_LENGTH:
            raise TokenError("The token is too long.")
        try:
            raw = token.encode("ascii")
        except UnicodeEncodeError:
            raise TokenError("The token is not valid base64url.") from None
        first = raw.find(b".")
        last = raw.find(b".", first + 1)
        if first < 1 or last < 0 or raw.find(b".", last + 1) >= 0:
            raise TokenError("The token is not a signed JWT (three dot-separated parts).")
        kid, key = self._key_for(raw[:first])
        # The signature covers the header and payload exactly as they were sent.
        try:
            key.verify(_b64decode(raw[last + 1 :]), raw[:last], _PKCS1V15, _SHA256)
        except InvalidSignature:
            raise TokenError("The token's signature is not valid.") from None
        payload = _json_object(_b64decode(raw[first + 1 : last]), "payload")
        claims = VerifiedClaims(payload)
        claims.permissions = _permissions_of(payload.get("scope"))
        if claims.get("iss") != self.issuer:
            raise TokenError("The token comes from another issuer.")
        kind, confirmation = claims.get("typ"), claims.get("cnf")
        if kind not in ("Bearer", "DPoP"):  # an ID or refresh token, or none said
            raise TokenError("The token is not an access token.")
        jkt = confirmation.get("jkt") if isinstance(confirmation, dict) else None
        if (kind == "DPoP" or jkt is not None) and not isinstance(jkt, str):
            raise TokenError("The token's key binding (cnf.jkt) is missing or malformed.")
        claims.jkt = jkt
        expires, not_before = claims.get("exp"), claims.get("nbf", 0)
        if not isinstance(expires, int | float) or not isinstance(not_before, int | float):
            raise TokenError("The token has no valid expiry.")
        audience = claims.get("aud", [])
        if not isinstance(audience, str | list):
            raise TokenError("The token's audience is malformed.")
        return _Verified(claims, audience, float(expires), float(not_before), kid, jkt)

    def _key_for(self, header_part: bytes) -> tuple[str, RSAPublicKey]:
        """The signing key a header names, and its id; headers repeat, so each is parsed once."""
        known = self._keys_by_header.get(header_part)
        if known is not None:
            return known
        header = _json_object(_b64decode(header_part), "header")
        if header.get("alg") != ALGORITHM:
            raise TokenError(f"The token must be signed with {ALGORITHM}.")
        if "crit" in header:
            raise TokenError("The token has critical header parameters this API does not know.")
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise TokenError("The token does not name its signing key.")
        key = self._keys.get(kid) or self._refetch_for(kid)
        if len(self._keys_by_header) < _MAX_HEADERS_REMEMBERED:
            self._keys_by_header[header_part] = (kid, key)
        return kid, key

    def _refetch_for(self, kid: str) -> RSAPublicKey:
        """Fetch the JWKS for an unknown key id: the first time, then at most once per interval.

        The first fetch is not counted, so a key rotated in just after start-up is picked up
        by the next token that uses it.
        """
        with self._fetch_lock:
            if kid not in self._keys:
                now = self.clock()
                if not self.jwks_fetches or now - self._last_refetch >= self.refetch_seconds:
                    if self.jwks_fetches:
                        self._last_refetch = now
                    self._replace_keys(self._fetch_keys(), now)
        key = self._keys.get(kid)
        if key is None:
            raise TokenError("The token is signed with a key this issuer does not publish.")
        return key

    def _refresh(self, now: float) -> None:
        """The timed refresh: one thread fetches, the others go on with the keys they have."""
        if not self._fetch_lock.acquire(blocking=False):
            return
        try:
            if now - self._fetched_at > self.max_age:
                self._replace_keys(self._fetch_keys(), now)
        finally:
            self._fetch_lock.release()

    def _replace_keys(self, keys: dict[str, RSAPublicKey] | None, now: float) -> None:
        """Take the realm's keys as published now; forget tokens signed by keys it dropped."""
        self._fetched_at = now
        if keys is None:
            return  # the fetch failed: keep what we had; the next refresh may work
        dropped = self._keys.keys() - keys.keys()
        self._keys = keys
        self._keys_by_header = {}
        if dropped:
            for token, verified in list(self._verified.items()):
                if verified.kid in dropped:
                    self._verified.pop(token, None)

    def _fetch_keys(self) -> dict[str, RSAPublicKey] | None:
        self.jwks_fetches += 1
        try:
            response = requests.get(self.jwks_url, timeout=self.fetch_timeout)
            response.raise_for_status()
            jwks = PyJWKSet.from_dict(response.json())
        except (requests.RequestException, ValueError, PyJWKSetError) as error:
            log.warning("Could not fetch the JWKS from %s: %s", self.jwks_url, error)
            return None
        return {
            key.key_id: key.key
            for key in jwks.keys
            if key.key_id
            and key.public_key_use in (None, "sig")
            and key.algorithm_name == ALGORITHM
            and isinstance(key.key, RSAPublicKey)
        }

    def _remember(self, token: str, verified: _Verified) -> None:
        if len(self._verified) >= self.remember:
            # Evict the oldest (dicts keep insertion order), unless another thread just did.
            with contextlib.suppress(KeyError, StopIteration, RuntimeError):
                del self._verified[next(iter(self._verified))]
        self._verified[token] = verified

    def forget(self) -> None:
        """Drop remembered tokens (the keys stay); for tests and benchmarks."""
        self._verified.clear()


def _b64decode(part: bytes) -> bytes:
    """Base64url; any character outside the alphabet makes the token invalid."""
    try:
        return base64url.decode(part)
    except ValueError:
        raise TokenError("The token is not valid base64url.") from None


def _json_object(raw: bytes, part: str) -> dict[str, Any]:
    try:
        value = orjson.loads(raw)  # a fifth of json.loads' time, on the hot path
    except orjson.JSONDecodeError:
        raise TokenError(f"The token's {part} is not JSON.") from None
    if not isinstance(value, dict):
        raise TokenError(f"The token's {part} is not a JSON object.")
    return value


@cache
def realm_validator() -> TokenValidator:
    """The validator for tokens of the portal's realm, shared by every protected view."""
    return TokenValidator(
        issuer=settings.TOKEN_ISSUER,
        jwks_url=settings.OIDC_OP_JWKS_ENDPOINT,
        leeway=settings.TOKEN_LEEWAY_SECONDS,
        refetch_seconds=settings.JWKS_REFETCH_SECONDS,
        max_age=settings.JWKS_MAX_AGE_SECONDS,
        fetch_timeout=settings.KEYCLOAK_TIMEOUT,
    )


USE_DPOP = (
    "The token is bound to a key (DPoP): send it as Authorization: DPoP <token>, with a proof."
)


def presented_token(request: HttpRequest) -> tuple[str, bool]:
    """The access token from `Authorization: Bearer …` or `Authorization: DPoP …` (the only
    places a token is accepted), and whether it came with the DPoP scheme."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    scheme = scheme.lower()
    if scheme != "bearer" and scheme != "dpop":
        raise MissingToken(
            "Send an access token: Authorization: Bearer <token>, "
            "or DPoP <token> with a proof for a key that requires DPoP."
        )
    dpop = scheme == "dpop"
    token = token.strip()
    if not token or " " in token:
        malformed = MalformedRequest(
            f"The Authorization header must be: {'DPoP' if dpop else 'Bearer'} <token>."
        )
        malformed.dpop = dpop
        raise malformed
    return token, dpop


def check_proof(request: HttpRequest, token: str, claims: VerifiedClaims, *, dpop: bool) -> None:
    """RFC 9449 §7: a token bound to a key needs the DPoP scheme and a valid proof of this
    request; the DPoP scheme needs a bound token."""
    if claims.jkt is None:
        raise TokenError(
            "The token is not bound to a key: send it as Authorization: Bearer <token>."
        )
    if not dpop:
        raise BoundTokenAsBearer(USE_DPOP)
    # The URL as the client addressed it: behind a proxy, Django must know the public scheme
    # (SECURE_PROXY_SSL_HEADER) and host (the Host header passed on, or USE_X_FORWARDED_HOST),
    # or every proof's `htu` differs.
    proof_checker().check(
        request.headers.get("DPoP"),
        method=request.method or "",
        url=request.build_absolute_uri(request.path),
        access_token=token,
        jkt=claims.jkt,
    )


def bearer_token(request: HttpRequest) -> str:
    """The token from `Authorization: Bearer …`, for credentials that are only ever bearer
    tokens (registration tokens); access tokens come through `presented_token`."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        raise MissingToken("Send an access token: Authorization: Bearer <token>.")
    token = token.strip()
    if not token or " " in token:
        raise MalformedRequest("The Authorization header must be: Bearer <token>.")
    return token


class RevocationList:
    """The client ids of one API's keys no longer in good standing, kept in memory.

    `fetch` gives the feed's document (apikeys/credentials/revocations.py); it is called again once
    the copy is `refresh` seconds old, by one request while the others go on with the
    copy they have. A copy older than `max_age` (the feed failed meanwhile) refuses every
    token: fail closed.
    """

    def __init__(
        self,
        fetch: Callable[[], dict[str, Any]],
        *,
        refresh: float,
        max_age: float,
        audience: str | None = None,
    ) -> None:
        self._fetch = fetch
        self._audience = audience  # the feed must be this API's (a token of another's: refused)
        self._tried_at = -math.inf
        self._refresh = refresh
        self._max_age = max_age
        self._refused: dict[str, str] = {}  # client id -> why its tokens are refused
        self._other_apis: dict[str, str] = {}  # the catalog's other audiences -> API name
        self._read_at = -math.inf
        self._lock = threading.Lock()
        self.reads = 0  # how many times the feed was read (the tests count them)

    def refusal(self, client_id: str, audiences: list[str]) -> str | None:
        """Why a token of `client_id` with these audiences must be refused, or None."""
        now = time.monotonic()
        # Tried again every `refresh` seconds, read or not: a failing feed is not asked on
        # every request.
        if now - self._tried_at >= self._refresh and self._lock.acquire(blocking=False):
            try:
                self._read(now)
            finally:
                self._lock.release()
        if time.monotonic() - self._read_at > self._max_age:
            raise StandingUnknown(
                "The API cannot confirm that keys are in good standing right now; "
                "try again in a minute."
            )
        if why := self._refused.get(client_id):
            return why
        for audience in audiences:
            if other := self._other_apis.get(audience):
                # Whatever audiences the token carries: the key was issued for another API.
                return f"The key {client_id} was issued for {other}, not this API."
        return None

    def _read(self, now: float) -> None:
        self._tried_at = now
        try:
            document = self._fetch()
            if self._audience is not None and document.get("audience") != self._audience:
                raise ValueError(
                    f"the feed is the one of {document.get('audience')!r}, not of "
                    f"{self._audience!r}: check REVOCATION_FEED_TOKEN"
                )
            refused = {str(k): str(v) for k, v in dict(document["refused"]).items()}
            others = {str(k): str(v) for k, v in dict(document.get("other_apis") or {}).items()}
        except Exception as error:  # any failure keeps the copy until it is max_age old
            log.warning("revocation feed not read: %s", error)
            return
        self._refused, self._other_apis = refused, others
        self._read_at = now
        self.reads += 1


def feed_over_http(url: str, token: str, timeout: float) -> Callable[[], dict[str, Any]]:
    """Read the feed from the portal, for a resource server of its own."""

    def fetch() -> dict[str, Any]:
        response = requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout)
        response.raise_for_status()
        document = response.json()
        if not isinstance(document, dict) or not isinstance(document.get("refused"), dict):
            raise ValueError(f"{url} answered something other than a revocation feed")
        return document

    return fetch


def feed_in_process(audience: str) -> Callable[[], dict[str, Any]]:
    """Build the feed's document in process, for the portal's own sample API."""

    def fetch() -> dict[str, Any]:
        from apikeys.credentials import revocations
        from apikeys.models import Api

        return revocations.document(Api.objects.get(audience=audience))

    return fetch


_lists: dict[str, RevocationList] = {}
_lists_lock = threading.Lock()


def revocation_list(audience: str) -> RevocationList:
    """The process's list for the API of `audience` (one per API, made on first use)."""
    with _lists_lock:
        if audience not in _lists:
            if settings.REVOCATION_FEED_URL:
                fetch = feed_over_http(
                    settings.REVOCATION_FEED_URL,
                    settings.REVOCATION_FEED_TOKEN,
                    timeout=min(settings.KEYCLOAK_TIMEOUT, settings.REVOCATION_FEED_MAX_AGE),
                )
            else:
                fetch = feed_in_process(audience)
            _lists[audience] = RevocationList(
                fetch,
                refresh=settings.REVOCATION_FEED_REFRESH_SECONDS,
                max_age=settings.REVOCATION_FEED_MAX_AGE,
                audience=audience,
            )
        return _lists[audience]


def forget_revocation_lists() -> None:
    """Start again from the feed (the tests, between settings)."""
    with _lists_lock:
        _lists.clear()


def check_standing(claims: Claims, audience: str) -> str:
    """Strict mode: the key behind the token, if it may still be used at this API."""
    client_id = str(claims.get("azp", ""))
    if not client_id.startswith(KEY_CLIENT_PREFIX):
        raise TokenError("The token was not issued to a key of this portal.")
    audiences = claims.get("aud")
    audiences = [audiences] if isinstance(audiences, str) else list(audiences or [])
    others = [a for a in audiences if a != audience]
    if refusal := revocation_list(audience).refusal(client_id, others):
        raise TokenError(refusal)
    return client_id


def granted_permissions(claims: Mapping[str, Any]) -> frozenset[str]:
    """The permissions a token carries: its `scope` claim's names (none if it has no claim)."""
    if isinstance(claims, VerifiedClaims):
        return claims.permissions
    return _permissions_of(claims.get("scope"))


_NO_PERMISSIONS: frozenset[str] = frozenset()
_permission_sets: dict[str, frozenset[str]] = {}


def _permissions_of(scope: object) -> frozenset[str]:
    """A `scope` claim's names. The same few claims come in token after token (a key's tokens
    carry the same scopes), so each is split once."""
    if not isinstance(scope, str):
        return _NO_PERMISSIONS
    known = _permission_sets.get(scope)
    if known is None:
        if len(_permission_sets) >= 1024:
            _permission_sets.clear()
        known = _permission_sets[scope] = frozenset(scope.split())
    return known


def permission_set(needed: str | Iterable[str]) -> frozenset[str]:
    """The permissions a call needs, as `require_permissions` takes them fastest.

    A str is one permission. ValueError for a name a `scope` claim could not carry.
    """
    names = frozenset((needed,) if isinstance(needed, str) else needed)
    for name in names:
        if not _PERMISSION.fullmatch(name):
            raise ValueError(f"{name!r} is not a permission's name (a scope token, RFC 6749 §3.3)")
    return names


def require_permissions(claims: Mapping[str, Any], needed: str | Iterable[str]) -> None:
    """Refuse (InsufficientScope, a 403) a token that lacks any of the `needed` permissions.

    `claims` are a validated token's; pass `permission_set(...)` once made on a hot path.
    """
    wanted = needed if isinstance(needed, frozenset) else permission_set(needed)
    # The validator's claims carry their permissions: no call on the hot path.
    granted = (
        claims.permissions if isinstance(claims, VerifiedClaims) else granted_permissions(claims)
    )
    if wanted <= granted:
        return
    missing = sorted(wanted - granted)
    named = f"permission {missing[0]}" if len(missing) == 1 else f"permissions {' '.join(missing)}"
    raise InsufficientScope(
        f"The token does not carry the {named}, which this call needs.",
        scope=" ".join(sorted(wanted)),
    )


def bearer_token_required(
    audience: str, *, strict: bool = True, permissions: str | Iterable[str] = ()
) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """Guard an API view: only requests with a valid access token for `audience` reach it.

    The view finds the claims in `request.token`, and in strict mode (the default) the key's
    client id, checked against the API's revocation list, in `request.client_id`.
    `strict=False` trusts a token until its `exp` (a revoked key's tokens keep working until
    then). `permissions` (one name, or several) must all be in the token's `scope` claim;
    a token without one of them gets a 403 insufficient_scope.
    A token bound to a key comes as `Authorization: DPoP <token>` with a `DPoP` proof header,
    checked before the key's standing and permissions.
    Such views need no session or CSRF token: the token (and its proof) is the credential.
    """
    needed = permission_set(permissions)  # bad names fail here, at import, not per request

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            checked = cast(TokenRequest, request)
            dpop = False
            try:
                token, dpop = presented_token(request)
                claims = realm_validator().validate(token, audience, checks_dpop=True)
                if dpop or claims.jkt is not None:  # a bearer token: one attribute read
                    check_proof(request, token, claims, dpop=dpop)
                if strict:
                    checked.client_id = check_standing(claims, audience)
                if needed and not needed <= claims.permissions:  # the hot path: one subset test
                    require_permissions(claims, needed)  # refuses, naming what is missing
            except TokenError as error:
                return error_response(error, audience, dpop=dpop)
            checked.token = claims
            return view(checked, *args, **kwargs)

        return login_not_required(csrf_exempt(guarded))

    return decorate
