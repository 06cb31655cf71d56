"""Issuing a key: the portal's operation against one raw POST and the naive sequence.

Three ways to make the same credential, interleaved round by round on the same Keycloak:
- the portal's `issue_key` (database record committed, then one POST with the whole
  representation while the record is marked live and audited, committed once it answered);
- (a) one raw `POST /clients` with the same representation, and nothing else: the floor;
- (b) the naive python-keycloak sequence: create, look up the id, get the service account,
  add the audience scope, read the secret Keycloak generated.
It prints the admin requests each makes (counted on the wire), the median time of each,
and the ratios: first on the bench's dev-mode node (`kc.sh start-dev`, its own H2 file),
then on Keycloak as it runs in production (`kc.sh start` with deploy/keycloak.conf, two
nodes on PostgreSQL behind nginx: devstack/keycloak_cluster.py). The goal (portal / raw
POST ≤ 1.3) is the production one: there a POST writes to a database server, as the portal
does; the dev node's POST is cheaper, so the same portal overhead weighs more in its ratio.
"""

from __future__ import annotations

import os
import uuid
from collections import Counter
from typing import Any

from bench.common import bench_owner, median_ms, setup_django, timed, wire_counter

setup_django()

from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext, override_settings
from django.utils import timezone

from apikeys.credentials.secret_format import new_secret
from apikeys.keycloak import client as keycloak
from apikeys.keycloak import desired
from apikeys.models import Api, ApiKey
from apikeys.operations import lifecycle
from apikeys.operations.lifecycle import KeyOrder
from devstack import keycloak_cluster

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "30"))


def main() -> None:
    api = Api.objects.get(slug="sample")
    owner = bench_owner()
    measure("one dev-mode node", api, owner)
    print(f"Starting the production-mode cluster on {keycloak_cluster.url()}…", flush=True)
    keycloak_cluster.start()
    try:
        with override_settings(KEYCLOAK_URL=keycloak_cluster.url()):
            call_command("bootstrap_keycloak", verbosity=0)
            measure("the production-mode cluster", api, owner)
    finally:
        keycloak_cluster.stop_all()


def measure(where: str, api: Api, owner: Any) -> None:
    """The three ways, interleaved, on the Keycloak of the settings; prints the figures."""
    conn = keycloak.portal_connection()
    admin = conn.admin
    session = admin.connection._s
    scope = keycloak.find_client_scope(conn, api.scope_name)  # also fetches a token
    if scope is None:
        raise SystemExit(f"No client scope {api.scope_name}: run bootstrap_keycloak first.")
    scope_id = scope["id"]
    made: list[str] = []
    times: dict[str, list[float]] = {"portal": [], "raw": [], "naive": []}
    wire: dict[str, Counter[str]] = {}

    def issue(name: str) -> None:
        order = KeyOrder(api=api, name=name, lifetime_days=30)
        made.append(lifecycle.issue_key(owner, order).key.keycloak_id)

    def portal(n: int) -> None:
        with wire_counter(session) as counts:
            elapsed = timed(lambda: issue(f"bench {n}"))
        times["portal"].append(elapsed)
        wire["portal"] = counts

    def raw(n: int) -> None:
        key = ApiKey(owner=owner, api=api, name="raw", expires_at=timezone.now())
        key.client_id = f"{ApiKey.CLIENT_ID_PREFIX}{key.pk.hex}"
        rep = desired.key_client(key, now=timezone.now(), secret=new_secret())
        with wire_counter(session) as counts:
            elapsed = timed(lambda: made.append(keycloak.create_client(conn, rep)))
        times["raw"].append(elapsed)
        wire["raw"] = counts

    def naive(n: int) -> None:
        client_id = f"{ApiKey.CLIENT_ID_PREFIX}naive-{uuid.uuid4().hex}"

        def sequence() -> None:
            admin.create_client(
                {
                    "clientId": client_id,
                    "publicClient": False,
                    "serviceAccountsEnabled": True,
                    "standardFlowEnabled": False,
                    "directAccessGrantsEnabled": False,
                }
            )
            client_uuid = admin.get_client_id(client_id)
            if client_uuid is None:
                raise SystemExit(f"{client_id} vanished")
            admin.get_client_service_account_user(client_uuid)
            admin.add_client_default_client_scope(client_uuid, scope_id, {})
            admin.get_client_secrets(client_uuid)
            made.append(client_uuid)

        with wire_counter(session) as counts:
            elapsed = timed(sequence)
        times["naive"].append(elapsed)
        wire["naive"] = counts

    ways = [portal, raw, naive]
    try:
        for n in range(ROUNDS):
            for way in ways[n % 3 :] + ways[: n % 3]:  # rotate the order against drift
                way(n)
        # Counted apart: Django's query log would weigh on the timed rounds.
        with CaptureQueriesContext(connection) as sql:
            issue("bench counted")
        queries = len(sql)
    finally:
        for client_uuid in made:
            keycloak.delete_client(conn, client_uuid)
        owner.api_keys.update(status=ApiKey.Status.REVOKED)  # audit entries are append-only

    medians = {name: median_ms(samples) for name, samples in times.items()}
    print(f"{where}: {ROUNDS} rounds of each, interleaved; Keycloak {settings.KEYCLOAK_URL}")
    for name, label in (
        ("portal", "portal issue_key"),
        ("raw", "(a) raw POST"),
        ("naive", "(b) naive sequence"),
    ):
        requests = sum(wire[name].values())
        print(f"{label:20} admin requests per key: {requests}  median {medians[name]:7.1f} ms")
        for call, count in sorted(wire[name].items()):
            print(f"{'':22}{count} x {call}")
    print(f"portal SQL queries per key: {queries}")
    print(f"ratio portal / raw POST: {medians['portal'] / medians['raw']:.2f}")
    print(f"ratio naive / portal:    {medians['naive'] / medians['portal']:.2f}")


if __name__ == "__main__":
    main()
