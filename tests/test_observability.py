"""What an operator watches: metrics, liveness and readiness, request ids in the logs."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client

from apikeys.keycloak import client as keycloak
from apikeys.keycloak.client import Connection
from apikeys.models import Api, User
from portal.request_ids import RequestIdFilter
from tests.factories import issue

pytestmark = [pytest.mark.embedded, pytest.mark.django_db, pytest.mark.usefixtures("key_clients")]
ROOT = Path(__file__).resolve().parent.parent


def scrape(client: Client, **headers: str) -> str:
    answer = client.get("/metrics", headers=headers)
    assert answer.status_code == 200, answer.content
    return answer.content.decode()


def value(text: str, series: str) -> float:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{series} not in the metrics")


def test_metrics_show_keycloak_calls_requests_jobs_queues_and_keys(
    owner: User, sample: Api, client: Client, key_clients: Connection
) -> None:
    made = 'portal_keycloak_calls_total{operation="POST /clients",outcome="ok"}'
    missing = 'portal_keycloak_calls_total{operation="GET /clients/{id}",outcome="not found"}'
    before = scrape(client)
    calls_before = value(before, made) if made in before else 0.0
    missed_before = value(before, missing) if missing in before else 0.0

    issue(owner, sample, name="counted", lifetime_days=30)
    with pytest.raises(keycloak.NotFound):
        keycloak.get_client(key_clients, "00000000-0000-0000-0000-000000000000")
    call_command("expire_keys", stdout=io.StringIO())
    text = scrape(client)

    assert value(text, made) == calls_before + 1
    assert value(text, missing) == missed_before + 1
    assert 'portal_keycloak_call_seconds_bucket{le="10.0",operation="POST /clients"}' in text
    assert value(text, 'portal_keys{status="active"}') == 1
    assert value(text, 'portal_webhook_messages{state="pending"}') == 0
    assert value(text, 'portal_job_lag_seconds{job="expire_keys"}') < 60
    assert "django_http_requests_latency_seconds_by_view_method_bucket" in text


def test_metrics_need_the_token_when_one_is_set_and_are_off_in_production_without(
    client: Client, settings: Any
) -> None:
    settings.METRICS_TOKEN = "a-long-random-scrape-token-0123456789"
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    scrape(client, Authorization=f"Bearer {settings.METRICS_TOKEN}")

    settings.METRICS_TOKEN, settings.LOCAL = "", False
    assert client.get("/metrics").status_code == 404


def test_liveness_apart_from_readiness(client: Client, settings: Any) -> None:
    assert client.get("/health/live").json() == {"status": "ok"}
    ready = client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "keycloak": "ok"}

    settings.KEYCLOAK_URL = "http://127.0.0.1:9"  # nothing listens there
    assert client.get("/health/live").status_code == 200
    down = client.get("/health/ready")
    assert down.status_code == 503
    assert down.json()["checks"]["keycloak"] == "unreachable"


def test_a_request_id_follows_the_request_into_its_keycloak_call_log_lines(
    owner: User, sample: Api, client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.handler.addFilter(RequestIdFilter())
    client.force_login(owner)
    with caplog.at_level(logging.INFO, logger="apikeys.keycloak.client"):
        answer = client.post(
            "/keys/new/",
            {"name": "traced", "api": "sample", "lifetime_days": 30},
            headers={"X-Request-ID": "trace-0123456789"},
        )

    assert answer["X-Request-ID"] == "trace-0123456789"
    calls = [r for r in caplog.records if r.name == "apikeys.keycloak.client"]
    assert any("POST /clients" in r.getMessage() for r in calls)
    assert {getattr(r, "request_id", None) for r in calls} == {"trace-0123456789"}
    fresh = client.get("/health/live", headers={"X-Request-ID": "bad id\n"})
    assert len(fresh["X-Request-ID"]) == 32  # a malformed id is replaced, not echoed


def test_json_logs_carry_the_request_id() -> None:
    script = (
        "from django.test import Client;"
        "Client(HTTP_HOST='127.0.0.1').get('/api/v1/nowhere?code=secret-code',"
        " headers={'X-Request-ID': 'trace-json-0001'})"
    )
    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", script],
        cwd=ROOT,
        env={**os.environ, "LOG_FORMAT": "json"},
        capture_output=True,
        text=True,
        check=True,
    )
    lines = [json.loads(text) for text in done.stderr.strip().splitlines()]
    line = next(line for line in lines if line["logger"] == "django.request")
    assert line["message"].startswith("Not Found: /api/v1/nowhere")
    assert line["level"] == "WARNING"
    assert line["request_id"] == "trace-json-0001"
    assert "secret-code" not in done.stderr  # the request object is not logged
