"""What load balancers, run scripts and Prometheus ask: liveness apart from readiness, and
the metrics.

Metrics: the counters of apikeys/observability.py, and, read from the database at each scrape
so that every process reports the same figures, the jobs' last success and lag, the webhook
outbox's depth and the keys by status. Several gunicorn workers: set PROMETHEUS_MULTIPROC_DIR
(prometheus_client's multiprocess mode; `portal/gunicorn.conf.py` clears a dead worker's
files) so the counters of all workers add up; the database figures are added once.
"""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Iterator
from typing import Any

import requests
from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db import DatabaseError, connection
from django.db.models import Count
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from apikeys.models import ApiKey, JobState, WebhookMessage

log = logging.getLogger(__name__)


class PortalCollector(Collector):
    """Figures read from the database at each scrape."""

    def describe(self) -> Iterator[Metric]:
        """The names, for the registry (without reading the database at start-up)."""
        yield GaugeMetricFamily("portal_job_last_success_timestamp_seconds", "", labels=["job"])
        yield GaugeMetricFamily("portal_job_lag_seconds", "", labels=["job"])
        yield GaugeMetricFamily("portal_webhook_messages", "", labels=["state"])
        yield GaugeMetricFamily("portal_webhook_oldest_pending_seconds", "")
        yield GaugeMetricFamily("portal_keys", "", labels=["status"])

    def collect(self) -> Iterator[Metric]:
        try:
            yield from self._collect()
        except DatabaseError as error:  # a scrape must not fail: the gauges are left out
            log.warning("metrics: the database could not be read: %s", error)

    def _collect(self) -> Iterator[Metric]:
        now = timezone.now()
        success = GaugeMetricFamily(
            "portal_job_last_success_timestamp_seconds",
            "When each periodic job last completed (Unix time).",
            labels=["job"],
        )
        lag = GaugeMetricFamily(
            "portal_job_lag_seconds", "Seconds since each job last completed.", labels=["job"]
        )
        for name, at in JobState.objects.values_list("name", "last_success_at"):
            if at is None:
                continue
            success.add_metric([name], at.timestamp())
            lag.add_metric([name], (now - at).total_seconds())
        yield success
        yield lag
        depth = GaugeMetricFamily(
            "portal_webhook_messages",
            "Webhook messages in the outbox: pending (of which due now) and given up.",
            labels=["state"],
        )
        pending = WebhookMessage.objects.filter(status=WebhookMessage.Status.PENDING)
        depth.add_metric(["pending"], pending.count())
        depth.add_metric(["due"], pending.filter(next_attempt_at__lte=now).count())
        failed = WebhookMessage.objects.filter(status=WebhookMessage.Status.FAILED)
        depth.add_metric(["failed"], failed.count())
        yield depth
        oldest = pending.order_by("created_at").values_list("created_at", flat=True).first()
        yield GaugeMetricFamily(
            "portal_webhook_oldest_pending_seconds",
            "Age of the oldest webhook message not yet delivered (0 if none).",
            value=(now - oldest).total_seconds() if oldest else 0,
        )
        keys = GaugeMetricFamily("portal_keys", "API keys by status.", labels=["status"])
        counts = dict(ApiKey.objects.values_list("status").annotate(n=Count("pk")))
        for status in ApiKey.Status.values:
            keys.add_metric([status], counts.get(status, 0))
        yield keys


portal_collector = PortalCollector()


def register() -> None:
    """Once per process (AppConfig.ready; Django runs it once)."""
    REGISTRY.register(portal_collector)


@login_not_required
@never_cache
@require_GET
def health(request: HttpRequest) -> JsonResponse:
    """Liveness and database reachability, for load balancers and the run scripts."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})


@login_not_required
@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus' scrape: with `Authorization: Bearer METRICS_TOKEN`; open in dev and test."""
    token = settings.METRICS_TOKEN
    if not token and not settings.LOCAL:
        raise Http404  # not configured: not served
    given = request.headers.get("Authorization", "")
    if token and not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        return HttpResponse("A bearer token is required.\n", status=401, content_type="text/plain")
    registry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # several worker processes: add them up
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        registry.register(portal_collector)
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


@login_not_required
@never_cache
@require_GET
def live(request: HttpRequest) -> JsonResponse:
    """Liveness: the process answers. Nothing else is checked, so a restart never helps a
    database or Keycloak outage by killing healthy processes."""
    return JsonResponse({"status": "ok"})


@login_not_required
@never_cache
@require_GET
def ready(request: HttpRequest) -> JsonResponse:
    """Readiness: the database and Keycloak answer; 503 with what failed otherwise."""
    checks: dict[str, Any] = {"database": _database(), "keycloak": _keycloak()}
    healthy = all(value == "ok" for value in checks.values())
    return JsonResponse(
        {"status": "ok" if healthy else "unavailable", "checks": checks},
        status=200 if healthy else 503,
    )


def _database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as error:
        log.warning("readiness: database: %s", error)
        return "unreachable"
    return "ok"


def _keycloak() -> str:
    url = f"{settings.KEYCLOAK_URL}/realms/{settings.KEYCLOAK_REALM}"
    try:
        answer = requests.get(url, timeout=min(settings.KEYCLOAK_TIMEOUT, 2))
    except requests.RequestException as error:
        log.warning("readiness: keycloak: %s", error)
        return "unreachable"
    return "ok" if answer.status_code == 200 else f"answered {answer.status_code}"
