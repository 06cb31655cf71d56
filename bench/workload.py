"""A workload identity key's client-credentials grant against a secret key's, same run.

A trusted issuer of the benchmark's own on loopback (tests/issuer.py, the same as the tests')
stands for the workload's platform; its keys are made the portal's way (`trust_issuer`,
`issue_key`). Interleaved round by round on the same Keycloak (median of BENCH_ROUNDS, 200):
1. the workload's grant with a new platform token (Keycloak finds the issuer's provider by
   `iss`, the client by issuer and subject, checks the signature against the JWKS it read
   once, and records the token's jti against reuse); signing that token is timed apart;
2. the same with one token presented again (an issuer that allows reuse: no jti recorded);
3. a secret key's grant (HTTP Basic), the baseline.
Each grant is one POST over a kept-alive connection, as a partner application makes it.
"""

from __future__ import annotations

import argparse
import os
import time

from bench.common import bench_owner, median_ms, setup_django, timed

PARSER = argparse.ArgumentParser(
    prog="python -m bench.workload",
    description="Workload identity grants against secret grants on the bench Keycloak "
    "(run it with bin/bench workload, which starts the services).",
)
PARSER.add_argument(
    "--rounds",
    type=int,
    default=int(os.environ.get("BENCH_ROUNDS", "200")),
    help="grants of each kind, interleaved (default: BENCH_ROUNDS or 200)",
)
OPTIONS = PARSER.parse_args() if __name__ == "__main__" else PARSER.parse_args([])

setup_django()

import requests
from django.conf import settings

from apikeys.keycloak import client as keycloak
from apikeys.models import Api, ApiKey, User, WorkloadIssuer
from apikeys.operations import lifecycle, workload_issuers
from apikeys.operations.lifecycle import KeyOrder
from apikeys.operations.workload_issuers import IssuerOrder
from tests.issuer import JWT_BEARER, Issuer, serving

SUBJECT = "system:serviceaccount:bench:worker"
KEEP_SECONDS = 240  # Keycloak takes a platform token up to 300 s after its iat


def trust(issuer: Issuer, owner: User, *, reuse: bool) -> WorkloadIssuer:
    slug = f"bench-{owner.username.removeprefix('bench-')[:8]}-{'reuse' if reuse else 'once'}"
    order = IssuerOrder(
        slug=slug,
        name=f"Bench {slug}",
        issuer=issuer.url,
        jwks_url=issuer.jwks_url,
        allows_reuse=reuse,
        keys_need_approval=False,  # the grant is measured, not the approval
    )
    return workload_issuers.trust_issuer(order, actor=owner)


def workload_key(owner: User, api: Api, trusted: WorkloadIssuer) -> ApiKey:
    order = KeyOrder(
        api=api,
        name=f"workload {trusted.slug}",
        lifetime_days=30,
        credential=ApiKey.Credential.WORKLOAD,
        workload_issuer=trusted,
        workload_subject=SUBJECT,
    )
    return lifecycle.issue_key(owner, order).key


def grant(
    session: requests.Session, data: dict[str, str], auth: tuple[str, str] | None = None
) -> None:
    answer = session.post(settings.TOKEN_ENDPOINT, data=data, auth=auth, timeout=10)
    if answer.status_code != 200:
        raise SystemExit(f"A grant failed, nothing to measure: {answer.text}")


def assertion(token: str) -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "client_assertion_type": JWT_BEARER,
        "client_assertion": token,
    }


class KeptToken:
    """A platform token a workload presents again and again, renewed before Keycloak's five
    minutes after its iat are up (as Kubernetes renews a projected token's file)."""

    def __init__(self, issuer: Issuer) -> None:
        self.issuer, self.made, self.token = issuer, 0.0, ""

    def __call__(self) -> str:
        if time.monotonic() - self.made > KEEP_SECONDS:
            self.token = self.issuer.token(SUBJECT, settings.TOKEN_ISSUER, lifetime=3600)
            self.made = time.monotonic()
        return self.token


def measure(once: Issuer, reusing: Issuer, secret: tuple[str, str]) -> dict[str, list[float]]:
    """Each way's grant times, interleaved round by round (the order turns against drift)."""
    session = requests.Session()
    kept = KeptToken(reusing)
    times: dict[str, list[float]] = {"sign": [], "workload": [], "reused": [], "secret": []}

    def workload() -> None:
        began = time.perf_counter()
        data = assertion(once.token(SUBJECT, settings.TOKEN_ISSUER))
        times["sign"].append(time.perf_counter() - began)
        times["workload"].append(timed(lambda: grant(session, data)))

    def reused() -> None:
        data = assertion(kept())
        times["reused"].append(timed(lambda: grant(session, data)))

    def with_secret() -> None:
        data = {"grant_type": "client_credentials"}
        times["secret"].append(timed(lambda: grant(session, data, secret)))

    ways = [workload, reused, with_secret]
    for way in ways:  # warm up: Keycloak reads each issuer's JWKS and each client once
        way()
    for samples in times.values():
        samples.clear()
    for n in range(OPTIONS.rounds):
        for way in ways[n % 3 :] + ways[: n % 3]:
            way()
    return times


def main() -> None:
    api = Api.objects.get(slug="sample")
    owner = bench_owner()
    made: list[ApiKey] = []
    trusted: list[WorkloadIssuer] = []
    with serving() as once, serving() as reusing:
        try:
            for issuer, reuse in ((once, False), (reusing, True)):
                trusted.append(trust(issuer, owner, reuse=reuse))
                made.append(workload_key(owner, api, trusted[-1]))
            revealed = lifecycle.issue_key(
                owner, KeyOrder(api=api, name="secret", lifetime_days=30)
            )
            made.append(revealed.key)
            times = measure(once, reusing, (revealed.key.client_id, revealed.secret))
        finally:
            conn = keycloak.portal_connection()
            for key in made:
                keycloak.delete_client(conn, key.keycloak_id)
            owner.api_keys.update(status=ApiKey.Status.REVOKED)  # audit entries are append-only
            for issuer_record in trusted:
                workload_issuers.distrust_issuer(issuer_record, actor=owner)
    report(times)


def report(times: dict[str, list[float]]) -> None:
    ms = {name: median_ms(samples) for name, samples in times.items()}
    print(f"rounds: {OPTIONS.rounds} of each, interleaved; Keycloak {settings.KEYCLOAK_URL}")
    print(f"sign a platform token (ES256, PyJWT), apart: median {ms['sign']:6.2f} ms")
    print(f"workload grant, a new platform token each:  median {ms['workload']:6.2f} ms")
    print(f"workload grant, one platform token reused:  median {ms['reused']:6.2f} ms")
    print(f"secret key grant (HTTP Basic), baseline:    median {ms['secret']:6.2f} ms")
    print(f"ratio workload (new token) / secret grant:  {ms['workload'] / ms['secret']:.2f}")
    print(f"ratio workload (reused token) / secret:     {ms['reused'] / ms['secret']:.2f}")
    print(f"ratio new token / reused (the jti check):   {ms['workload'] / ms['reused']:.2f}")


if __name__ == "__main__":
    main()
