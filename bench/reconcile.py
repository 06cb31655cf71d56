"""Reconcile per client as the realm grows (1,000 and 10,000 managed clients by default):
cold and warm, and the ratios against the first size.

Sizes: BENCH_RECONCILE_SIZES, default "1000,10000". Taken to 100000 it ran 35 minutes on
the cluster (90,000 clients made in 10 minutes, read cold in 7); name it alone then (see
the end). The
clients are made for the benchmark as the portal makes them (bench/keys.py), each with its
portal record, so reconcile finds them all in agreement and the time is the scan itself:
pages of clients read and compared with the records. At each size:

- cold: Keycloak's realm cache emptied first (`clear-realm-cache`: every node loads each
  client from its database again, as after the nodes start);
- warm: the median of BENCH_RUNS (3) runs after it.

Afterwards the realm is deleted and bootstrapped again: deleting the clients one by one would
take longer than the benchmark. Past about 50,000 clients Keycloak gives up deleting the
realm (its transaction times out); then the dev node keeps it until the next bin/bench
starts it empty (the benchmarks after this one in the same run would find it), and the
cluster's database is emptied (its next start makes the schema again).
"""

from __future__ import annotations

import os
import time

from bench.common import bench_owner, setup_django
from bench.keys import add_keys, connections, reconcile_cold_and_warm
from devstack import keycloak_cluster, postgres

# BENCH_CLUSTER=1: against the production-mode cluster behind nginx instead of the dev node.
ON_CLUSTER = os.environ.get("BENCH_CLUSTER") == "1"
if ON_CLUSTER:
    os.environ["KEYCLOAK_URL"] = keycloak_cluster.url()  # before Django reads its settings

setup_django()


from apikeys.keycloak import bootstrap
from apikeys.keycloak import client as keycloak
from apikeys.models import Api, ApiKey
from apikeys.operations.reconcile import PAGE

SIZES = [int(n) for n in os.environ.get("BENCH_RECONCILE_SIZES", "1000,10000").split(",")]
RUNS = int(os.environ.get("BENCH_RUNS", "3"))


def clean_up(admin: keycloak.Connection) -> None:
    """The realm deleted and made again; or, past what Keycloak can delete, left behind."""
    try:
        keycloak._request(admin, "DELETE", "")
        bootstrap.run(admin, Api.objects.all())
    except keycloak.KeycloakFailure as error:
        if not ON_CLUSTER:
            print(
                f"The realm stays ({error}): benchmarks after this one in the same run find "
                "it; the next bin/bench starts on an empty Keycloak."
            )
            return
        print(f"The realm stays ({error}): the cluster's database is emptied instead.")
        keycloak_cluster.stop_all()
        postgres.fresh_database(keycloak_cluster.DATABASE)


def main() -> None:
    admin, *makers = connections(4)
    if ON_CLUSTER:
        keycloak_cluster.start()
        bootstrap.run(admin, Api.objects.all())
    api = Api.objects.get(slug="sample")
    owner = bench_owner()
    results: dict[int, tuple[float, float, int, int]] = {}
    try:
        made = 0
        for size in SIZES:
            started = time.monotonic()
            add_keys(makers, owner, api, size - made, made)
            print(f"made {size - made} clients in {time.monotonic() - started:.0f} s", flush=True)
            made = size
            results[size] = reconcile_cold_and_warm(admin, RUNS)
            cold, warm, seen, problems = results[size]
            print(
                f"{size:,}: cold {cold:.1f} s, warm {warm:.1f} s; {seen} seen, {problems} problems"
            )
    finally:
        ApiKey.objects.filter(owner=owner).update(status=ApiKey.Status.REVOKED)
        clean_up(admin)
    if ON_CLUSTER:
        keycloak_cluster.stop_all()
    report(results)


def report(results: dict[int, tuple[float, float, int, int]]) -> None:
    where = "the 2-node cluster behind nginx" if ON_CLUSTER else "one dev-mode node"
    print(f"reconcile on {where}: cold, then the median of {RUNS} warm; pages of {PAGE}")
    print(f"{'clients':>9} {'cold s':>8} {'ms/client':>9} {'warm s':>8} {'ms/client':>9}  problems")
    for size, (cold, warm, seen, problems) in results.items():
        print(
            f"{size:>9,} {cold:8.2f} {cold / seen * 1000:9.2f} {warm:8.2f} "
            f"{warm / seen * 1000:9.2f}  {problems}"
        )
    first = SIZES[0]
    cold_base, warm_base = (results[first][n] / results[first][2] for n in (0, 1))
    for size in SIZES[1:]:
        cold, warm, seen, _ = results[size]
        print(
            f"per client, {size:,} against {first:,}: cold {cold / seen / cold_base:.2f}, "
            f"warm {warm / seen / warm_base:.2f} (clients x{size // first})"
        )


if __name__ == "__main__":
    main()
