"""Webhooks: from a key's state change to the receiver, and one worker's throughput.

A receiver (a real HTTP server on loopback, answering 200 at once) and one
`manage.py deliver_webhooks` process (default settings: an idle worker looks every
WEBHOOK_POLL_SECONDS, 0.5 s).
1. Latency: BENCH_EVENTS (200) key rotations, one after another, each waiting for its
   message to arrive; from the rotation's commit to the receipt: p50 and p99.
2. Throughput: BENCH_BACKLOG (1000) messages queued at once; deliveries per second of the
   one worker, beside the baseline of the same signed POSTs sent straight from one process
   with no database (what a worker can at most reach here).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.common import bench_owner, setup_django

setup_django()

from django.conf import settings
from django.db import connection
from django.utils import timezone

from apikeys.keycloak import client as keycloak
from apikeys.models import Api, ApiKey, WebhookMessage
from apikeys.operations import (
    lifecycle,
    webhooks,
)
from apikeys.operations.lifecycle import KeyOrder
from portal import outbound
from tests.receivers import receiver

ROOT = Path(__file__).resolve().parent.parent
EVENTS = int(os.environ.get("BENCH_EVENTS", "200"))
BACKLOG = int(os.environ.get("BENCH_BACKLOG", "1000"))


def worker() -> subprocess.Popen[bytes]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "portal.settings"}
    command = [sys.executable, "manage.py", "deliver_webhooks"]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)


def percentile(samples: list[float], share: float) -> float:
    ordered = sorted(samples)
    return ordered[min(int(len(ordered) * share), len(ordered) - 1)] * 1000


def main() -> None:
    api = Api.objects.get(slug="sample")
    owner = bench_owner()
    key = lifecycle.issue_key(owner, KeyOrder(api=api, name="bench", lifetime_days=30)).key
    with receiver() as inbox:
        made = webhooks.create_endpoint(owner, url=inbox.url, events=["key.rotated"])
        process = worker()
        try:
            latencies = []
            for _ in range(EVENTS):
                before = len(inbox.received)
                lifecycle.rotate_secret(key, actor=owner)
                committed = time.monotonic()
                while len(inbox.received) == before:
                    time.sleep(0.001)
                latencies.append(inbox.received[-1].at - committed)

            WebhookMessage.objects.bulk_create(
                [
                    WebhookMessage(endpoint=made.endpoint, event_type="key.rotated", data={"n": n})
                    for n in range(BACKLOG)
                ]
            )
            started = time.monotonic()
            while WebhookMessage.objects.filter(status="pending").exists():
                time.sleep(0.05)
            worker_rate = BACKLOG / (time.monotonic() - started)
        finally:
            process.terminate()
            process.wait(timeout=30)

        message = WebhookMessage.objects.filter(endpoint=made.endpoint).earliest("created_at")
        body = b'{"type":"key.rotated"}'
        headers = webhooks.signature_headers(made.endpoint, message, body.decode(), timezone.now())
        started = time.monotonic()
        for _ in range(BACKLOG):
            outbound.send("POST", inbox.url, body=body, headers=headers)
        raw_rate = BACKLOG / (time.monotonic() - started)

    conn = keycloak.portal_connection()
    keycloak.delete_client(conn, key.keycloak_id)
    ApiKey.objects.filter(pk=key.pk).update(status=ApiKey.Status.REVOKED)
    print(f"database: {connection.vendor}; poll interval {settings.WEBHOOK_POLL_SECONDS} s")
    mean = statistics.mean(latencies) * 1000
    print(
        f"state change -> receipt, {EVENTS} rotations: p50 {percentile(latencies, 0.5):6.1f} ms"
        f"  p99 {percentile(latencies, 0.99):6.1f} ms  mean {mean:6.1f} ms"
    )
    print(f"one worker, backlog of {BACKLOG}: {worker_rate:7.1f} deliveries/s")
    print(f"baseline, the same POSTs with no database: {raw_rate:7.1f} /s")
    print(f"ratio worker / baseline: {worker_rate / raw_rate:.2f}")


if __name__ == "__main__":
    main()
