"""Keys that require DPoP (RFC 9449): Keycloak binds their tokens to a key the application
holds, and the APIs accept such a token only with a fresh proof of each request.

The application's side is requests-oauth2client's (OAuth2Client, DPoPKey, DPoPToken), a library
no one here wrote. One key and one token serve many requests: the refusals are a table.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from typing import Any

import jwskate
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from django.conf import settings
from django.http.response import HttpResponseBase
from django.test import Client
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from requests_oauth2client import DPoPKey, DPoPToken, OAuth2Client

from apikeys.credentials.challenge import InvalidProof, ProofsUncheckable
from apikeys.credentials.dpop import MemoryReplays, ProofChecker, SharedReplays
from apikeys.models import Permission, User
from apikeys.operations import lifecycle
from tests.factories import issue
from tests.tokens import claims, request_token

READ = "orders:read"


def dpop_token(revealed: lifecycle.Revealed) -> DPoPToken:
    """A token bound to a new key pair, as an application gets it (testing: Keycloak is http)."""
    client = OAuth2Client(
        settings.TOKEN_ENDPOINT,
        client_id=revealed.key.client_id,
        client_secret=revealed.secret,
        dpop_bound_access_tokens=True,
        testing=True,
    )
    token = client.client_credentials()
    assert isinstance(token, DPoPToken)
    return token


def sent_headers(token: DPoPToken, method: str, url: str) -> dict[str, str]:
    """The Authorization and DPoP headers the library sends with a request: a new proof."""
    prepared = token(requests.Request(method, url).prepare())
    return {name: str(prepared.headers[name]) for name in ("Authorization", "DPoP")}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def refusal(response: HttpResponseBase | requests.Response) -> tuple[int, str, str]:
    """A refusal's status, and its challenge's scheme and error code."""
    challenge = response.headers.get("WWW-Authenticate", "")  # none: it was accepted
    error = re.search(r'error="([^"]*)"', challenge)
    return response.status_code, challenge.split(" ")[0], error[1] if error else ""


@pytest.mark.usefixtures("key_clients")
def test_a_key_that_requires_dpop_uses_its_token_only_with_a_fresh_proof(
    client: Client, owner: User, orders: dict[str, Permission]
) -> None:
    made = issue(owner, orders[READ].api, "bound", permissions=[READ], requires_dpop=True)

    refused = request_token(made.key.client_id, made.secret)
    assert refused.status_code == 400, refused.text
    assert "DPoP" in refused.json()["error_description"]
    token = dpop_token(made)
    assert token.token_type == "DPoP"
    assert claims(token.access_token)["cnf"]["jkt"] == token.dpop_key.dpop_jkt

    answer = client.get(WHOAMI, headers=sent_headers(token, "GET", WHOAMI))
    listed = client.get(ORDERS, headers=sent_headers(token, "GET", ORDERS))
    placed = client.post(
        ORDERS,
        {"item": "widget", "quantity": 1},
        content_type="application/json",
        headers=sent_headers(token, "POST", ORDERS),
    )

    assert answer.status_code == 200, answer.content
    assert answer.json()["client_id"] == made.key.client_id
    assert answer.json()["token_type"] == "DPoP"
    assert listed.status_code == 200, listed.content
    # Permissions hold as for bearer tokens: orders:write was not given.
    assert refusal(placed) == (403, "DPoP", "insufficient_scope")
    assert placed["WWW-Authenticate"].endswith(f', scope="orders:write", algs="{ALGS}"')
    bad_proof = (401, "DPoP", "invalid_dpop_proof")
    assert refusals(client, token) == dict.fromkeys(REFUSED, bad_proof) | {
        "as a bearer token": (401, "DPoP", "invalid_token")
    }

    # Without DPoP the key's tokens are bearer tokens again, refused with the DPoP scheme.
    lifecycle.set_dpop(made.key, False, actor=owner)
    plain = request_token(made.key.client_id, made.secret).json()["access_token"]
    as_dpop = client.get(WHOAMI, headers={"Authorization": f"DPoP {plain}", "DPoP": "a.b.c"})
    assert client.get(WHOAMI, headers={"Authorization": f"Bearer {plain}"}).status_code == 200
    assert refusal(as_dpop) == (401, "DPoP", "invalid_token")
    assert "not bound to a key" in as_dpop.json()["error_description"]


WHOAMI = "http://testserver/api/v1/whoami/"
ORDERS = "http://testserver/api/v1/sample/orders"
ALGS = "ES256 ES384 ES512 PS256 PS384 PS512 RS256 RS384 RS512 EdDSA"
REFUSED = (
    "as a bearer token",
    "without a proof",
    "a replayed proof",
    "a proof for another URL",
    "a proof for another method",
    "a proof by another key",
    "a proof without ath",
    "a proof for another token",
    "a proof ten minutes old",
)


def refusals(client: Client, token: DPoPToken) -> dict[str, tuple[int, str, str]]:
    """How whoami answers each way of presenting the token in REFUSED: status, challenge."""
    holder, access_token = token.dpop_key, token.access_token
    used = sent_headers(token, "GET", WHOAMI)
    assert client.get(WHOAMI, headers=used).status_code == 200

    token_hash = b64(hashlib.sha256(access_token.encode()).digest())

    def proof(
        key: DPoPKey = holder, htm: str = "GET", htu: str = WHOAMI, ath: str | None = token_hash
    ) -> str:
        return str(key.proof(htm=htm, htu=htu, ath=ath))

    stale = DPoPKey(holder.private_key, iat_generator=lambda: int(time.time()) - 600)
    proofs = {
        "a proof for another URL": proof(htu=ORDERS),
        "a proof for another method": proof(htm="POST"),
        "a proof by another key": proof(DPoPKey.generate()),
        "a proof without ath": proof(ath=None),
        "a proof for another token": proof(ath=b64(b"x" * 32)),
        "a proof ten minutes old": proof(stale),
    }
    attempts = {
        "as a bearer token": {"Authorization": f"Bearer {access_token}"},
        "without a proof": {"Authorization": f"DPoP {access_token}"},
        "a replayed proof": used,
    } | {name: {"Authorization": f"DPoP {access_token}", "DPoP": p} for name, p in proofs.items()}
    assert set(attempts) == set(REFUSED)
    return {name: refusal(client.get(WHOAMI, headers=h)) for name, h in attempts.items()}


@pytest.mark.usefixtures("key_clients")
@pytest.mark.django_db(transaction=True)  # the live server serves the feed from its thread
def test_the_example_resource_server_accepts_dpop_tokens_with_their_proofs(
    resource_server: str, owner: User, orders: dict[str, Permission]
) -> None:
    made = issue(owner, orders[READ].api, "bound", permissions=[READ], requires_dpop=True)
    token = dpop_token(made)

    listed = requests.get(resource_server, auth=token, timeout=5)
    once = sent_headers(token, "GET", resource_server)
    first = requests.get(resource_server, headers=once, timeout=5)
    again = requests.get(resource_server, headers=once, timeout=5)
    as_bearer = requests.get(
        resource_server, headers={"Authorization": f"Bearer {token.access_token}"}, timeout=5
    )

    assert listed.status_code == 200, listed.text
    assert listed.json()["client_id"] == made.key.client_id
    assert first.status_code == 200, first.text
    assert refusal(again) == (401, "DPoP", "invalid_dpop_proof")
    assert again.json()["error_description"] == (
        "The proof was used before: make a new one for each request."
    )
    assert refusal(as_bearer) == (401, "DPoP", "invalid_token")
    assert "Authorization: DPoP <token>" in as_bearer.json()["error_description"]


# The proof checker alone, with keys made here (no Keycloak).

URL = "http://api.example.com/orders"
TOKEN = "header.payload.signature"


def checker(**options: Any) -> ProofChecker:
    return ProofChecker(**{"max_age": 60, "skew": 5} | options)


def signed(key: DPoPKey, **claims: Any) -> str:
    """A proof of `key` with exactly `claims`, signed as the library signs its own."""
    header = {"jwk": key.public_jwk}
    return str(
        jwskate.SignedJwt.sign(
            claims, key=key.private_key, alg=key.alg, typ="dpop+jwt", extra_headers=header
        )
    )


def fresh_claims(**changes: Any) -> dict[str, Any]:
    ath = b64(hashlib.sha256(TOKEN.encode()).digest())
    made = {"jti": f"{time.time_ns()}", "htm": "GET", "htu": URL, "iat": int(time.time())}
    return made | {"ath": ath} | changes


def check(proof: str, key: DPoPKey, proofs: ProofChecker | None = None) -> None:
    (proofs or checker()).check(proof, method="GET", url=URL, access_token=TOKEN, jkt=key.dpop_jkt)


@pytest.mark.parametrize(
    ("htu", "accepted"),
    [
        ("HTTP://API.Example.COM:80/orders", True),
        ("http://api.example.com/%6Frders", True),
        ("https://api.example.com/orders", False),
        ("http://api.example.com:8080/orders", False),
        ("http://api.example.com/orders/", False),
        ("http://user@api.example.com/orders", False),
    ],
)
def test_a_proof_names_the_url_as_rfc_3986_normalises_it(htu: str, accepted: bool) -> None:
    key = DPoPKey.generate()
    proof = signed(key, **fresh_claims(htu=htu))

    if accepted:
        check(proof, key)
    else:
        with pytest.raises(InvalidProof, match="another URL"):
            check(proof, key)


def unsigned(**header_changes: Any) -> str:
    """A proof whose header differs so, and a signature no key made: refused before it is read."""
    header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": public_jwk(P256)} | header_changes
    payload = json.dumps(fresh_claims()).encode()
    return f"{b64(json.dumps(header).encode())}.{b64(payload)}.{b64(b'not a signature')}"


def public_jwk(private: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> dict[str, Any]:
    public = private.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        return RSAAlgorithm.to_jwk(public, as_dict=True)
    return ECAlgorithm.to_jwk(public, as_dict=True)


P256 = ec.generate_private_key(ec.SECP256R1())
SHORT_RSA = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - refused


@pytest.mark.parametrize(
    ("proof", "reason"),
    [
        (unsigned(alg="none"), "must be signed with one of ES256"),
        (unsigned(alg="HS256"), "must be signed with one of ES256"),
        (unsigned(typ="JWT"), "typ must be dpop\\+jwt"),
        (unsigned(jwk=ECAlgorithm.to_jwk(P256, as_dict=True)), "holds a private key"),
        (unsigned(jwk=public_jwk(ec.generate_private_key(ec.SECP384R1()))), "not a public key"),
        (unsigned(alg="RS256", jwk=public_jwk(SHORT_RSA)), "too short"),
        (unsigned(crit=["exp"]), "critical header"),
        (f"{unsigned()},{unsigned()}", "exactly one proof"),
    ],
    ids=["alg-none", "hs256", "typ", "private-jwk", "curve", "short-rsa", "crit", "two-proofs"],
)
def test_a_proof_must_be_one_jws_signed_by_a_public_key(proof: str, reason: str) -> None:
    with pytest.raises(InvalidProof, match=reason):
        check(proof, DPoPKey.generate())


def test_used_proofs_are_remembered_for_their_window_and_at_most_so_many() -> None:
    now = [1000.0]
    replays = MemoryReplays(keep=65, capacity=3, clock=lambda: now[0])

    assert replays.first_use(b"one")
    assert not replays.first_use(b"one")
    now[0] = 1064
    assert replays.first_use(b"two")
    now[0] = 1066
    assert not replays.first_use(b"two")  # used 2 s ago
    assert replays.first_use(b"three")
    with pytest.raises(ProofsUncheckable):  # full: refused rather than forget one too early
        replays.first_use(b"four")
    now[0] = 1131
    assert replays.first_use(b"two")  # 67 s after its use: its window is over
    assert not replays.first_use(b"three")
    assert len(replays) == 2


def test_a_shared_cache_remembers_proofs_for_every_process() -> None:
    key = DPoPKey.generate()
    proof = signed(key, **fresh_claims())
    # Two processes' checkers, each with its own memory of keys, one cache ("ratelimit" is
    # Redis in production; the test profile's is memory, which behaves alike).
    one, other = (checker(replays=SharedReplays("ratelimit", keep=65)) for _ in range(2))

    check(proof, key, one)
    with pytest.raises(InvalidProof, match="used before"):
        check(proof, key, other)


def test_a_proof_naming_the_holders_key_but_signed_by_another_is_refused() -> None:
    holder, thief = DPoPKey.generate(), DPoPKey.generate()
    forged = jwskate.SignedJwt.sign(
        fresh_claims(),
        key=thief.private_key,
        alg="ES256",
        typ="dpop+jwt",
        extra_headers={"jwk": holder.public_jwk},  # the thumbprint matches the token's cnf.jkt
    )

    with pytest.raises(InvalidProof, match="signature is not valid"):
        check(str(forged), holder)
    check(signed(holder, **fresh_claims()), holder)  # the holder's own proof passes


def test_a_proof_from_the_future_is_refused() -> None:
    key = DPoPKey.generate()

    with pytest.raises(InvalidProof, match="iat"):
        check(signed(key, **fresh_claims(iat=int(time.time()) + 120)), key)


def reencoded(data: bytes, how: str) -> str:
    """`data` in base64 as RFC 7515 does not allow: padded, or in the standard alphabet."""
    if how == "padded":
        return base64.urlsafe_b64encode(data).decode() + ("=" if len(data) % 3 == 0 else "")
    return base64.b64encode(data).decode().rstrip("=")


def awkward(part: dict[str, Any]) -> dict[str, Any]:
    """`part` with a filler member that makes its standard base64 hold a '+' or a '/'."""
    for n in range(1, 64):
        filled = part | {"fill": "?" * n}
        if {"+", "/"} & set(base64.b64encode(json.dumps(filled).encode()).decode()):
            return filled
    raise AssertionError("no filler gives a '+' or '/'")


@pytest.mark.parametrize("how", ["padded", "standard"])
@pytest.mark.parametrize("part", [0, 1, 2], ids=["header", "payload", "signature"])
def test_a_proof_in_padded_or_standard_base64_is_refused(part: int, how: str) -> None:
    """The library's key and proof contents, one part written in a base64 RFC 7515 does not
    allow, signed over what is sent: refused, with what a proof must look like. Written as
    the RFC says, the same proof passes."""
    key = DPoPKey.generate()
    header = awkward({"typ": "dpop+jwt", "alg": key.alg, "jwk": dict(key.public_jwk)})
    claims = awkward(fresh_claims())

    def proof(changed: str | None) -> str:
        sent = [json.dumps(header).encode(), json.dumps(claims).encode()]
        encoded = [
            reencoded(d, changed) if changed and n == part else b64(d) for n, d in enumerate(sent)
        ]
        while True:  # ECDSA signatures vary: until one's standard base64 holds '+' or '/'
            signature = bytes(key.private_key.sign(".".join(encoded).encode(), alg=key.alg))
            last = reencoded(signature, changed) if changed and part == 2 else b64(signature)
            if part < 2 or not changed or last != b64(signature):
                return ".".join([*encoded, last])

    with pytest.raises(InvalidProof, match="base64url \\(no '\\+', '/' or padding\\)"):
        check(proof(how), key)
    check(proof(None), key)
