"""Key clients for the benchmarks, made as the portal makes them, with their records.

Each client is one `POST /clients` with the portal's whole representation and the id the
portal chose (its seal covers it), so reconcile finds them in agreement. A partial import
would be fewer requests, but it gives clients ids of Keycloak's own: every seal then looked
broken, and reconcile rewrote every client on its first run and read them all cold on the
next (what the reconcile figures before 2026-12-06 partly measured).
"""

from __future__ import annotations

import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from bench.common import setup_django, timed

setup_django()

from django.conf import settings
from django.utils import timezone

from apikeys.credentials.secret_format import new_secret
from apikeys.keycloak import client as keycloak
from apikeys.keycloak import desired
from apikeys.models import Api, ApiKey, User
from apikeys.operations.reconcile import reconcile

BATCH = 250


def connections(count: int) -> list[keycloak.Connection]:
    """`count` admin connections of the realm's bootstrap administrator (one per caller)."""
    return [
        keycloak.connect(
            realm=settings.KEYCLOAK_REALM,
            username=os.environ["KEYCLOAK_BOOTSTRAP_ADMIN_USERNAME"],
            password=os.environ["KEYCLOAK_BOOTSTRAP_ADMIN_PASSWORD"],
            user_realm="master",
            timeout=600,  # deleting a realm of many clients takes a while
        )
        for _ in range(count)
    ]


def add_keys(
    connections: list[keycloak.Connection], owner: User, api: Api, count: int, first: int
) -> list[tuple[str, str]]:
    """`count` keys with their clients, service accounts and records, named from `first` on:
    (client id, secret). Each client is made as the portal makes it, one POST with the whole
    representation and the id the portal chose (the seal covers it; a partial import would
    give the clients ids of Keycloak's own), by as many callers as `connections`."""
    made = []
    for start in range(0, count, BATCH):
        keys, reps = [], []
        for n in range(min(BATCH, count - start)):
            key = ApiKey(
                owner=owner,
                api=api,
                name=f"scale {first + start + n}",
                status=ApiKey.Status.ACTIVE,
                expires_at=timezone.now() + timedelta(days=30),
            )
            key.client_id = f"{ApiKey.CLIENT_ID_PREFIX}{key.pk.hex}"
            key.keycloak_id = str(key.pk)
            secret = new_secret()
            keys.append(key)
            reps.append(desired.key_client(key, now=timezone.now(), secret=secret))
            made.append((key.client_id, secret))
        callers = len(connections)
        shares = [reps[n::callers] for n in range(callers)]
        with ThreadPoolExecutor(callers) as pool:
            list(pool.map(make_clients, connections, shares))
        ApiKey.objects.bulk_create(keys)
    return made


def make_clients(conn: keycloak.Connection, reps: list[dict[str, object]]) -> None:
    for rep in reps:
        keycloak.create_client(conn, rep)


def reconcile_cold_and_warm(
    admin: keycloak.Connection, warm_runs: int
) -> tuple[float, float, int, int]:
    """Seconds of a cold reconcile (Keycloak's realm cache emptied first: every client loaded
    from its database, as after the nodes start) and the median of `warm_runs` after it;
    clients seen and problems found by the last."""
    keycloak._request(admin, "POST", "/clear-realm-cache")
    cold = timed(reconcile)
    warm = []
    for _ in range(warm_runs):
        began = time.perf_counter()
        report = reconcile()
        warm.append(time.perf_counter() - began)
    return cold, statistics.median(warm), report.clients_seen, report.problems
