"""Client-credentials grants per second for keys limited to network ranges, against keys
without, in the same run.

The portal's extension checks each token request of a key with ranges against its client's
`portal.networks` (keycloak-extension/, `apikey-portal-networks`). The keys here carry the
most ranges the portal allows (20, IPv4 and IPv6), the caller's own (loopback) last, so
every request walks them all. Rounds alternate between the two kinds of keys, so that a
drift of the machine's speed falls on both; the best round of each is compared (goal: a ratio
of at least 0.95).
"""

from __future__ import annotations

import os

from bench.common import bench_owner, setup_django

setup_django()

from django.conf import settings

from apikeys.models import Api, ApiKey
from apikeys.operations import lifecycle
from bench.grants import THREADS, grants_per_second

ROUNDS = int(os.environ.get("BENCH_RUNS", "3"))
KEYS = 16  # of each kind, used in turn
RANGES = [
    *(f"198.51.{n}.0/24" for n in range(10)),
    *(f"2001:db8:{n:x}::/48" for n in range(9)),
    "127.0.0.0/8",
]


def make(name: str, ranges: list[str]) -> list[tuple[str, str]]:
    owner = bench_owner()
    api = Api.objects.get(slug="sample")
    made = []
    for n in range(KEYS):
        order = lifecycle.KeyOrder(api=api, name=f"{name} {n}", lifetime_days=1, networks=ranges)
        revealed = lifecycle.issue_key(owner, order)
        made.append((revealed.key.client_id, revealed.secret))
    return made


def main() -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"  # no mail here
    plain = make("bench plain", [])
    limited = make("bench limited", RANGES)
    try:
        grants_per_second(plain + limited)  # warm up
        results: dict[str, list[tuple[float, float, int]]] = {"without": [], "with 20": []}
        for _ in range(ROUNDS):
            results["without"].append(grants_per_second(plain))
            results["with 20"].append(grants_per_second(limited))
    finally:
        made = [client_id for client_id, _ in plain + limited]
        for key in ApiKey.objects.filter(client_id__in=made).live():
            lifecycle.revoke_key(key, actor=None, reason="benchmark over")
    best = {label: max(runs, key=lambda run: run[0]) for label, runs in results.items()}
    print(f"client-credentials grants, {THREADS} callers, {KEYS} keys each, best of {ROUNDS}")
    for label, (rate, median, failed) in best.items():
        line = f"{rate:7.0f} grants/s  median {median:5.1f} ms  {failed} failed"
        print(f"keys {label:>8} ranges: {line}")
    if any(failed for _, _, failed in best.values()):
        raise SystemExit("Some grants failed: the figures above are not grants.")
    ratio = best["with 20"][0] / best["without"][0]
    print(f"ratio with ranges / without: {ratio:.2f} (goal: at least 0.95)")


if __name__ == "__main__":
    main()
