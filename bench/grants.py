"""Client-credentials grants per second with 100 and with 10,000 key clients in the realm.

One Keycloak client per key must not slow Keycloak down as keys accumulate. The clients are
made the portal's way (bench/keys.py: one POST each, with its own secret; Keycloak makes its
service account). Each round runs THREADS partner applications for
SECONDS, each getting tokens for keys taken in turn from the whole realm (so every client is
read, not a hot few), over kept-alive HTTP connections. The baseline, 100 clients, is
measured in the same run; with 10,000 clients the hot 100 are measured again too (realm size
alone). Keycloak's sizing guide says 1 vCPU per 120 grants/s (each from a new TLS
connection; tested to 2,000/s). Afterwards the realm is deleted and bootstrapped again.
"""

from __future__ import annotations

import os
import statistics
import threading
import time

import requests

from bench.common import bench_owner, setup_django
from bench.keys import add_keys, connections

setup_django()

from django.conf import settings

from apikeys.keycloak import (
    bootstrap,
)
from apikeys.keycloak import client as keycloak
from apikeys.models import Api

SIZES = (100, 10_000)
THREADS = int(os.environ.get("BENCH_THREADS", "8"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "10"))
ROUNDS = int(os.environ.get("BENCH_RUNS", "3"))
GUIDE_PER_VCPU = 120


def grants_per_second(
    keys: list[tuple[str, str]], seconds: float = SECONDS
) -> tuple[float, float, int]:
    """Grants per second over `seconds` with THREADS callers; median latency (ms); failures."""
    deadline = time.monotonic() + seconds
    latencies: list[float] = []
    failures = [0]
    lock = threading.Lock()

    def partner(offset: int) -> None:
        session = requests.Session()
        mine: list[float] = []
        n = offset
        while time.monotonic() < deadline:
            client_id, secret = keys[n % len(keys)]
            n += THREADS
            began = time.perf_counter()
            answer = session.post(
                settings.TOKEN_ENDPOINT,
                data={"grant_type": "client_credentials"},
                auth=(client_id, secret),
                timeout=10,
            )
            mine.append(time.perf_counter() - began)
            if answer.status_code != 200:
                with lock:
                    failures[0] += 1
        with lock:
            latencies.extend(mine)

    started = time.monotonic()
    threads = [threading.Thread(target=partner, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    return len(latencies) / elapsed, statistics.median(latencies) * 1000, failures[0]


def best_of(keys: list[tuple[str, str]]) -> tuple[float, float, int]:
    runs = [grants_per_second(keys) for _ in range(ROUNDS)]
    return max(runs, key=lambda run: run[0])


def main() -> None:
    admin, *makers = connections(4)
    owner = bench_owner()
    api = Api.objects.get(slug="sample")
    catalog = list(Api.objects.all())
    results: dict[str, tuple[float, float, int]] = {}
    try:
        small, large = SIZES
        keys = add_keys(makers, owner, api, small, 0)
        best_of(keys[:THREADS])  # warm up
        if grants_per_second(keys[:1])[2]:
            raise SystemExit("The benchmark's keys get no tokens: nothing to measure.")
        results[f"{small:,} clients in the realm"] = best_of(keys)
        started = time.monotonic()
        keys += add_keys(makers, owner, api, large - small, small)
        print(f"made {large - small:,} more clients in {time.monotonic() - started:.0f} s")
        results[f"{large:,} clients, the first {small} used"] = best_of(keys[:small])
        results[f"{large:,} clients, all used in turn"] = best_of(keys)
    finally:
        keycloak._request(admin, "DELETE", "")
        bootstrap.run(admin, catalog)

    cpus = os.cpu_count() or 1
    print(f"client-credentials grants, {THREADS} callers, best of {ROUNDS} x {SECONDS:.0f} s")
    for label, (rate, median, failed) in results.items():
        print(f"{label:>34}: {rate:7.0f} grants/s  median {median:5.1f} ms  {failed} failed")
    if any(failed for _, _, failed in results.values()):
        raise SystemExit("Some grants failed: the figures above are not grants.")
    baseline = next(iter(results.values()))[0]
    for label, (rate, _, _) in list(results.items())[1:]:
        print(f"ratio {label} / baseline: {rate / baseline:.2f}")
    print(
        f"Keycloak's sizing guide for {cpus} vCPUs (shared here with the callers): "
        f"{GUIDE_PER_VCPU * cpus} grants/s (new TLS connection per grant)"
    )


if __name__ == "__main__":
    main()
