"""Reconcile with 1,000 and with 10,000 managed clients: time, and the ratio between them.

The clients are made directly in Keycloak for the benchmark (partial import, 250 a request,
with the portal's own representation), each with its portal record, so reconcile finds them
all in agreement and the time is the scan itself: pages of clients read and compared with
the records. Afterwards the realm is deleted and bootstrapped again: deleting 11,000
clients one by one would take longer than the benchmark.
"""

from __future__ import annotations

import os
import statistics
import time
from datetime import timedelta

from bench.common import bench_owner, setup_django
from devstack import keycloak_cluster

# BENCH_CLUSTER=1: against the production-mode cluster behind nginx instead of the dev node.
ON_CLUSTER = os.environ.get("BENCH_CLUSTER") == "1"
if ON_CLUSTER:
    os.environ["KEYCLOAK_URL"] = keycloak_cluster.url()  # before Django reads its settings

setup_django()

from django.conf import settings
from django.utils import timezone

from apikeys.credentials.secret_format import new_secret
from apikeys.keycloak import (
    bootstrap,
    desired,
)
from apikeys.keycloak import client as keycloak
from apikeys.models import Api, ApiKey, User
from apikeys.operations.reconcile import reconcile

SIZES = (1_000, 10_000)
BATCH = 250
RUNS = int(os.environ.get("BENCH_RUNS", "3"))


def add_keys(admin: keycloak.Connection, owner: User, api: Api, count: int) -> None:
    for start in range(0, count, BATCH):
        keys = [
            ApiKey(
                owner=owner,
                api=api,
                name=f"bulk {time.monotonic_ns()}-{n}",
                status=ApiKey.Status.ACTIVE,
                expires_at=timezone.now() + timedelta(days=30),
            )
            for n in range(min(BATCH, count - start))
        ]
        for key in keys:
            key.client_id = f"{ApiKey.CLIENT_ID_PREFIX}{key.pk.hex}"
        reps = [desired.key_client(key, now=timezone.now(), secret=new_secret()) for key in keys]
        result = keycloak._request(
            admin, "POST", "/partialImport", {"ifResourceExists": "FAIL", "clients": reps}
        )
        ids = {r["resourceName"]: r["id"] for r in result["results"]}
        for key in keys:
            key.keycloak_id = ids[key.client_id]
        ApiKey.objects.bulk_create(keys)


def main() -> None:
    admin = keycloak.connect(
        realm=settings.KEYCLOAK_REALM,
        username=os.environ["KEYCLOAK_BOOTSTRAP_ADMIN_USERNAME"],
        password=os.environ["KEYCLOAK_BOOTSTRAP_ADMIN_PASSWORD"],
        user_realm="master",
        timeout=300,  # a partial import of hundreds of clients takes a while
    )
    if ON_CLUSTER:
        keycloak_cluster.start()
        bootstrap.run(admin, Api.objects.all())
    api = Api.objects.get(slug="sample")
    owner = bench_owner()
    results: dict[int, tuple[float, int, int]] = {}
    try:
        made = 0
        for size in SIZES:
            started = time.monotonic()
            add_keys(admin, owner, api, size - made)
            print(f"made {size - made} clients in {time.monotonic() - started:.0f} s")
            made = size
            times = []
            for _ in range(RUNS):
                began = time.perf_counter()
                report = reconcile()
                times.append(time.perf_counter() - began)
            results[size] = (statistics.median(times), report.clients_seen, report.problems)
    finally:
        ApiKey.objects.filter(owner=owner).update(status=ApiKey.Status.REVOKED)
        keycloak._request(admin, "DELETE", "")
        bootstrap.run(admin, Api.objects.all())

    if ON_CLUSTER:
        keycloak_cluster.stop_all()
    where = "the 2-node cluster behind nginx" if ON_CLUSTER else "one dev-mode node"
    print(f"reconcile on {where}, median of {RUNS} runs, pages of 200 clients")
    for size, (seconds, seen, problems) in results.items():
        print(
            f"{size:>7,} clients: {seconds:6.2f} s  ({seen} seen, {problems} problems)  "
            f"{seconds / seen * 1000:.2f} ms per client"
        )
    small, large = SIZES
    print(
        f"ratio {large:,} / {small:,}: {results[large][0] / results[small][0]:.1f} "
        f"(clients x{large // small})"
    )


if __name__ == "__main__":
    main()
