"""What a DPoP-bound token costs an API, against a bearer token, in the same run; and the
memory of the replay cache.

No Keycloak is needed: the tokens are signed here with a local RSA key (RS256, as the realm
signs them), whose JWKS a local HTTP server publishes to the validator. Half are bearer tokens,
half DPoP-bound ones (`typ` DPoP, `cnf.jkt` the thumbprint of an ES256 key), each proof made by
requests-oauth2client's DPoPKey, a library no one here wrote, for one request. Measured, as the
median over BENCH_ROUNDS (15) of the mean per request over BENCH_TOKENS (300) tokens:
- the validator (`validate`) on a bearer token seen before and first seen, against the
  validator and the proof check (`ProofChecker.check`: signature, claims, replay) on a DPoP
  token seen before with a fresh proof;
- the floor of a proof: one raw ES256 signature check (`cryptography`);
- a request through `bearer_token_required` of each kind (not strict: the revocation list's
  cost is the same on both sides);
and the memory the process's replay cache (`MemoryReplays`) holds per 10,000 proofs, by
tracemalloc. Goal: the proof check within 1.5x its signature check, the floor. That a bearer
token's hot path did not slow is bench/validate_token.py's to show, on Keycloak's tokens.

Run: .venv/bin/python bench/dpop.py (or bin/bench dpop).
"""

from __future__ import annotations

import base64
import json
import os
import statistics
import sys
import threading
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script too
os.environ.setdefault("PORTAL_PROFILE", "test")  # no services: the test profile's defaults

from bench.common import setup_django

setup_django()

import jwt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.test import RequestFactory
from jwt.algorithms import RSAAlgorithm
from requests_oauth2client import DPoPKey

from apikeys.credentials.bearer import bearer_token_required, realm_validator
from apikeys.credentials.dpop import (
    REPLAY_CAPACITY,
    MemoryReplays,
    access_token_hash,
    proof_checker,
)

TOKENS = int(os.environ.get("BENCH_TOKENS", "300"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "15"))
REPLAY_PROOFS = 10_000
AUDIENCE = "bench-api"
HOST = "127.0.0.1"
PATH = "/bench/orders"
URL = f"http://{HOST}{PATH}"


@contextmanager
def jwks_server(jwks: dict[str, Any]) -> Iterator[str]:
    """The JWKS at a local URL, for as long as the benchmark runs."""
    body = json.dumps(jwks).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((HOST, 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://{HOST}:{server.server_address[1]}/certs"
    finally:
        server.shutdown()


def sign_tokens(signing_key: rsa.RSAPrivateKey, kid: str, **claims: Any) -> list[str]:
    now = int(time.time())
    return [
        jwt.encode(
            {
                "iss": settings.TOKEN_ISSUER,
                "aud": AUDIENCE,
                "azp": "apikey-bench",
                "scope": "api-bench",
                "iat": now,
                "exp": now + 3600,
                "jti": str(uuid.uuid4()),
                **claims,
            },
            signing_key,
            algorithm="RS256",
            headers={"kid": kid},
        )
        for _ in range(TOKENS)
    ]


def per_item_us(operation: Callable[[Any], object], items: list[Any]) -> float:
    started = time.perf_counter()
    for item in items:
        operation(item)
    return (time.perf_counter() - started) / len(items) * 1e6


def main() -> None:
    signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_jwk = RSAAlgorithm.to_jwk(signing_key.public_key(), as_dict=True)
    jwks = {"keys": [{**public_jwk, "kid": "bench", "use": "sig", "alg": "RS256"}]}
    settings.TOKEN_ISSUER = "https://issuer.bench.invalid/realms/bench"  # noqa: S105 - a URL
    with jwks_server(jwks) as jwks_url:
        settings.OIDC_OP_JWKS_ENDPOINT = jwks_url
        run(signing_key)


def run(signing_key: rsa.RSAPrivateKey) -> None:
    dpop_key = DPoPKey.generate(alg="ES256")
    bearer_tokens = sign_tokens(signing_key, "bench", typ="Bearer")
    bound_tokens = sign_tokens(signing_key, "bench", typ="DPoP", cnf={"jkt": dpop_key.dpop_jkt})
    hashes_of = {token: access_token_hash(token) for token in bound_tokens}
    validator, checker = realm_validator(), proof_checker()
    view = bearer_token_required(AUDIENCE, strict=False)(lambda request: HttpResponse(status=204))
    factory = RequestFactory(HTTP_HOST=HOST)

    def proofs() -> list[str]:  # a new one per request, made before the clock starts
        return [str(dpop_key.proof(htm="GET", htu=URL, ath=hashes_of[t])) for t in bound_tokens]

    def seen(tokens: list[str]) -> list[str]:
        for token in tokens:
            validator.validate(token, AUDIENCE, checks_dpop=True)
        return tokens

    def first_seen(tokens: list[str]) -> list[str]:
        validator.forget()
        seen(bound_tokens)
        return tokens

    def validate_bearer(token: str) -> None:
        validator.validate(token, AUDIENCE)

    def validate_bound(pair: tuple[str, str]) -> None:
        token, proof = pair
        claims = validator.validate(token, AUDIENCE, checks_dpop=True)
        checker.check(proof, method="GET", url=URL, access_token=token, jkt=claims.jkt or "")

    def request(made: HttpRequest) -> None:
        response = view(made)
        if response.status_code != 204:
            raise SystemExit(f"refused: {response.status_code} {response.content!r}")

    # Each kind: what is timed, and its inputs, made anew for each run (requests too: Django
    # reads a request's headers once, on first use).
    kinds: dict[str, tuple[Callable[[Any], None], Callable[[], list[Any]]]] = {
        "bearer_seen": (validate_bearer, lambda: bearer_tokens),
        "bearer_first": (validate_bearer, lambda: first_seen(bearer_tokens)),
        "bound": (validate_bound, lambda: list(zip(bound_tokens, proofs(), strict=True))),
        "request_bearer": (
            request,
            lambda: [factory.get(PATH, HTTP_AUTHORIZATION=f"Bearer {t}") for t in bearer_tokens],
        ),
        "request_dpop": (
            request,
            lambda: [
                factory.get(PATH, HTTP_AUTHORIZATION=f"DPoP {t}", HTTP_DPOP=p)
                for t, p in zip(bound_tokens, proofs(), strict=True)
            ],
        ),
    }
    seen(bearer_tokens + bound_tokens)  # fetches the JWKS
    fetches = validator.jwks_fetches
    samples: dict[str, list[float]] = {name: [] for name in kinds}
    for _ in range(ROUNDS):
        for name, (operation, inputs) in kinds.items():
            # Once untimed first, so that no kind pays for the loop before it.
            per_item_us(operation, inputs())
            samples[name].append(per_item_us(operation, inputs()))
    if validator.jwks_fetches != fetches:
        raise SystemExit("the validator fetched the JWKS during the timed runs")
    median = {name: statistics.median(values) for name, values in samples.items()}
    report(median, raw_es256_floor(dpop_key, bound_tokens), replay_memory())


def raw_es256_floor(dpop_key: DPoPKey, tokens: list[str]) -> float:
    """Microseconds for one raw ES256 check of a proof's signature: a proof's least cost."""
    public_key = dpop_key.public_jwk.cryptography_key
    signed = []
    for token in tokens:
        proof = str(dpop_key.proof(htm="GET", htu=URL, ath=access_token_hash(token)))
        signing_input, _, signature = proof.rpartition(".")
        raw = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
        der = jwt.utils.raw_to_der_signature(raw, ec.SECP256R1())
        signed.append((signing_input.encode(), der))

    def verify(item: tuple[bytes, bytes]) -> None:
        public_key.verify(item[1], item[0], ec.ECDSA(hashes.SHA256()))

    return statistics.median(per_item_us(verify, signed) for _ in range(ROUNDS))


def replay_memory() -> float:
    """Bytes the process's replay cache holds for REPLAY_PROOFS proofs, by tracemalloc."""
    replays = MemoryReplays(keep=65)
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for _ in range(REPLAY_PROOFS):
        replays.first_use(os.urandom(16))  # the 16-byte digest `ProofChecker.check` hands it
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    if len(replays) != REPLAY_PROOFS:
        raise SystemExit("the replay cache forgot proofs within its window")
    return sum(stat.size_diff for stat in after.compare_to(before, "filename"))


def report(median: dict[str, float], floor: float, replay_bytes: float) -> None:
    print(f"{TOKENS} local tokens of each kind, {ROUNDS} rounds (median of per-round means)")
    lines = (
        ("validate a bearer token seen before", median["bearer_seen"]),
        ("validate a bearer token first seen (RS256)", median["bearer_first"]),
        ("validate a DPoP token seen before + its proof", median["bound"]),
        ("raw ES256 check of a proof's signature", floor),
        ("request through bearer_token_required: Bearer", median["request_bearer"]),
        ("request through bearer_token_required: DPoP", median["request_dpop"]),
    )
    for label, value in lines:
        print(f"  {label:48} {value:8.2f} us")
    proof = median["bound"] - median["bearer_seen"]
    request_ratio = median["request_dpop"] / median["request_bearer"]
    print(f"ratio proof check / raw ES256:            {proof / floor:6.2f}  (goal <= 1.5)")
    print(f"ratio DPoP / Bearer request:              {request_ratio:6.2f}")
    print(
        f"ratio DPoP + proof / bearer first seen:   {median['bound'] / median['bearer_first']:6.2f}"
    )
    print(
        f"replay cache, {REPLAY_PROOFS} proofs: {replay_bytes / 1024:.0f} KiB "
        f"({replay_bytes / REPLAY_PROOFS:.0f} bytes a proof; at most {REPLAY_CAPACITY} "
        f"proofs: {replay_bytes / REPLAY_PROOFS * REPLAY_CAPACITY / 2**20:.0f} MiB)"
    )


if __name__ == "__main__":
    main()
