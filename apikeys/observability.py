"""The portal's own Prometheus counters: Keycloak admin calls by operation and outcome,
counted and timed where they are made (apikeys/keycloak/client.py), and pushed events.

The figures read from the database at each scrape, and the scrape itself, are in
apikeys/views/health.py. prometheus_client makes them; django-prometheus adds request latency
and counts per view.
"""

from __future__ import annotations

import logging
import re

from prometheus_client import Counter, Histogram

log = logging.getLogger("apikeys.keycloak.client")

KEYCLOAK_CALLS = Counter(
    "portal_keycloak_calls",
    "Keycloak admin API calls made by the portal, by operation and outcome.",
    ["operation", "outcome"],
)
KEYCLOAK_EVENTS = Counter(
    "portal_keycloak_events_pushed",
    "Events Keycloak's listener pushed, by outcome: applied, duplicate (applied before), "
    "refused (a bad signature or an old timestamp), malformed.",
    ["outcome"],
)
KEYCLOAK_SECONDS = Histogram(
    "portal_keycloak_call_seconds",
    "Time of Keycloak admin API calls, by operation.",
    ["operation"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
_IDS = re.compile(r"/[0-9a-fA-F-]{36}(?=/|$)")


def operation(method: str, path: str) -> str:
    """`PUT /clients/{id}`: ids taken out, so that each operation is one series."""
    return f"{method} {_IDS.sub('/{id}', path.split('?', 1)[0])}"


def keycloak_call(method: str, path: str, outcome: str, seconds: float) -> None:
    name = operation(method, path)
    KEYCLOAK_CALLS.labels(name, outcome).inc()
    KEYCLOAK_SECONDS.labels(name).observe(seconds)
    log.info("keycloak %s: %s in %.0f ms", name, outcome, seconds * 1000)
