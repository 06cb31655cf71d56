"""Reconcile with 1,000 and with 10,000 managed clients: time, and the ratio between them.

The clients are made for the benchmark as the portal makes them (bench/keys.py), each with
its portal record, so reconcile finds them all in agreement and the time is the scan itself:
pages of clients read and compared with the records. Afterwards the realm is deleted and
bootstrapped again: deleting 11,000 clients one by one would take longer than the benchmark.
"""

from __future__ import annotations

import os
import statistics
import time

from bench.common import bench_owner, setup_django
from bench.keys import add_keys, connections
from devstack import keycloak_cluster

# BENCH_CLUSTER=1: against the production-mode cluster behind nginx instead of the dev node.
ON_CLUSTER = os.environ.get("BENCH_CLUSTER") == "1"
if ON_CLUSTER:
    os.environ["KEYCLOAK_URL"] = keycloak_cluster.url()  # before Django reads its settings

setup_django()


from apikeys.keycloak import (
    bootstrap,
)
from apikeys.keycloak import client as keycloak
from apikeys.models import Api, ApiKey
from apikeys.operations.reconcile import PAGE, reconcile

SIZES = (1_000, 10_000)
RUNS = int(os.environ.get("BENCH_RUNS", "3"))


def main() -> None:
    admin, *makers = connections(4)
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
            add_keys(makers, owner, api, size - made, made)
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
    print(f"reconcile on {where}, median of {RUNS} runs, pages of {PAGE} clients")
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
