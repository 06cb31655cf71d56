"""Fixtures: the real Keycloak (bootstrapped once per session), users, and role fixtures.

The services come from `bin/test`: Keycloak's test instance, PostgreSQL and the mail sink.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from django.conf import settings
from django.core.cache import caches
from django.core.servers.basehttp import ThreadedWSGIServer
from django.db import connection
from django.test.testcases import LiveServerThread
from keycloak import KeycloakAdmin
from keycloak.exceptions import KeycloakDeleteError
from playwright.sync_api import Browser, ConsoleMessage, Error, Page, sync_playwright

from apikeys.credentials import bearer as bearer_tokens
from apikeys.credentials import revocations
from apikeys.keycloak import bootstrap
from apikeys.keycloak import client as keycloak
from apikeys.keycloak.client import Connection, Representation
from apikeys.models import Api, ApiKey, Permission, User, WorkloadIssuer
from apikeys.operations import permissions
from tests.accounts import KeycloakUser, create_keycloak_user
from tests.browser import CHROMIUM, CHROMIUM_ARGS
from tests.factories import unique_user
from tests.issuer import Issuer, serving
from tests.receivers import free_port


def pytest_configure() -> None:
    if os.environ.get("PORTAL_PROFILE") != "test":
        raise pytest.UsageError("Run the tests with bin/test (PORTAL_PROFILE=test and services).")
    LiveServerThread.server_class = _ReusableServer  # type: ignore[attr-defined]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that drive the browser are marked `browser`, and bin/test's SQLite pass leaves them
    out: a page is the same HTML and JavaScript on either database, and the test client's
    tests of the same pages and operations (marked `embedded`) run on both."""
    for item in items:
        if "page" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.browser)


class _ReusableServer(ThreadedWSGIServer):
    """The live server on its fixed port (Keycloak knows its exact redirect URI), bound even
    while the port's connections from a run just before are in TIME_WAIT: Django turns
    SO_REUSEADDR off for live servers, and clients that close first (urllib's
    `Connection: close`) leave the server side waiting for a minute."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **{**kwargs, "allow_reuse_address": True})


@pytest.fixture(autouse=True)
def fresh_rate_limits() -> Iterator[None]:
    """Each test starts with no requests counted against the rate limits (apikeys/limits.py):
    the test server and the tests share one process, and so its counters."""
    caches["ratelimit"].clear()
    yield
    caches["ratelimit"].clear()


@pytest.fixture(autouse=True)
def revocation_lists_read_on_every_request(settings: Any) -> Iterator[None]:
    """Strict mode reads the API's revocation list again every request here, so that a test
    sees at once what it just did to a key; tests/test_revocation_feed.py checks the real
    interval, and that no request makes a call of its own."""
    settings.REVOCATION_FEED_REFRESH_SECONDS = 0
    bearer_tokens.forget_revocation_lists()
    yield
    bearer_tokens.forget_revocation_lists()


@pytest.fixture
def real_smtp(settings: Any) -> None:
    """pytest-django swaps in a memory backend; these tests want the real SMTP to the sink."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"


def sample_api() -> Api:
    return Api(name="Sample API", slug="sample", audience="sample-api", checks_revocation=True)


@pytest.fixture
def sample(db: None, bootstrapped: Connection) -> Api:
    """The catalog's Sample API; its audience scope exists in Keycloak."""
    api = sample_api()
    api.save()
    return api


@pytest.fixture
def key_clients(bootstrapped: Connection) -> Iterator[Connection]:
    """Deletes every key client from Keycloak after the test; yields the admin connection."""
    yield bootstrapped
    for client in key_clients_in_keycloak(bootstrapped):
        keycloak.delete_client(bootstrapped, client["id"])


def key_clients_in_keycloak(conn: Connection) -> list[Representation]:
    """Every key client in the realm, as Keycloak represents it."""
    pages = keycloak.key_clients(conn, ApiKey.CLIENT_ID_PREFIX)
    return [client.representation for page in pages for client in page]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # Playwright's sync API runs an event loop in this thread; Django's ORM, used by the test
    # code between browser steps, refuses to run beside one unless told it is safe here.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            yield chromium
            chromium.close()


@pytest.fixture
def page(browser: Browser, live_server: Any, bootstrapped: Connection) -> Iterator[Page]:
    """A browser tab on the live portal; the console of the portal's pages must stay clean.

    A CSP violation, an htmx target that does not exist or a script error each log an
    error there, so every browser test also checks that none was logged by the portal.
    """
    context = browser.new_context(base_url=live_server.url)
    context.set_default_timeout(20_000)
    tab = context.new_page()
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        url = message.location["url"]
        if message.type != "error" or not url.startswith(live_server.url):
            return
        if message.text.startswith("Failed to load resource") and (
            url == tab.url or "status of 429" in message.text
        ):
            return  # the page itself, or a limited action, answered with the status under test
        problems.append(f"{url}: {message.text}")

    def on_page_error(error: Error) -> None:
        if tab.url.startswith(live_server.url):  # Keycloak's pages have errors of their own
            problems.append(f"{tab.url}: {error}")

    tab.on("console", on_console)
    tab.on("pageerror", on_page_error)
    yield tab
    context.close()
    assert problems == [], problems


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """pytest-django's, and at the end of the session, before it drops the test database,
    the PostgreSQL sessions that threads of the test servers still hold (they answer
    Keycloak's pushed events to the last moment) are ended: the drop would fail otherwise."""
    yield
    if connection.vendor != "postgresql":
        return
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    connection.close()  # and this one: the drop below does not always close it


@pytest.fixture(scope="session")
def keycloak_admin() -> Connection:
    """The master admin, working on the portal realm: for set-up and inspection in tests."""
    return keycloak.connect(
        realm=settings.KEYCLOAK_REALM,
        username=os.environ["KEYCLOAK_BOOTSTRAP_ADMIN_USERNAME"],
        password=os.environ["KEYCLOAK_BOOTSTRAP_ADMIN_PASSWORD"],
        user_realm="master",
    )


@pytest.fixture(scope="session")
def bootstrapped(keycloak_admin: Connection) -> Connection:
    bootstrap.run(keycloak_admin, [sample_api()])
    return keycloak_admin


@pytest.fixture
def make_keycloak_user(bootstrapped: Connection) -> Iterator[KeycloakUser]:
    """Factory for verified Keycloak users with a password; deleted after the test."""
    admin: KeycloakAdmin = bootstrapped.admin
    made: list[KeycloakUser] = []

    def make(*, roles: tuple[str, ...] = ()) -> KeycloakUser:
        made.append(create_keycloak_user(admin, roles=roles))
        return made[-1]

    yield make  # type: ignore[misc]
    for user in made:
        with contextlib.suppress(KeycloakDeleteError):  # the test may have deleted it
            admin.delete_user(user.id)


@pytest.fixture
def loopback_issuer() -> Iterator[Issuer]:
    """A workload platform's token issuer of the test's own (tests/issuer.py), serving its
    keys and discovery document on a free loopback port for the test."""
    with serving() as issuer:
        yield issuer


@pytest.fixture
def owner(db: None) -> User:
    return User.objects.create(username=str(uuid.uuid4()), email="owner@example.com")


@pytest.fixture
def customer(db: None) -> User:
    """A customer of their own (their own `sub` and email)."""
    return unique_user()


@pytest.fixture
def other_user(db: None) -> User:
    return User.objects.create(username=str(uuid.uuid4()), email="other@example.com")


@pytest.fixture
def admin_user(db: None) -> User:
    return User.objects.create(username=str(uuid.uuid4()), email="admin@example.com", is_staff=True)


TARGET = 5.0  # seconds from the change in Keycloak to its effect in the portal


def eventually(check: Callable[[], bool], *, within: float = TARGET) -> float:
    """Seconds until `check()` held; fails if it did not within `within`."""
    began = time.monotonic()
    while not check():
        assert time.monotonic() - began < within, f"not within {within} s"
        time.sleep(0.05)
    return time.monotonic() - began


@pytest.fixture
def pushing(
    live_server: Any,
    bootstrapped: Connection,
    settings: Any,
    make_keycloak_user: Callable[..., KeycloakUser],
) -> Iterator[Connection]:
    """The realm's portal listener on, pushing to the live server, for this test only (off
    again before the test's users are deleted, whose deletion would be pushed too)."""
    settings.KEYCLOAK_PUSH_EVENTS = True
    assert bootstrap.ensure_realm(bootstrapped) == [f"updated realm {bootstrapped.realm}"]
    yield bootstrapped
    settings.KEYCLOAK_PUSH_EVENTS = False
    bootstrap.ensure_realm(bootstrapped)


@pytest.fixture
def orders(sample: Api, admin_user: User) -> dict[str, Permission]:
    """The sample API's permissions (apikeys/views/sample_api.py): orders:read is given to new
    keys by default, orders:write needs approval."""
    read = permissions.define_permission(
        sample, name="orders:read", description="Read the orders", actor=admin_user
    ).permission
    write = permissions.define_permission(
        sample,
        name="orders:write",
        description="Place orders",
        requires_approval=True,
        default=False,
        actor=admin_user,
    ).permission
    return {"orders:read": read, "orders:write": write}


EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture
def resource_server(live_server: Any, sample: Api) -> Iterator[str]:
    """examples/resource_server.py in a process of its own, reading the sample API's feed."""
    port = free_port()
    environment = {
        **os.environ,
        "TOKEN_ISSUER": settings.TOKEN_ISSUER,
        "OIDC_OP_JWKS_ENDPOINT": settings.OIDC_OP_JWKS_ENDPOINT,
        "API_AUDIENCE": sample.audience,
        "REVOCATION_FEED_URL": f"{live_server.url}/feeds/revocations",
        "REVOCATION_FEED_TOKEN": revocations.new_feed_token(sample),
    }
    process = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "resource_server.py"), f"127.0.0.1:{port}"],
        env=environment,
    )
    url = f"http://127.0.0.1:{port}/orders"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(url, timeout=1)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "the resource server did not start"
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def providers_removed(bootstrapped: Connection) -> Iterator[None]:
    """Deletes the trusted issuers' identity providers from Keycloak after the test (their
    records go with the test's database), so that no later reconcile or bootstrap finds them."""
    yield
    for provider in keycloak.list_identity_providers(bootstrapped):
        if provider["alias"].startswith(WorkloadIssuer.ALIAS_PREFIX):
            with contextlib.suppress(keycloak.NotFound):
                keycloak.delete_identity_provider(bootstrapped, provider["alias"])
