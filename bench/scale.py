"""One realm grown from 100 key clients to tens of thousands, measured at each size against
the first, in the same run: what many keys cost Keycloak and the portal.

Sizes: BENCH_SCALE_SIZES, default "100,1000,10000,30000" (add 100000 for the whole curve: the
clients are made at Keycloak's pace, about a minute per thousand on this machine's dev node).
Keys are made the portal's way: `desired.key_client`, each with its own secret, one
`POST /clients` each (Keycloak makes its service account), by BENCH_MAKERS (3) callers at
once, each with its portal record. At each size:

- making: how many clients a second were made for this step;
- grants per second, 8 callers, best of BENCH_RUNS (2) x BENCH_SECONDS (8): the first 100
  keys (a hot few), then every key in turn (all of the realm read);
- issuing a key through the portal (`lifecycle.issue_key`, by a customer of their own, not
  the owner of the realm's keys), and one raw `POST /clients` of the same representation
  beside it, median of BENCH_ISSUES (15) each, interleaved;
- the admin key list (`/manage/keys/`, full request cycle, signed in at level 2): server time
  and SQL queries, no filter and a search for one key's client id, median of 5;
- reconcile: a cold run (Keycloak's realm cache emptied, as after a node starts: every client
  read from its database), then the median of two more (what a node that has the clients
  cached costs), per client;
- Keycloak's heap after a full GC (`jcmd GC.run`, then `GC.heap_info`).

The ratios are against the first size; reconcile's per-client cost against 1,000 (at 100 a
run is too short to divide). Afterwards the realm is deleted and bootstrapped again (at
100,000 clients Keycloak gives up deleting it: the next bin/bench starts on an empty Keycloak).
Run it alone: the benchmarks named after it would find its realm.
"""

from __future__ import annotations

import os
import re
import subprocess
import time

from bench.common import (
    bench_owner,
    median_ms,
    page_time,
    setup_django,
    sign_in_as_admin,
)
from bench.grants import THREADS, grants_per_second
from bench.keys import add_keys, connections, reconcile_cold_and_warm

setup_django()

from django.conf import settings
from django.test import Client
from django.utils import timezone

from apikeys.credentials.secret_format import new_secret
from apikeys.keycloak import bootstrap, desired
from apikeys.keycloak import client as keycloak
from apikeys.models import Api, ApiKey, User
from apikeys.operations import lifecycle
from apikeys.operations.lifecycle import KeyOrder
from devstack import keycloak_server
from devstack.process import running_pid

SIZES = [int(n) for n in os.environ.get("BENCH_SCALE_SIZES", "100,1000,10000,30000").split(",")]
MAKERS = int(os.environ.get("BENCH_MAKERS", "3"))  # callers making the clients
RUNS = int(os.environ.get("BENCH_RUNS", "2"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "8"))
ISSUES = int(os.environ.get("BENCH_ISSUES", "15"))
HOT = 100
INSTANCE = keycloak_server.Instance("bench", 8280)


def best_grants(keys: list[tuple[str, str]]) -> float:
    runs = []
    for _ in range(RUNS):
        rate, _, failed = grants_per_second(keys, seconds=SECONDS)
        if failed:
            raise SystemExit(f"{failed} grants failed: the figures would not be grants.")
        runs.append(rate)
    return max(runs)


def issuing(owner: User, api: Api) -> tuple[float, float]:
    """Median ms of the portal's issue_key and of one raw POST /clients, interleaved."""
    conn = keycloak.portal_connection()
    portal, raw = [], []
    for _ in range(ISSUES):
        order = KeyOrder(api=api, name=f"issued {time.monotonic_ns()}", lifetime_days=30)
        began = time.perf_counter()
        lifecycle.issue_key(owner, order)
        portal.append(time.perf_counter() - began)
        key = ApiKey(owner=owner, api=api, name="raw", expires_at=timezone.now())
        key.client_id = f"{ApiKey.CLIENT_ID_PREFIX}{key.pk.hex}"
        rep = desired.key_client(key, now=timezone.now(), secret=new_secret())
        began = time.perf_counter()
        client_uuid = keycloak.create_client(conn, rep)
        raw.append(time.perf_counter() - began)
        keycloak.delete_client(conn, client_uuid)  # no record: reconcile would recover it
    return median_ms(portal), median_ms(raw)


def admin_client() -> Client:
    """Signed in as an administrator whose sign-in used a second factor just now."""
    admin = User.objects.create(
        username=f"scale-admin-{time.monotonic_ns()}", email="scale@example.com", is_staff=True
    )
    client = Client(HTTP_HOST="127.0.0.1")
    sign_in_as_admin(client, admin)
    return client


def heap_after_full_gc() -> float:
    """MB of Keycloak's heap in use after a full collection."""
    script = running_pid(INSTANCE.pid_file)
    if script is None:
        raise SystemExit("The bench Keycloak is not running.")
    children = subprocess.run(
        ["pgrep", "-P", str(script)], capture_output=True, text=True, check=False
    ).stdout.split()
    pid = int(children[0]) if children else script  # kc.sh runs java as its child
    jcmd = str(keycloak_server.find_java_home() / "bin" / "jcmd")
    subprocess.run([jcmd, str(pid), "GC.run"], check=True, capture_output=True, timeout=120)
    info = subprocess.run(
        [jcmd, str(pid), "GC.heap_info"], check=True, capture_output=True, text=True, timeout=60
    ).stdout
    used = re.search(r"used (\d+)K", info)
    if used is None:
        raise SystemExit(f"Could not read the heap from jcmd: {info[:300]}")
    return int(used.group(1)) / 1024


def main() -> None:
    admin, *makers = connections(1 + MAKERS)
    api = Api.objects.get(slug="sample")
    catalog = list(Api.objects.all())
    owner = bench_owner()  # holds the realm's keys
    customer = bench_owner()  # issues keys: a customer with a few keys of their own
    client = admin_client()
    rows: list[dict[str, float]] = []
    keys: list[tuple[str, str]] = []
    try:
        for size in SIZES:
            step = size - len(keys)
            began = time.perf_counter()
            keys.extend(add_keys(makers, owner, api, step, len(keys)))
            making = time.perf_counter() - began
            if not rows:  # warm up: Keycloak's first seconds of grants are a third slower
                grants_per_second(keys, seconds=2 * SECONDS)
            row: dict[str, float] = {"size": size, "made/s": step / making}
            row["grants hot"] = best_grants(keys[:HOT])
            row["grants all"] = best_grants(keys)
            row["issue ms"], row["raw ms"] = issuing(customer, api)
            row["list ms"], row["list q"] = page_time(client, "/manage/keys/")
            row["search ms"], _ = page_time(
                client, "/manage/keys/", {"q": keys[7][0]}
            )  # one key's client id
            cold, warm, seen, problems = reconcile_cold_and_warm(admin, 2)
            row["reconcile cold ms/client"] = cold / seen * 1000
            row["reconcile ms/client"] = warm / seen * 1000
            row["problems"] = problems
            row["heap MB"] = heap_after_full_gc()
            rows.append(row)
            print(", ".join(f"{name} {value:,.2f}" for name, value in row.items()), flush=True)
        report(rows)
    finally:
        ApiKey.objects.update(status=ApiKey.Status.REVOKED)  # audit entries are append-only
        try:
            keycloak._request(admin, "DELETE", "")
            bootstrap.run(admin, catalog)
        except keycloak.KeycloakFailure as error:  # 100,000 clients outlast its transaction
            print(f"The realm stays ({error}): the next bin/bench starts on an empty Keycloak.")


def cold(row: dict[str, float]) -> float:
    return row["reconcile cold ms/client"]


def report(rows: list[dict[str, float]]) -> None:
    print(
        f"\nKeycloak {settings.KEYCLOAK_URL}; grants: {THREADS} callers, best of {RUNS} x "
        f"{SECONDS:.0f} s; issuing: median of {ISSUES}; reconcile: cold, then median of 2 warm"
    )
    names = [name for name in rows[0] if name != "size"]
    print(f"{'clients':>9} " + " ".join(f"{name:>13}" for name in names))
    for row in rows:
        print(f"{int(row['size']):>9,} " + " ".join(f"{row[name]:>13,.2f}" for name in names))
    base = rows[0]
    per_client_base = next((row for row in rows if row["size"] >= 1000), rows[-1])
    print("\nratios against the first size (reconcile: against the first of 1,000 or more)")
    for row in rows[1:]:
        print(
            f"{int(row['size']):>9,}: grants hot {row['grants hot'] / base['grants hot']:.2f}, "
            f"all {row['grants all'] / base['grants all']:.2f}; "
            f"issuing {row['issue ms'] / base['issue ms']:.2f} "
            f"(portal / raw here {row['issue ms'] / row['raw ms']:.2f}); "
            f"admin list {row['list ms'] / base['list ms']:.2f}, "
            f"search {row['search ms'] / base['search ms']:.2f}; "
            f"reconcile per client "
            f"{row['reconcile ms/client'] / per_client_base['reconcile ms/client']:.2f} warm, "
            f"{cold(row) / cold(per_client_base):.2f} cold; "
            f"heap {row['heap MB'] / base['heap MB']:.2f}"
        )


if __name__ == "__main__":
    main()
