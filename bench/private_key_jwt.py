"""Keys without shared secrets, and rotations with a grace period, against their floors.

Interleaved round by round on the same Keycloak (median of BENCH_ROUNDS, 30):
1. issuing a private_key_jwt key with the portal's `issue_key` (record, public key rows, one
   POST with the inline JWKS, record marked live, audit entry), against (a) one raw
   `POST /clients` with the same representation, and (b) the portal issuing a secret key;
   reading the pasted public key (`public_keys.parse`) is timed apart;
2. a rotation with a grace period (the current secret read, then one PUT with the new secret
   and the rotated-secret slot) against a rotation without one (one PUT).
"""

from __future__ import annotations

import os
from datetime import timedelta

from bench.common import bench_owner, median_ms, setup_django, timed

setup_django()

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings
from django.utils import timezone

from apikeys.credentials import public_keys
from apikeys.keycloak import client as keycloak
from apikeys.keycloak import desired
from apikeys.models import Api, ApiKey
from apikeys.operations import lifecycle
from apikeys.operations.lifecycle import KeyOrder

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "30"))


def public_pem() -> str:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def main() -> None:
    api = Api.objects.get(slug="sample")
    owner = bench_owner()
    conn = keycloak.portal_connection()
    pem = public_pem()
    accepted = public_keys.parse(pem)
    made: list[str] = []
    times: dict[str, list[float]] = {
        "parse": [],
        "signed": [],
        "raw": [],
        "secret": [],
        "grace": [],
        "plain": [],
    }

    def signed(n: int) -> None:
        times["parse"].append(timed(lambda: public_keys.parse(pem)))
        elapsed = timed(
            lambda: made.append(
                lifecycle.issue_key(
                    owner,
                    KeyOrder(
                        api=api,
                        name=f"signed {n}",
                        lifetime_days=30,
                        credential=ApiKey.Credential.SIGNED_JWT,
                        public_keys=accepted,
                    ),
                ).key.keycloak_id
            )
        )
        times["signed"].append(elapsed)

    def raw(n: int) -> None:
        # A record with its public key, so that desired.key_client reads them as for a key
        # (not timed); then only the POST is.
        key = ApiKey.objects.create(
            owner=owner,
            api=api,
            name=f"raw {n}",
            expires_at=timezone.now() + timedelta(days=30),
            credential=ApiKey.Credential.SIGNED_JWT,
        )
        key.public_keys.create(
            kid=accepted[0].kid,
            thumbprint=accepted[0].thumbprint,
            jwk=accepted[0].jwk,
            summary=accepted[0].summary,
        )
        rep = desired.key_client(key, now=timezone.now())
        times["raw"].append(timed(lambda: made.append(keycloak.create_client(conn, rep))))

    def secret(n: int) -> None:
        elapsed = timed(
            lambda: made.append(
                lifecycle.issue_key(
                    owner, KeyOrder(api=api, name=f"secret {n}", lifetime_days=30)
                ).key.keycloak_id
            )
        )
        times["secret"].append(elapsed)

    rotated = lifecycle.issue_key(owner, KeyOrder(api=api, name="rotated", lifetime_days=30)).key
    made.append(rotated.keycloak_id)

    def grace(n: int) -> None:
        times["grace"].append(
            timed(lambda: lifecycle.rotate_secret(rotated, actor=None, grace=timedelta(hours=1)))
        )

    def plain(n: int) -> None:
        times["plain"].append(timed(lambda: lifecycle.rotate_secret(rotated, actor=None)))

    ways = [signed, raw, secret]
    try:
        for n in range(ROUNDS):
            for way in ways[n % 3 :] + ways[: n % 3]:  # rotate the order against drift
                way(n)
            for way in (grace, plain) if n % 2 else (plain, grace):
                way(n)
    finally:
        for client_uuid in made:
            keycloak.delete_client(conn, client_uuid)
        owner.api_keys.update(status=ApiKey.Status.REVOKED)  # audit entries are append-only

    medians = {name: median_ms(samples) for name, samples in times.items()}
    print(f"rounds: {ROUNDS} of each, interleaved; Keycloak {settings.KEYCLOAK_URL}")
    print(f"read a pasted RSA 2048 PEM public key:  median {medians['parse']:7.2f} ms")
    print(f"portal issue_key, private_key_jwt:      median {medians['signed']:7.1f} ms")
    print(f"(a) raw POST /clients, same client:     median {medians['raw']:7.1f} ms")
    print(f"(b) portal issue_key, client secret:    median {medians['secret']:7.1f} ms")
    print(f"ratio private_key_jwt issue / raw POST: {medians['signed'] / medians['raw']:.2f}")
    print(f"ratio private_key_jwt / secret issue:   {medians['signed'] / medians['secret']:.2f}")
    print(f"rotate with a grace period:             median {medians['grace']:7.1f} ms")
    print(f"rotate without:                         median {medians['plain']:7.1f} ms")
    print(f"ratio grace / plain rotation:           {medians['grace'] / medians['plain']:.2f}")


if __name__ == "__main__":
    main()
