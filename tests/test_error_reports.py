"""A failure after a secret exists shows it nowhere: not the debug page, error mails or logs.

The failure is injected at the step boundary right after Keycloak took the new secret (a
real one, read back from Keycloak to search for), where an unexpected error is the worst
case: every frame below the view holds the secret or the representation carrying it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils.log import AdminEmailHandler

from apikeys import crash_points
from apikeys.keycloak import client as keycloak
from apikeys.keycloak.client import Connection
from apikeys.models import Api, ApiKey, User
from tests.factories import issue
from tests.oidc import cli_tokens

pytestmark = [pytest.mark.embedded, pytest.mark.usefixtures("key_clients")]


@pytest.fixture
def error_reports(settings: Any) -> Iterator[None]:
    """Debug pages on, and Django's own mail handler reporting server errors to ADMINS."""
    settings.DEBUG = True
    settings.ADMINS = [("Operations", "ops@example.com")]
    handler = AdminEmailHandler(include_html=True)
    logger = logging.getLogger("django.request")
    logger.addHandler(handler)
    yield
    logger.removeHandler(handler)
    crash_points.armed.clear()


def failing_after_the_secret(client: Client, owner: User, point: str) -> None:
    """Sign in as `owner`, and make the request fail just after Keycloak took the secret."""
    client.force_login(owner)
    client.raise_request_exception = False
    crash_points.armed[point] = "error"


def reports_sent() -> str:
    """Every error mail's text and HTML report."""
    parts = []
    for message in mail.outbox:
        parts.append(str(message.body))
        parts += [str(content) for content, _ in getattr(message, "alternatives", [])]
    return "\n".join(parts)


def secret_in_keycloak(conn: Connection, key: ApiKey) -> str:
    client = keycloak.find_client(conn, key.client_id)
    assert client is not None
    return str(client["secret"])


def assert_nowhere(secret: str, page: str, caplog: pytest.LogCaptureFixture) -> None:
    assert "Traceback" in page or "traceback" in page  # the debug page, with its frames
    assert "********************" in page  # sensitive frames are shown, starred
    reports = reports_sent()
    assert "Traceback" in reports
    assert secret not in page
    assert secret not in reports
    assert secret not in caplog.text


@pytest.mark.usefixtures("error_reports")
@pytest.mark.usefixtures("sample")
def test_a_failure_while_creating_shows_the_new_secret_nowhere(
    client: Client, owner: User, key_clients: Connection, caplog: pytest.LogCaptureFixture
) -> None:
    failing_after_the_secret(client, owner, "issue:client-created")

    response = client.post(
        reverse("new_key"), {"name": "doomed", "api": "sample", "lifetime_days": "30"}
    )

    assert response.status_code == 500
    secret = secret_in_keycloak(key_clients, ApiKey.objects.get())
    assert_nowhere(secret, response.content.decode(), caplog)


@pytest.mark.usefixtures("error_reports", "sample")
def test_a_failure_in_the_thread_that_makes_the_client_shows_the_new_secret_nowhere(
    client: Client,
    owner: User,
    key_clients: Connection,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Keycloak made the client in the worker thread (keycloak.start_create_client), and
    reading its answer fails there: the frames of that thread hold the representation."""

    def unexpected(answer: Any) -> str:
        raise RuntimeError("a bug reading Keycloak's answer")

    monkeypatch.setattr(keycloak, "_created_id", unexpected)
    client.force_login(owner)
    client.raise_request_exception = False

    response = client.post(
        reverse("new_key"), {"name": "doomed", "api": "sample", "lifetime_days": "30"}
    )

    assert response.status_code == 500
    assert "a bug reading Keycloak" in response.content.decode()  # the thread's own frames
    key = ApiKey.objects.get()
    assert key.status == ApiKey.Status.UNFINISHED  # nothing recorded as made
    assert_nowhere(secret_in_keycloak(key_clients, key), response.content.decode(), caplog)


@pytest.mark.usefixtures("error_reports")
def test_a_failure_while_rotating_shows_the_new_secret_nowhere(
    client: Client,
    owner: User,
    sample: Api,
    key_clients: Connection,
    caplog: pytest.LogCaptureFixture,
) -> None:
    key = issue(owner, sample, name="rotating", lifetime_days=30).key
    failing_after_the_secret(client, owner, "rotate:secret-set")

    response = client.post(reverse("rotate_key", args=[key.pk]))

    assert response.status_code == 500
    assert_nowhere(secret_in_keycloak(key_clients, key), response.content.decode(), caplog)


@pytest.mark.usefixtures("error_reports", "sample")
def test_a_failure_in_the_api_shows_the_new_secret_nowhere(
    make_keycloak_user: Any, key_clients: Connection, caplog: pytest.LogCaptureFixture
) -> None:
    account = make_keycloak_user()
    bearer = {
        "Authorization": f"Bearer {cli_tokens(account.email, account.password)['access_token']}"
    }
    client = Client(raise_request_exception=False)
    crash_points.armed["issue:client-created"] = "error"

    response = client.post(
        "/api/v1/keys",
        {"name": "doomed", "api": "sample"},
        content_type="application/json",
        headers=bearer,
    )

    assert response.status_code == 500
    secret = secret_in_keycloak(key_clients, ApiKey.objects.get())
    assert_nowhere(secret, response.content.decode(), caplog)


@pytest.mark.usefixtures("sample")
def test_an_api_failure_is_a_problem_document_without_details(make_keycloak_user: Any) -> None:
    account = make_keycloak_user()
    bearer = {
        "Authorization": f"Bearer {cli_tokens(account.email, account.password)['access_token']}"
    }
    client = Client(raise_request_exception=False)
    crash_points.armed["issue:client-created"] = "error"
    try:
        response = client.post(
            "/api/v1/keys",
            {"name": "doomed", "api": "sample"},
            content_type="application/json",
            headers=bearer,
        )
    finally:
        crash_points.armed.clear()

    assert response.status_code == 500
    assert response["Content-Type"] == "application/problem+json"
    assert "try again" in response.json()["detail"]
    assert "Traceback" not in response.content.decode()
