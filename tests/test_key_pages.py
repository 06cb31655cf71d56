"""The key pages: the form, the reveal, htmx partials, and the secret shown exactly once."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import uuid
from html import unescape
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse

from apikeys.credentials.secret_format import PATTERN
from apikeys.models import Api, ApiKey, User
from tests.conftest import key_clients_in_keycloak
from tests.factories import submit_key_form
from tests.tokens import request_token

pytestmark = [pytest.mark.embedded, pytest.mark.usefixtures("key_clients")]

HTMX = {"HX-Request": "true", "HX-Current-URL": "http://testserver/keys/"}


@pytest.fixture
def signed_in(client: Client, owner: User) -> Client:
    client.force_login(owner)
    return client


def secret_in(html: str) -> str:
    found = PATTERN.findall(html)
    assert len(set(found)) == 1, found
    return str(found[0])


@pytest.mark.usefixtures("sample")
def test_the_form_offers_the_catalog_and_90_days(signed_in: Client) -> None:
    html = signed_in.get(reverse("new_key")).content.decode()
    assert 'value="sample"' in html
    assert re.search(r'name="lifetime_days"[^>]*value="90"', html)


@pytest.mark.usefixtures("sample")
@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": ""}, "This field is required."),
        ({"name": "x" * 65}, "at most 64 characters"),
        ({"name": "bell\x07"}, "printable characters only"),
        ({"lifetime_days": "366"}, "at most 365 days"),
        ({"lifetime_days": "0"}, "greater than or equal to 1"),
        ({"lifetime_days": "soon"}, "Enter a whole number."),
        ({"api": "no-such-api"}, "Select a valid choice."),
    ],
)
def test_bad_input_gets_a_clear_message_and_makes_nothing(
    signed_in: Client, fields: dict[str, Any], message: str
) -> None:
    response = submit_key_form(signed_in, **fields)

    assert response.status_code == 200
    assert message in response.content.decode()
    assert not ApiKey.objects.exists()


@pytest.mark.usefixtures("sample")
def test_bad_input_keeps_what_was_typed(signed_in: Client) -> None:
    response = submit_key_form(signed_in, lifetime_days="999", description="nightly export")
    html = response.content.decode()
    assert 'value="billing"' in html
    assert "nightly export" in html


@pytest.mark.usefixtures("sample")
def test_a_second_live_key_with_the_same_name_is_refused(signed_in: Client) -> None:
    submit_key_form(signed_in)
    response = submit_key_form(signed_in)
    assert "You already have a key with this name." in response.content.decode()
    assert ApiKey.objects.count() == 1


@pytest.mark.usefixtures("sample")
def test_at_the_quota_the_form_says_so(signed_in: Client, settings: Any) -> None:
    settings.MAX_LIVE_KEYS_PER_USER = 1
    submit_key_form(signed_in, name="one")

    response = submit_key_form(signed_in, name="two")

    assert "You already have 1 live keys, the most allowed." in response.content.decode()
    assert 'href="/keys/new/"' not in signed_in.get(reverse("home")).content.decode()


@pytest.mark.usefixtures("sample")
def test_the_reveal_shows_everything_needed_to_get_a_token_once(signed_in: Client) -> None:
    response = submit_key_form(signed_in)

    html = response.content.decode()
    key = ApiKey.objects.get()
    secret = secret_in(html)
    assert "no-store" in response["Cache-Control"]
    assert key.client_id in html
    assert "/realms/portal/protocol/openid-connect/token" in html
    assert f'-u "{key.client_id}:{secret}"' in html
    assert f'auth=("{key.client_id}", "{secret}")' in html
    assert request_token(key.client_id, secret).status_code == 200
    for later in (reverse("home"), reverse("key_detail", args=[key.pk])):
        assert secret not in signed_in.get(later).content.decode()
    assert (
        f'-u "{key.client_id}:$CLIENT_SECRET"'
        in signed_in.get(reverse("key_detail", args=[key.pk])).content.decode()
    )


@pytest.mark.usefixtures("sample")
def test_with_htmx_the_reveal_goes_to_the_panel_and_the_list_is_refreshed(
    signed_in: Client,
) -> None:
    response = submit_key_form(signed_in, headers=HTMX)

    html = response.content.decode()
    assert "<html" not in html
    assert 'data-testid="reveal"' in html
    assert 'id="key-list" hx-swap-oob="true"' in html
    assert ApiKey.objects.get().client_id in html.split('id="key-list"')[1]


@pytest.mark.usefixtures("sample")
def test_with_htmx_bad_input_returns_the_form_partial(signed_in: Client) -> None:
    response = submit_key_form(signed_in, name="", headers=HTMX)
    html = response.content.decode()
    assert "<html" not in html
    assert "This field is required." in html


@pytest.mark.usefixtures("sample")
def test_without_javascript_revoking_redirects_to_the_list_with_a_notice(
    signed_in: Client,
) -> None:
    submit_key_form(signed_in)
    key = ApiKey.objects.get()
    confirm = signed_in.get(reverse("revoke_key", args=[key.pk])).content.decode()
    assert "Revoke “billing”?" in confirm

    response = signed_in.post(reverse("revoke_key", args=[key.pk]), follow=True)

    assert response.redirect_chain == [(reverse("home"), 302)]
    assert "“billing” is revoked" in response.content.decode()


@pytest.mark.usefixtures("sample")
def test_with_htmx_revoking_updates_the_list_in_place(signed_in: Client) -> None:
    submit_key_form(signed_in)
    key = ApiKey.objects.get()

    response = signed_in.post(reverse("revoke_key", args=[key.pk]), headers=HTMX)

    html = response.content.decode()
    assert "<html" not in html
    assert "is revoked" in html
    live, _, ended = html.partition('data-testid="ended-keys"')
    assert key.client_id not in live
    assert key.client_id in ended


@pytest.mark.usefixtures("sample")
def test_rotating_shows_the_new_secret_once(signed_in: Client) -> None:
    first = secret_in(submit_key_form(signed_in).content.decode())
    key = ApiKey.objects.get()

    response = signed_in.post(reverse("rotate_key", args=[key.pk]))

    second = secret_in(response.content.decode())
    assert second != first
    assert "The old secret has stopped working." in response.content.decode()
    assert request_token(key.client_id, second).status_code == 200


@pytest.mark.usefixtures("sample")
@pytest.mark.parametrize("again", [{}, HTMX], ids=["page", "htmx"])
def test_the_rotate_form_sent_again_rotates_nothing_and_the_shown_secret_keeps_working(
    signed_in: Client, again: dict[str, str]
) -> None:
    submit_key_form(signed_in)
    key = ApiKey.objects.get()
    url = reverse("rotate_key", args=[key.pk])
    form = signed_in.get(url).content.decode()
    found = re.search(r'name="request_id" value="([^"]+)"', form)
    assert found is not None
    sent = {"grace_hours": "0", "request_id": found.group(1)}

    shown = secret_in(signed_in.post(url, sent).content.decode())
    reloaded = signed_in.post(url, sent, headers=again).content.decode()  # the page reloaded

    assert 'data-testid="already-rotated"' in reloaded
    assert "This rotation was already made" in reloaded
    assert PATTERN.search(reloaded) is None
    assert request_token(key.client_id, shown).status_code == 200
    assert key.audit_entries.filter(action="rotated").count() == 1
    fresh = signed_in.get(url).content.decode()  # a new form: a new rotation
    assert found.group(1) not in fresh
    request_id = re.search(r'name="request_id" value="([^"]+)"', fresh)
    assert request_id is not None
    newer = secret_in(signed_in.post(url, {"request_id": request_id.group(1)}).content.decode())
    assert request_token(key.client_id, shown).status_code == 401
    assert request_token(key.client_id, newer).status_code == 200


def test_an_htmx_request_after_the_session_ended_redirects_the_whole_page(client: Client) -> None:
    response = client.get(reverse("new_key"), headers=HTMX)
    assert response.status_code == 200
    assert response["HX-Redirect"].startswith(reverse("oidc_authentication_init"))
    assert "next=%2Fkeys%2F" in response["HX-Redirect"]


@pytest.mark.django_db(transaction=True)
def test_after_a_full_journey_no_secret_is_in_the_database_or_the_logs(
    client: Client, sample: Api, key_clients: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    owner = User.objects.create(username="journey-sub", email="journey@example.com")
    client.force_login(owner)
    seen = []
    response = submit_key_form(client)
    seen.append(secret_in(response.content.decode()))
    key = ApiKey.objects.get()
    response = client.post(reverse("rotate_key", args=[key.pk]), headers=HTMX)
    seen.append(secret_in(response.content.decode()))
    client.post(reverse("revoke_key", args=[key.pk]))
    client.get(reverse("home"))
    assert key_clients_in_keycloak(key_clients) == []

    dump = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f'SELECT * FROM "{table}"')  # noqa: S608 (names from the schema)
            dump += [repr(row) for row in cursor.fetchall()]
    database = "\n".join(dump)
    assert key.client_id in database  # the dump is real
    assert any("/clients" in r.getMessage() for r in caplog.records)  # and so are the logs
    for secret in seen:
        assert secret not in database
        assert secret not in caplog.text
        assert all(secret not in c.value for c in client.cookies.values())


@pytest.mark.usefixtures("sample")
def test_the_revealed_snippets_run_as_pasted(signed_in: Client) -> None:
    html = submit_key_form(signed_in).content.decode()

    snippets = {
        kind: unescape(re.sub(r"<[^>]+>", "", body))
        for kind, body in re.findall(r'<pre id="snippet-(\w+)-[^"]+">(.*?)</pre>', html, re.S)
    }

    curl = subprocess.run(
        ["bash", "-c", snippets["curl"]], capture_output=True, text=True, timeout=30, check=True
    )
    assert "access_token" in json.loads(curl.stdout)
    python = subprocess.run(
        [sys.executable, "-c", snippets["python"] + "\nprint(len(access_token))"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert int(python.stdout) > 100


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("sample", "live_server")
def test_the_revealed_call_snippet_gets_a_token_and_calls_whoami(signed_in: Client) -> None:
    html = submit_key_form(signed_in, name="pasted").content.decode()
    snippet = re.search(r'<pre id="snippet-call-[^"]+">(.*?)</pre>', html, re.S)
    assert snippet is not None
    assert "partner guide" in html.lower()

    run = subprocess.run(
        ["bash", "-c", unescape(re.sub(r"<[^>]+>", "", snippet.group(1)))],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )

    answer = json.loads(run.stdout)
    assert answer["key_name"] == "pasted"
    assert answer["client_id"] == ApiKey.objects.get().client_id


@pytest.mark.usefixtures("sample")
def test_a_form_sent_twice_makes_one_key_and_says_so(signed_in: Client) -> None:
    form = signed_in.get(reverse("new_key")).content.decode()
    request_id = re.search(r'name="request_id" value="([^"]+)"', form)
    assert request_id is not None

    first = submit_key_form(signed_in, request_id=request_id.group(1))
    second = submit_key_form(signed_in, request_id=request_id.group(1), headers=HTMX)

    assert PATTERN.search(first.content.decode())
    html = second.content.decode()
    assert 'data-testid="already-submitted"' in html
    assert PATTERN.search(html) is None
    assert ApiKey.objects.count() == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("sample")
def test_a_double_click_racing_itself_makes_one_key() -> None:
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connections

    owner = User.objects.create(username="double-click", email="dc@example.com")
    request_id = str(uuid.uuid4())

    def submit(_: int) -> int:
        client = Client()
        client.force_login(owner)
        try:
            return submit_key_form(client, request_id=request_id).status_code  # type: ignore[no-any-return]
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=2) as pool:
        codes = list(pool.map(submit, range(2)))

    assert codes == [200, 200]
    assert ApiKey.objects.filter(owner=owner).count() == 1
