"""Customers acting at the same moment, through the real HTTP server, on both databases.

These run on SQLite (the embedded default of bin/run) as well as PostgreSQL: each request is
served by its own thread with its own database connection, as under runserver or gunicorn.
"""

from __future__ import annotations

import re
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from django.conf import settings
from django.test import Client

from apikeys.credentials.secret_format import PATTERN
from apikeys.keycloak.client import Connection
from apikeys.models import Api, ApiKey, User
from tests.conftest import key_clients_in_keycloak
from tests.oidc import cli_tokens

pytestmark = [
    pytest.mark.embedded,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("key_clients"),
]


def browser_session(owner: User, base_url: str) -> requests.Session:
    """A requests session signed in as `owner`, as a browser would be."""
    client = Client()
    client.force_login(owner)
    session = requests.Session()
    session.cookies.set(
        settings.SESSION_COOKIE_NAME, client.cookies[settings.SESSION_COOKIE_NAME].value
    )
    session.headers["Referer"] = f"{base_url}/keys/"
    return session


def open_form(session: requests.Session, base_url: str) -> dict[str, str]:
    html = session.get(f"{base_url}/keys/new/", timeout=30).text
    fields = dict(re.findall(r'name="(csrfmiddlewaretoken|request_id)" value="([^"]+)"', html))
    assert set(fields) == {"csrfmiddlewaretoken", "request_id"}, html
    return fields


def submit(session: requests.Session, base_url: str, form: dict[str, str], name: str) -> Any:
    data = {**form, "name": name, "api": "sample", "lifetime_days": "30"}
    return session.post(f"{base_url}/keys/new/", data=data, timeout=60)


def outcome(response: requests.Response) -> str:
    if response.status_code != 200:
        return f"HTTP {response.status_code}"
    if PATTERN.search(response.text):
        return "made"
    if "the most allowed" in response.text:
        return "quota"
    if 'data-testid="already-submitted"' in response.text:
        return "already made"
    return "other"


def test_twenty_creates_at_once_make_exactly_the_quota(
    live_server: Any, sample: Api, key_clients: Connection, settings: Any
) -> None:
    settings.MAX_LIVE_KEYS_PER_USER = 10
    owner = User.objects.create(username=str(uuid.uuid4()), email="busy@example.com")
    base = live_server.url
    sessions = [browser_session(owner, base) for _ in range(20)]
    forms = [open_form(s, base) for s in sessions]

    with ThreadPoolExecutor(max_workers=20) as pool:
        responses = list(
            pool.map(lambda n: submit(sessions[n], base, forms[n], f"key {n}"), range(20))
        )

    outcomes = [outcome(r) for r in responses]
    assert sorted(outcomes) == ["made"] * 10 + ["quota"] * 10, outcomes
    keys = owner.api_keys.all()
    assert [k.status for k in keys] == [ApiKey.Status.ACTIVE] * 10
    clients = [
        c["clientId"]
        for c in key_clients_in_keycloak(key_clients)
        if c["attributes"].get("portal.owner") == owner.username
    ]
    assert sorted(clients) == sorted(k.client_id for k in keys)
    shown = {m.group(0) for r in responses if (m := PATTERN.search(r.text))}
    assert len(shown) == 10


def test_one_form_sent_twice_at_once_makes_one_key_and_says_so(
    live_server: Any, sample: Api
) -> None:
    owner = User.objects.create(username=str(uuid.uuid4()), email="double@example.com")
    base = live_server.url
    sessions = [browser_session(owner, base) for _ in range(2)]
    forms = [open_form(s, base) for s in sessions]
    forms[1]["request_id"] = forms[0]["request_id"]  # the same form, sent from two tabs

    with ThreadPoolExecutor(max_workers=2) as pool:
        responses = list(pool.map(lambda n: submit(sessions[n], base, forms[n], "twice"), range(2)))

    assert sorted(outcome(r) for r in responses) == ["already made", "made"]
    assert owner.api_keys.count() == 1


@pytest.mark.parametrize("attempt", range(3))  # a race: three chances to lose it
def test_six_retries_at_once_with_one_idempotency_key_make_one_key_and_name_it(
    live_server: Any, sample: Api, make_keycloak_user: Any, attempt: int
) -> None:
    account = make_keycloak_user()  # new to the portal: its first requests make its record
    token = cli_tokens(account.email, account.password)["access_token"]
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": f"deploy-{attempt}"}
    body = {"name": "retried", "api": "sample"}

    def create(_: int) -> requests.Response:
        url = f"{live_server.url}/api/v1/keys"
        return requests.post(url, json=body, headers=headers, timeout=60)

    with ThreadPoolExecutor(max_workers=6) as pool:
        responses = list(pool.map(create, range(6)))

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201, 409, 409, 409, 409, 409], [r.text for r in responses]
    made = next(r.json() for r in responses if r.status_code == 201)
    named = {r.json()["key_id"] for r in responses if r.status_code == 409}
    assert named == {made["key"]["id"]}
    assert ApiKey.objects.filter(name="retried").count() == 1


def test_one_rotate_form_sent_twice_at_once_rotates_once(live_server: Any, sample: Api) -> None:
    owner = User.objects.create(username=str(uuid.uuid4()), email="rotor@example.com")
    base = live_server.url
    sessions = [browser_session(owner, base) for _ in range(2)]
    made = submit(sessions[0], base, open_form(sessions[0], base), "rotated twice")
    assert outcome(made) == "made"
    url = f"{base}/keys/{ApiKey.objects.get(owner=owner).pk}/rotate/"
    forms = []
    for session in sessions:
        html = session.get(url, timeout=30).text
        fields = dict(re.findall(r'name="(csrfmiddlewaretoken|request_id)" value="([^"]+)"', html))
        assert set(fields) == {"csrfmiddlewaretoken", "request_id"}, html
        forms.append(fields)
    forms[1]["request_id"] = forms[0]["request_id"]  # the same form, sent from two tabs

    def rotate(n: int) -> str:
        response = sessions[n].post(url, data=forms[n], timeout=60)
        if 'data-testid="already-rotated"' in response.text:
            return "already rotated"
        return outcome(response)

    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = sorted(pool.map(rotate, range(2)))

    assert outcomes == ["already rotated", "made"]
    assert ApiKey.objects.get(owner=owner).audit_entries.filter(action="rotated").count() == 1
