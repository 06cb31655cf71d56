"""Keycloak's events to their effect in the portal, and revocation to a resource server.

gunicorn serves the portal on PORTAL_URL (where the bench Keycloak's event listener pushes);
the realm's listener is turned on for the run. Measured, 50 times each, as p50 and p99:

- user deletion: from the admin API's DELETE of a user to their key revoked in the portal
  (and its client deleted in Keycloak, which the revocation does first);
- last used: from a token granted to the key's last-used time moving;
- revocation feed: from a key revoked in the portal to its token refused by a resource
  server in another process (examples/resource_server.py, reading its feed every 2 s).

The baseline in the same run is the time Keycloak itself takes for the action (the admin
DELETE, the token request), so the ratio says how much the push adds.
"""

from __future__ import annotations

import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench.common import bench_owner, setup_django

setup_django()

import requests
from django.conf import settings

from apikeys.credentials import revocations
from apikeys.keycloak import bootstrap
from apikeys.keycloak import client as keycloak
from apikeys.models import Api, ApiKey, User
from apikeys.operations import lifecycle
from apikeys.operations.lifecycle import KeyOrder
from devstack.process import wait_until

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = int(os.environ.get("BENCH_SAMPLES", "50"))
RESOURCE_SERVER = "127.0.0.1:8767"


def until(check: Callable[[], bool], timeout: float = 30) -> float:
    began = time.perf_counter()
    while not check():
        if time.perf_counter() - began > timeout:
            raise SystemExit(f"no effect within {timeout} s")
        time.sleep(0.005)
    return time.perf_counter() - began


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return f"p50 {statistics.median(ordered) * 1000:7.0f} ms   p99 {p99 * 1000:7.0f} ms"


def serve(command: list[str], url: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start a server and wait until it answers `url` (any HTTP status)."""
    process = subprocess.Popen(command, env={**os.environ, **env})

    def answers() -> bool:
        try:
            requests.get(url, timeout=5)
        except requests.RequestException:  # not listening yet, or too busy to answer in time
            return False
        return True

    # A busy 2-core machine can take a minute to start a server: wait, and say for what.
    wait_until(answers, timeout=180, what=command[-1], log_file=Path("-"))
    return process


def user_deletions(admin: keycloak.Connection, api: Api) -> tuple[list[float], list[float]]:
    effect, baseline = [], []
    for n in range(SAMPLES):
        email = f"bench-events-{time.time_ns()}-{n}@example.com"
        user_id = admin.admin.create_user(
            {
                "username": email,
                "email": email,
                "emailVerified": True,
                "firstName": "Bench",
                "lastName": "User",
                "enabled": True,
            }
        )
        owner = User.objects.create(username=user_id, email=f"{user_id}@example.com")
        key = lifecycle.issue_key(owner, KeyOrder(api=api, name="deleted", lifetime_days=1)).key
        began = time.perf_counter()
        admin.admin.delete_user(user_id)
        baseline.append(time.perf_counter() - began)
        until(lambda: ApiKey.objects.get(pk=key.pk).status == "revoked")  # noqa: B023
        effect.append(time.perf_counter() - began)
    return effect, baseline


def last_used(api: Api) -> tuple[list[float], list[float]]:
    revealed = lifecycle.issue_key(bench_owner(), KeyOrder(api=api, name="used", lifetime_days=1))
    effect, baseline = [], []
    for _ in range(SAMPLES):
        before = ApiKey.objects.get(pk=revealed.key.pk).last_used_at
        began = time.perf_counter()
        granted = requests.post(
            settings.TOKEN_ENDPOINT,
            data={"grant_type": "client_credentials"},
            auth=(revealed.key.client_id, revealed.secret),
            timeout=10,
        )
        baseline.append(time.perf_counter() - began)
        granted.raise_for_status()
        until(lambda: ApiKey.objects.get(pk=revealed.key.pk).last_used_at != before)  # noqa: B023
        effect.append(time.perf_counter() - began)
        time.sleep(0.01)  # the next grant lands on a later millisecond
    return effect, baseline


def feed_propagation(api: Api) -> list[float]:
    owner = bench_owner()
    url = f"http://{RESOURCE_SERVER}/orders"
    server = serve(
        [sys.executable, str(ROOT / "examples" / "resource_server.py"), RESOURCE_SERVER],
        f"http://{RESOURCE_SERVER}/",
        {
            "TOKEN_ISSUER": settings.TOKEN_ISSUER,
            "OIDC_OP_JWKS_ENDPOINT": settings.OIDC_OP_JWKS_ENDPOINT,
            "API_AUDIENCE": api.audience,
            "REVOCATION_FEED_URL": f"{settings.PORTAL_URL}/feeds/revocations",
            "REVOCATION_FEED_TOKEN": revocations.new_feed_token(api),
        },
    )
    samples = []
    try:
        with requests.Session() as session:
            for _ in range(SAMPLES):
                revealed = lifecycle.issue_key(
                    owner, KeyOrder(api=api, name="fed", lifetime_days=1)
                )
                token = requests.post(
                    settings.TOKEN_ENDPOINT,
                    data={"grant_type": "client_credentials"},
                    auth=(revealed.key.client_id, revealed.secret),
                    timeout=10,
                ).json()["access_token"]
                headers = {"Authorization": f"Bearer {token}"}

                def answers(status: int, h: dict[str, str] = headers) -> bool:
                    return session.get(url, headers=h).status_code == status

                until(lambda: answers(200))
                # At any moment of the server's refresh cycle, not in step with it.
                time.sleep(random.uniform(0, 2))
                began = time.perf_counter()
                lifecycle.revoke_key(revealed.key, actor=owner)
                until(lambda: answers(401))
                samples.append(time.perf_counter() - began)
    finally:
        server.terminate()
        server.wait(timeout=10)
    return samples


def main() -> None:
    admin = keycloak.connect(
        realm=settings.KEYCLOAK_REALM,
        username=os.environ["KEYCLOAK_BOOTSTRAP_ADMIN_USERNAME"],
        password=os.environ["KEYCLOAK_BOOTSTRAP_ADMIN_PASSWORD"],
        user_realm="master",
    )
    api = Api.objects.get(audience=settings.WHOAMI_AUDIENCE)
    address = settings.PORTAL_URL.removeprefix("http://")
    portal = serve(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "portal.wsgi",
            "-b",
            address,
            "-w",
            "2",
            "--access-logfile",
            "/dev/null",
            "--log-level",
            "warning",
            "--error-logfile",
            "-",
        ],
        f"{settings.PORTAL_URL}/health/live",
        {"DJANGO_SETTINGS_MODULE": "portal.settings"},
    )
    settings.KEYCLOAK_PUSH_EVENTS = True
    bootstrap.ensure_realm(admin)
    try:
        deletion, delete_call = user_deletions(admin, api)
        used, grant_call = last_used(api)
        feed = feed_propagation(api)
    finally:
        settings.KEYCLOAK_PUSH_EVENTS = False
        bootstrap.ensure_realm(admin)
        portal.terminate()
        portal.wait(timeout=10)
    print(f"event to effect, {SAMPLES} samples each (portal: gunicorn, 2 workers, PostgreSQL)")
    print(f"  user deleted -> keys revoked    {percentiles(deletion)}")
    print(f"    baseline: the admin DELETE    {percentiles(delete_call)}")
    print(f"  token granted -> last used      {percentiles(used)}")
    print(f"    baseline: the token request   {percentiles(grant_call)}")
    print("  key revoked -> refused by a resource server in another process (feed every 2 s)")
    print(f"                                  {percentiles(feed)}")
    print(
        f"ratios p50 effect / Keycloak's own call: deletion "
        f"{statistics.median(deletion) / statistics.median(delete_call):.1f}, last used "
        f"{statistics.median(used) / statistics.median(grant_call):.1f}"
    )


if __name__ == "__main__":
    main()
